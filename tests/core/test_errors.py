"""bertclf.errors: a user error is one `error:` line on stderr and exit status 2; a bug keeps its traceback."""
import os
import subprocess
import sys
import textwrap

import pytest

from bertclf import encoders
from bertclf import errors
from harness import _argv
from harness import ROOT
from harness import tail

# A stand-in for train.py/eval.py without TensorFlow (fast): raises what --raise asks for inside errors.run.
SCRIPT = textwrap.dedent("""
    from absl import flags
    from bertclf import errors
    flags.DEFINE_string("raise", "none", "")
    flags.DEFINE_integer("number", 1, "", lower_bound=0)
    flags.DEFINE_bool("verbose_errors", False, "")
    def main(_):
      if flags.FLAGS["raise"].value == "user":
        raise errors.UserError("--number=1: not a good number; pass --number=2.")
      if flags.FLAGS["raise"].value == "data":
        from bertclf import data
        data.load_text_data("/no/such/file.csv")
      if flags.FLAGS["raise"].value == "bug":
        raise RuntimeError("an internal bug")
      print("ok")
    errors.run(main)
    """)


def run_script(*args):
  return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60,
                        cwd=ROOT)


def test_user_error_is_one_line_and_status_2():
  out = run_script("--raise=user")
  assert out.returncode == 2
  assert out.stderr == "error: --number=1: not a good number; pass --number=2.\n"


def test_data_error_is_a_user_error():
  out = run_script("--raise=data")
  assert out.returncode == 2 and "Traceback" not in out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith("error: --dataset=/no/such/file.csv: no such file")


def test_verbose_errors_shows_the_traceback():
  out = run_script("--raise=user", "--verbose_errors")
  assert out.returncode == 1
  assert "Traceback" in out.stderr and "UserError: --number=1" in out.stderr


def test_a_bug_keeps_its_traceback():
  out = run_script("--raise=bug")
  assert out.returncode == 1
  assert "Traceback" in out.stderr and "RuntimeError: an internal bug" in out.stderr
  assert "error: " not in out.stderr


def test_flag_parsing_error_is_one_line_and_status_2():
  out = run_script("--number=-3")
  assert out.returncode == 2
  assert out.stderr.startswith("error: flag --number=-3: ") and "Traceback" not in out.stderr
  assert run_script().stdout == "ok\n"


def test_local_path_gets_no_internet_advice_and_a_url_does(tmp_path):
  handles = encoders.Handles(str(tmp_path / "gone"), str(tmp_path / "gone_pre"), "x")
  with pytest.raises(errors.UserError, match="--encoder=.*gone: could not load this local SavedModel") as err:
    encoders.load_encoder_layer(handles)
  assert "internet" not in str(err.value)
  with pytest.raises(errors.UserError, match="--preprocess=.*gone_pre: could not load this local"):
    encoders.load_preprocess(handles)
  url = encoders.Handles("http://127.0.0.1:9/encoder/1", "http://127.0.0.1:9/pre/1", "x")
  with pytest.raises(errors.UserError, match="TFHUB_CACHE_DIR"):
    encoders.load_preprocess(url)


@pytest.mark.slow  # a train.py and an eval.py process, each importing TensorFlow
def test_train_and_eval_print_one_line_for_bad_data_and_a_missing_run(tmp_path, tiny_hub):
  bad = tmp_path / "bad.csv"
  bad.write_text("sentence,label\na text,pos\nanother,neg\n")
  out = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] +
                       _argv(str(tmp_path / "run"), tiny_hub, str(bad)),
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert out.returncode == 2, tail(out.stderr)
  assert "Traceback" not in out.stderr
  assert out.stderr.splitlines()[-1] == (f"error: {bad}: no column 'text'; the columns are ['sentence', 'label']. "
                                         "Pass --text_column=<column> to name the right one.")
  out = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), f"--model_dir={tmp_path}"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert out.returncode == 2 and "Traceback" not in out.stderr, tail(out.stderr)
  assert out.stderr.splitlines()[-1].startswith(f"error: --model_dir={tmp_path} has no config.json")


@pytest.mark.slow
def test_a_tensorflow_message_is_printed_once():
  script = textwrap.dedent("""
      import bertclf
      from bertclf import errors
      import tensorflow as tf
      from tensorflow.python.platform import tf_logging
      def main(_):
        tf_logging.warning("a probe from TensorFlow's logger")
      errors.run(main)
      """)
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stderr.count("a probe from TensorFlow's logger") == 1, out.stderr
