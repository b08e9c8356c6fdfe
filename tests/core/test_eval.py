"""eval.py on a run of the tiny encoder: scoring, example counts, --watch beside train.py, predict, plots."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bertclf import summaries
from harness import _argv
from harness import ROOT
from harness import run_eval
from harness import run_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_hub, toy_imdb):
  # 4 epochs of 20 steps; validate at 30 too, so the best checkpoint is not simply the last one.
  return run_train(tmp_path_factory.mktemp("run"), tiny_hub, toy_imdb, epochs=4, eval_every_steps=30,
                   export=True)


def test_eval_reproduces_the_validation_accuracy_logged_by_training(trained):
  val = dict(summaries.read_scalars(os.path.join(trained, "validation"))["accuracy"])
  for ckpt in (tf.train.latest_checkpoint(trained), tf.train.latest_checkpoint(os.path.join(trained, "best"))):
    run_eval(model_dir=trained, split="validation", checkpoint=ckpt, plots=False)
    with open(os.path.join(trained, "eval_validation.json")) as f:
      result = json.load(f)
    assert result["step"] == int(ckpt.rsplit("-", 1)[1])
    assert result["accuracy"] == pytest.approx(val[result["step"]], abs=1e-6)
    assert result["num_examples"] == 80


def test_test_split_metrics_json_summaries_and_plots(trained):
  run_eval(model_dir=trained, eval_batch_size=48)  # 100 test examples: 2 x 48 + a partial batch of 4
  with open(os.path.join(trained, "eval_test.json")) as f:
    result = json.load(f)
  assert result["num_examples"] == 100
  assert np.array(result["confusion_matrix"]).sum() == 100
  assert set(result["per_class"]) == {"neg", "pos"} and "roc_auc" in result and "macro_f1" in result
  assert result["encoder"].endswith("encoder") and "data_source" in result
  assert result["accuracy"] > 0.9
  events = summaries.read_scalars(os.path.join(trained, "eval_test"))
  assert events["accuracy"][-1] == (result["step"], pytest.approx(result["accuracy"], abs=1e-6))
  for name in ("training_curves.png", "confusion_matrix_test.png", "roc_test.png"):
    with open(os.path.join(trained, "plots", name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", name


def test_predict_from_checkpoint_and_export_agree(trained, tmp_path):
  texts = tmp_path / "texts.txt"
  texts.write_text("the movie was wonderful.\nthe story was awful and dull.\nthe music\n", encoding="utf-8")
  best = tf.train.latest_checkpoint(os.path.join(trained, "best"))  # the export is made from it
  results = []
  for source in (dict(model_dir=trained, checkpoint=best), dict(export_dir=os.path.join(trained, "export"))):
    out = tmp_path / "out.jsonl"
    run_eval(predict_file=str(texts), predict_output=str(out), **source)
    results.append([json.loads(line) for line in out.read_text().splitlines()])
  assert len(results[0]) == 3
  for a, b in zip(*results):
    assert a["class_name"] == b["class_name"]
    np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-5)
  assert results[0][0]["class_name"] == "pos" and results[0][1]["class_name"] == "neg"


def test_bad_inputs_get_clear_messages(trained, tmp_path):
  with pytest.raises(ValueError, match="has no config.json"):
    run_eval(model_dir=str(tmp_path))
  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"good line\n\xff\xfe broken\n")
  with pytest.raises(ValueError, match=r"bad.txt:2: not UTF-8"):
    run_eval(model_dir=trained, predict_file=str(bad))
  empty = tmp_path / "empty.txt"
  empty.write_text("one\n\nthree\n")
  with pytest.raises(ValueError, match=r"empty.txt:2: empty text"):
    run_eval(model_dir=trained, predict_file=str(empty))
  with pytest.raises(ValueError, match="seq_length: saved 24, now 32"):
    run_eval(model_dir=trained, seq_length=32)
  with pytest.raises(ValueError, match="no such checkpoint"):
    run_eval(model_dir=trained, checkpoint=os.path.join(trained, "ckpt-999"))


@pytest.mark.slow  # a train.py and an eval.py process
def test_watch_follows_a_running_training_job(tmp_path, tiny_hub, toy_imdb):
  model_dir = tmp_path / "live"
  train_proc = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "train.py")] +
      _argv(str(model_dir), tiny_hub, toy_imdb, epochs=3, checkpoint_every_steps=10, max_to_keep=2),
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
  try:
    out = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), f"--model_dir={model_dir}", "--watch",
                          "--split=validation", "--plots=false", "--watch_timeout=300"],
                         capture_output=True, text=True, timeout=400, cwd=ROOT)
  finally:
    assert train_proc.wait(timeout=300) == 0
  assert out.returncode == 0, out.stderr[-3000:]
  scored = [int(line.split("eval_validation step ")[1].split(":")[0]) for line in out.stderr.splitlines()
            if "eval_validation step " in line]
  assert scored[-1] == 60 and len(scored) >= 2, out.stderr[-3000:]
  assert "Scored the final step 60" in out.stderr
  events = summaries.read_scalars(os.path.join(model_dir, "eval_validation"))
  assert [s for s, _ in events["accuracy"]] == scored


def test_bucketed_eval_gives_the_same_numbers_in_data_order(trained):
  ckpt = tf.train.latest_checkpoint(trained)
  results = []
  for buckets in ("", "12,16", "auto"):
    run_eval(model_dir=trained, split="validation", checkpoint=ckpt, plots=False, bucket_boundaries=buckets)
    with open(os.path.join(trained, "eval_validation.json")) as f:
      results.append(json.load(f))
  plain = results[0]
  for bucketed in results[1:]:
    assert bucketed["num_examples"] == plain["num_examples"] == 80
    assert bucketed["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-9)
    assert bucketed["loss"] == pytest.approx(plain["loss"], abs=1e-5)
    assert bucketed["confusion_matrix"] == plain["confusion_matrix"]
