"""Checks made before anything slow runs: the encoder's position table, swapped encoder/preprocessing models,
path flags, export dirs, and flag values that used to be taken silently."""
import json
import os
import shutil

from absl import flags
import pytest

import eval as eval_lib
from bertclf import encoders
from bertclf import errors
from bertclf import paths
from harness import run_train

FLAGS = flags.FLAGS


@pytest.fixture(scope="module")
def hub_download(tiny_hub, tmp_path_factory):
  """The tiny encoder laid out as a tfhub.dev download: encoder and preprocessing SavedModels, no config file."""
  root = tmp_path_factory.mktemp("download")
  for name in ("encoder", "preprocess"):
    shutil.copytree(os.path.join(tiny_hub, name), root / name)
  return str(root)


@pytest.mark.slow
def test_max_seq_length_is_read_from_the_position_table_without_a_config(hub_download):
  handles = encoders.resolve(hub_download)
  assert handles.config is None
  assert handles.max_seq_length == 512  # tiny_bert_config's max_position_embeddings
  assert encoders.position_table_length(os.path.join(hub_download, "preprocess")) is None


def test_seq_length_above_the_table_stops_before_the_data_loads(hub_download, tmp_path):
  # The dataset does not exist: reaching the data would be a different error.
  with pytest.raises(errors.UserError, match="--seq_length=600 exceeds the encoder's maximum of 512"):
    run_train(tmp_path / "run", hub_download, str(tmp_path / "no_such.csv"), seq_length=600)


def test_swapped_encoder_and_preprocess_are_named(hub_download):
  enc, pre = os.path.join(hub_download, "encoder"), os.path.join(hub_download, "preprocess")
  with pytest.raises(errors.UserError, match="is a preprocessing model .* Pass it as --preprocess"):
    encoders.resolve(pre, pre)
  with pytest.raises(errors.UserError, match="--preprocess=.* is not a preprocessing model .*looks like an encoder"):
    encoders.resolve(enc, enc)
  assert encoders.resolve(enc, pre).preprocess == pre


def test_model_dir_checks(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(errors.UserError, match="--model_dir=.*file is a file, not a folder"):
    paths.check_writable_dir("--model_dir", str(a_file))
  with pytest.raises(errors.UserError, match="is a file, so the folder cannot be created"):
    paths.check_writable_dir("--model_dir", str(a_file / "run"))
  with pytest.raises(errors.UserError, match="MB free on its disk; checkpoints need at least"):
    paths.check_writable_dir("--model_dir", str(tmp_path / "run"), min_free_bytes=1 << 60)
  paths.check_writable_dir("--model_dir", str(tmp_path / "new" / "run"))
  assert os.path.isdir(tmp_path / "new" / "run") and not os.listdir(tmp_path / "new" / "run")


def test_predict_output_is_checked_before_anything_loads(tmp_path):
  FLAGS.unparse_flags()
  FLAGS(["eval.py", f"--export_dir={tmp_path}/nothing", "--predict=a text",
         f"--predict_output={tmp_path}/missing/out.jsonl"])
  with pytest.raises(errors.UserError, match="--predict_output=.*the folder .*missing does not exist"):
    eval_lib.main([])
  with pytest.raises(errors.UserError, match="is a folder; pass a file name"):
    paths.check_writable_file("--predict_output", str(tmp_path))
  paths.check_writable_file("--predict_output", str(tmp_path / "out.jsonl"))
  assert not os.path.exists(tmp_path / "out.jsonl")


def test_export_dir_that_is_a_run_folder_or_an_encoder(tmp_path, hub_download):
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text(json.dumps({"encoder": "x"}))
  with pytest.raises(errors.UserError, match=f"is a training run's folder; pass its export: --export_dir={run}/export"):
    eval_lib.ExportScorer(str(run))
  with pytest.raises(errors.UserError, match="not a train.py export .* an encoder goes to --encoder"):
    eval_lib.ExportScorer(os.path.join(hub_download, "encoder"))


@pytest.mark.parametrize("argv,message", [
    (["--train_steps=0"], "--train_steps must be >= 1"),
    (["--predict="], "--predict was given an empty text"),
    (["--predict=ok", "--predict=  "], "--predict was given an empty text"),
])
def test_flag_values_that_were_taken_silently(argv, message):
  FLAGS.unparse_flags()
  with pytest.raises(flags.IllegalFlagValueError, match=message):
    FLAGS(["train.py"] + argv)
  FLAGS.unparse_flags()
