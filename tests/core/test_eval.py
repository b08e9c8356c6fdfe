"""eval.py on a run of the tiny encoder: scoring, example counts, --watch beside train.py, predict, plots."""
import json
import os
import shutil
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


def _run_past_its_best(model_dir, tiny_hub, toy_imdb, **overrides):
  """A run whose best checkpoint (and so its export) is not its latest: 2 epochs, then a third at a learning rate
  that wrecks the weights."""
  run_train(model_dir, tiny_hub, toy_imdb, epochs=2, **overrides)
  return run_train(model_dir, tiny_hub, toy_imdb, epochs=3, learning_rate=1.0, export=True, **overrides)


@pytest.fixture(scope="module")
def past_best(tmp_path_factory, tiny_hub, toy_imdb):
  return _run_past_its_best(tmp_path_factory.mktemp("past_best"), tiny_hub, toy_imdb)


@pytest.mark.slow
def test_eval_reproduces_the_validation_accuracy_logged_by_training(trained):
  val = dict(summaries.read_scalars(os.path.join(trained, "validation"))["accuracy"])
  for ckpt in (tf.train.latest_checkpoint(trained), tf.train.latest_checkpoint(os.path.join(trained, "best"))):
    run_eval(model_dir=trained, split="validation", checkpoint=ckpt, plots=False)
    with open(os.path.join(trained, "eval_validation.json")) as f:
      result = json.load(f)
    assert result["step"] == int(ckpt.rsplit("-", 1)[1])
    assert result["accuracy"] == pytest.approx(val[result["step"]], abs=1e-6)
    assert result["num_examples"] == 80


@pytest.mark.slow
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


@pytest.mark.slow
def test_predict_from_checkpoint_and_export_agree(trained, tmp_path):
  texts = tmp_path / "texts.txt"
  # Two reviews shaped like the training data (toydata.review), so the learned class is not a guess, and a fragment.
  texts.write_text("the movie was really wonderful. the acting was great.\nthe story was awful. the ending was "
                   "so dull.\nthe music\n", encoding="utf-8")
  best = tf.train.latest_checkpoint(os.path.join(trained, "best"))  # the export is made from it
  results = []
  for source in (dict(model_dir=trained, checkpoint=best), dict(export_dir=os.path.join(trained, "export"))):
    out = tmp_path / "out.jsonl"
    run_eval(predict_file=str(texts), predict_output=str(out), **source)
    results.append([json.loads(line) for line in out.read_text().splitlines()])
  assert len(results[0]) == 3
  for a, b in zip(*results):
    assert a["class_name"] == b["class_name"]
    # The export runs the Hub-format SavedModel's graph, the checkpoint the rebuilt encoder: float32 rounding apart.
    np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_by_default_eval_scores_the_best_checkpoint_that_the_export_holds(past_best, caplog):
  trained = past_best
  best = tf.train.latest_checkpoint(os.path.join(trained, "best"))
  latest = tf.train.latest_checkpoint(trained)
  assert best.rsplit("-", 1)[1] != latest.rsplit("-", 1)[1]  # else the rule would make no difference here
  caplog.clear()
  run_eval(model_dir=trained, split="validation", plots=False, verbosity=0)  # INFO lines too
  first = [r for r in caplog.records if r.filename == "eval.py"][0]
  assert first.getMessage().startswith(f"Scoring {best} (the best validation checkpoint, step "
                                       f"{best.rsplit('-', 1)[1]}: the weights the export holds")
  with open(os.path.join(trained, "eval_validation.json")) as f:
    result = json.load(f)
  assert (result["checkpoint"], result["checkpoint_rule"], result["step"]) == (best, "best",
                                                                                int(best.rsplit("-", 1)[1]))
  run_eval(model_dir=trained, split="validation", plots=False, eval_checkpoint="latest")
  with open(os.path.join(trained, "eval_validation.json")) as f:
    result = json.load(f)
  assert (result["checkpoint"], result["checkpoint_rule"]) == (latest, "latest")
  run_eval(model_dir=trained, split="validation", plots=False, checkpoint=latest)
  with open(os.path.join(trained, "eval_validation.json")) as f:
    assert json.load(f)["checkpoint_rule"] == "--checkpoint"
  with pytest.raises(Exception, match="pass only one of them"):
    run_eval(model_dir=trained, checkpoint=latest, eval_checkpoint="latest")


@pytest.mark.slow
def test_a_run_that_exports_its_final_weights_is_scored_at_its_latest_checkpoint(past_best, tmp_path, caplog):
  run = tmp_path / "final"
  shutil.copytree(past_best, run)  # the same checkpoints, from a run that says it exported the final weights
  config = json.loads((run / "config.json").read_text())
  (run / "config.json").write_text(json.dumps(dict(config, export_weights="final")))
  latest = tf.train.latest_checkpoint(str(run))
  caplog.clear()
  run_eval(model_dir=str(run), split="validation", plots=False, verbosity=0)
  first = [r for r in caplog.records if r.filename == "eval.py"][0]
  assert first.getMessage().startswith(f"Scoring {latest} (the latest checkpoint, step ")
  assert "--export_weights=final" in first.getMessage()
  result = json.loads((run / "eval_validation.json").read_text())
  assert (result["checkpoint"], result["checkpoint_rule"]) == (latest, "latest")
  run_eval(model_dir=str(run), split="validation", plots=False, eval_checkpoint="best")
  assert json.loads((run / "eval_validation.json").read_text())["checkpoint_rule"] == "best"


