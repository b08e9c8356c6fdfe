"""--profile_steps: train.py leaves a profiler trace where TensorBoard's Profile tab finds it."""
import argparse
import glob
import logging
import os

from absl import flags
import pytest
from tensorboard.plugins import base_plugin
from xprof import profile_plugin

from bertclf import flags as bertclf_flags
from harness import run_train

FLAGS = flags.FLAGS


def _profile_runs(logdir):
  """The runs the Profile tab lists for `tensorboard --logdir=logdir` (the plugin's own discovery)."""
  context = base_plugin.TBContext(logdir=logdir, flags=argparse.Namespace(master_tpu_unsecure_channel=""))
  return list(profile_plugin.ProfilePlugin(context).generate_runs())


@pytest.mark.slow
def test_trace_of_steps_lands_in_the_profile_tab(tmp_path, tiny_hub, toy_imdb, caplog):
  # steps_per_loop=2 over 400*0.8/16 = 20 steps/epoch: calls run 1-2, 3-4, ...; steps 2..3 span two calls.
  with caplog.at_level(logging.INFO, logger="absl"):
    model_dir = run_train(tmp_path / "run", tiny_hub, toy_imdb, epochs=1, train_steps=6, steps_per_loop=2,
                          profile_steps="2,3", verbosity=0)  # INFO: the log line that names the steps
  traces = glob.glob(os.path.join(model_dir, "train", "plugins", "profile", "*", "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0, traces
  runs = _profile_runs(model_dir)
  assert runs == ["train/" + os.path.basename(os.path.dirname(traces[0]))], runs
  assert "traced steps 1-4" in caplog.text


@pytest.mark.slow
def test_no_trace_without_the_flag(tmp_path, tiny_hub, toy_imdb):
  model_dir = run_train(tmp_path / "run", tiny_hub, toy_imdb, epochs=1, train_steps=2, steps_per_loop=2)
  assert not _profile_runs(model_dir)
  assert bertclf_flags.profile_steps() is None


@pytest.mark.parametrize("value", ["3", "3,2", "0,2", "1,2,3", "a,b", "-1,2"])
def test_bad_profile_steps_are_refused(value):
  FLAGS.unparse_flags()
  with pytest.raises(flags.IllegalFlagValueError, match="--profile_steps must be two step numbers A,B"):
    FLAGS(["train.py", f"--profile_steps={value}"])
  FLAGS.unparse_flags()


def test_profile_steps_parses():
  FLAGS.unparse_flags()
  FLAGS(["train.py", "--profile_steps=5,5"])
  assert bertclf_flags.profile_steps() == (5, 5)
  FLAGS.unparse_flags()