def _predictions(tmp_path, texts, **source):
  out = tmp_path / "out.jsonl"
  run_eval(predict_file=str(texts), predict_output=str(out), **source)
  return np.array([list(json.loads(line)["probabilities"].values()) for line in out.read_text().splitlines()])


@pytest.mark.slow
@pytest.mark.parametrize("weights_for_eval", ["raw", "ema"])
def test_predictions_of_the_model_dir_are_the_exports(weights_for_eval, past_best, tmp_path, tiny_hub, toy_imdb):
  trained = past_best
  if weights_for_eval == "ema":  # validation, best/ and the export all hold the moving average
    trained = _run_past_its_best(tmp_path / "ema", tiny_hub, toy_imdb, weights_for_eval="ema", ema_decay=0.9)
  texts = tmp_path / "texts.txt"
  texts.write_text("the movie was wonderful.\nthe story was awful and dull.\nthe music\n", encoding="utf-8")
  exported = _predictions(tmp_path, texts, export_dir=os.path.join(trained, "export"))
  np.testing.assert_allclose(_predictions(tmp_path, texts, model_dir=trained), exported, atol=1e-4)
  latest = _predictions(tmp_path, texts, model_dir=trained, eval_checkpoint="latest")
  assert np.abs(latest - exported).max() > 1e-4  # the latest checkpoint is another model: the check can fail


@pytest.mark.slow
def test_eval_needs_no_cwd_of_training_and_says_which_values_came_from_config_json(trained, tmp_path, toy_imdb,
                                                                                    tiny_hub, monkeypatch):
  # A run written with relative paths (from its train.py directory `base`), scored from another directory.
  base = tmp_path / "base"
  run = base / "runs" / "old"
  shutil.copytree(trained, run)
  config = json.loads((run / "config.json").read_text())
  relative = lambda path: os.path.relpath(path, base)  # noqa: E731
  config.update(model_dir="runs/old", dataset=relative(toy_imdb), encoder=relative(tiny_hub),
                encoder_handle=relative(config["encoder_handle"]),
                preprocess_handle=relative(config["preprocess_handle"]))
  (run / "config.json").write_text(json.dumps(config))
  (tmp_path / "elsewhere").mkdir()
  monkeypatch.chdir(tmp_path / "elsewhere")
  run_eval(model_dir=str(run), split="validation", plots=False)
  with open(run / "eval_validation.json") as f:
    assert json.load(f)["data_source"] == f"folder {toy_imdb}"
  (run / "config.json").write_text(json.dumps(dict(config, dataset="gone/aclImdb")))
  with pytest.raises(ValueError, match=r"^--dataset=gone/aclImdb \(from .*/runs/old/config.json; pass --dataset "
                     r"to override it\): no such file"):
    run_eval(model_dir=str(run), split="validation", plots=False)


@pytest.mark.slow
def test_train_writes_absolute_paths_into_config_json(tmp_path, tiny_hub, toy_imdb, monkeypatch):
  monkeypatch.chdir(os.path.dirname(toy_imdb))
  run = run_train(tmp_path / "run", os.path.relpath(tiny_hub), os.path.basename(toy_imdb), train_steps=2)
  config = json.loads(open(os.path.join(run, "config.json")).read())
  assert (config["dataset"], config["encoder"]) == (toy_imdb, tiny_hub)
  assert config["encoder_handle"] == os.path.join(tiny_hub, "encoder")
  assert config["data_cache_dir"] == "~/.cache/bertclf" or os.path.isabs(config["data_cache_dir"])


@pytest.mark.slow
def test_export_without_data_flags_is_refused_not_scored_on_imdb(trained, tmp_path, caplog):
  lone = tmp_path / "lone_export"
  shutil.copytree(os.path.join(trained, "export"), lone)
  with pytest.raises(ValueError, match=r"--export_dir=.*lone_export: pass --dataset=<data to score it on>"):
    run_eval(export_dir=str(lone))
  run_eval(export_dir=os.path.join(trained, "export"), split="validation", plots=False, verbosity=0)  # its run's data
  assert f"Data: the data flags of {os.path.join(trained, 'config.json')}" in caplog.text
  with open(os.path.join(trained, "export", "eval_validation.json")) as f:
    assert json.load(f)["num_examples"] == 80


def test_bad_eval_inputs_name_their_flag(trained, tmp_path):
  with pytest.raises(ValueError, match=r"^--predict_file=.*missing.txt: no such file"):
    run_eval(model_dir=trained, predict_file=str(tmp_path / "missing.txt"))
  with pytest.raises(ValueError, match=r"^--predict_file=.* is a folder"):
    run_eval(model_dir=trained, predict_file=str(tmp_path))
  best = os.path.join(trained, "best")
  with pytest.raises(ValueError, match=rf"^--checkpoint={best} is a folder; pass a checkpoint in it, e.g. "
                     rf"--checkpoint={tf.train.latest_checkpoint(best)}"):
    run_eval(model_dir=trained, checkpoint=best)
  with pytest.raises(ValueError, match=r"^--export_dir=.*: no saved_model.pb there"):
    run_eval(export_dir=str(tmp_path), predict="good")
  with pytest.raises(ValueError, match=r"^--predict_output=.*: the folder .* does not exist"):
    run_eval(model_dir=trained, predict="good", predict_output=str(tmp_path / "no" / "out.jsonl"))


@pytest.mark.slow
def test_an_eval_input_error_is_one_error_line(trained, tmp_path):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "eval.py"), f"--model_dir={trained}",
                        f"--predict_file={tmp_path}"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
  assert out.stderr.splitlines()[-1].startswith(f"error: --predict_file={tmp_path} is a folder")
