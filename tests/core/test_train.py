"""train.py end to end on the tiny encoder: learning, replicas, precision, summaries, export, resume."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

from bertclf import summaries
from harness import _argv
from harness import assert_same_tensors
from harness import copy_run
from harness import ROOT
from harness import run_train
from harness import _weights
from harness import tail

@pytest.fixture(scope="module")
def one_replica_run(tmp_path_factory, tiny_hub, toy_imdb):
  return run_train(tmp_path_factory.mktemp("r1"), tiny_hub, toy_imdb, epochs=5, export=True)


@pytest.mark.slow
def test_loss_falls_and_validation_learns(one_replica_run):
  train_scalars = summaries.read_scalars(os.path.join(one_replica_run, "train"))
  losses = [v for _, v in train_scalars["loss"]]
  assert losses[-1] < 0.5 * losses[0], losses
  val = summaries.read_scalars(os.path.join(one_replica_run, "validation"))
  assert [s for s, _ in val["accuracy"]] == [20, 40, 60, 80, 100]  # each epoch end (20 steps of 16 from 320)
  assert val["accuracy"][-1][1] > 0.9


def test_event_files_hold_the_documented_tags(one_replica_run):
  tags = summaries.read_tags(os.path.join(one_replica_run, "train"))
  for tag in ("loss", "accuracy", "learning_rate", "grad_norm", "examples_per_sec", "steps_per_sec", "config"):
    assert tag in tags, tags
  assert any(t.startswith("_hparams_") for t in tags), tags
  assert {"loss", "accuracy"} <= summaries.read_tags(os.path.join(one_replica_run, "validation"))
  lr = summaries.read_scalars(os.path.join(one_replica_run, "train"))["learning_rate"]
  # The rate the logged step applied: linear decay, the last of 100 updates at lr / 100 (lr 5e-3).
  assert lr[0][1] > lr[-1][1] and lr[-1][1] == pytest.approx(5e-3 / 100, rel=1e-4)


@pytest.mark.slow
def test_config_best_checkpoint_and_export(one_replica_run):
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(one_replica_run, "config.json")) as f:
    config = json.load(f)
  assert config["class_names"] == ["neg", "pos"] and config["total_steps"] == 100 and config["num_replicas"] == 1
  assert tf.train.latest_checkpoint(os.path.join(one_replica_run, "best"))
  serving = tf.saved_model.load(os.path.join(one_replica_run, "export")).signatures["serving_default"]
  out = serving(tf.constant(["the movie was wonderful. the acting was great.", "the story was awful.",
                             "an unrelated sentence"]))
  probs = out["probabilities"].numpy()
  assert probs.shape == (3, 2)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  assert out["class_name"].numpy().tolist()[:2] == [b"pos", b"neg"]


@pytest.mark.slow
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_two_replicas_match_one_replica_on_the_same_global_batch(tmp_path, tiny_hub, toy_imdb, dropout):
  # With dropout on too: an example's mask depends on its row in the global batch, not on its replica.
  one = run_train(tmp_path / "one", tiny_hub, toy_imdb, train_steps=1, summary_every_steps=1, dropout=dropout)
  two = run_train(tmp_path / "two", tiny_hub, toy_imdb, train_steps=1, summary_every_steps=1,
                  num_cpu_devices=2, dropout=dropout)
  loss1 = summaries.read_scalars(os.path.join(one, "train"))["loss"]
  loss2 = summaries.read_scalars(os.path.join(two, "train"))["loss"]
  assert loss1[0][0] == loss2[0][0] == 1
  assert loss1[0][1] == pytest.approx(loss2[0][1], rel=1e-5)
  w1, w2 = _weights(tf.train.latest_checkpoint(one)), _weights(tf.train.latest_checkpoint(two))
  assert w1.keys() == w2.keys() and len(w1) > 10
  for k in w1:
    np.testing.assert_allclose(w1[k], w2[k], atol=2e-5, err_msg=k)


@pytest.mark.slow
def test_two_replicas_learn(tmp_path, tiny_hub, toy_imdb):
  run = run_train(tmp_path / "two", tiny_hub, toy_imdb, num_cpu_devices=2, epochs=3)
  val = summaries.read_scalars(os.path.join(run, "validation"))
  assert val["accuracy"][-1][1] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_mixed_precision_steps_are_finite(tmp_path, tiny_hub, toy_imdb, dtype):
  run = run_train(tmp_path / dtype, tiny_hub, toy_imdb, dtype=dtype, train_steps=10, summary_every_steps=5)
  scalars = summaries.read_scalars(os.path.join(run, "train"))
  assert all(np.isfinite(v) for _, v in scalars["loss"])
  assert ("loss_scale" in scalars) == (dtype == "fp16")



@pytest.mark.slow
def test_the_train_loop_is_traced_once_and_validation_twice(tmp_path, tiny_hub, toy_imdb, monkeypatch):
  """The optimizer's variables exist before the loop's first call (optim.build), so TensorFlow traces the loop once:
  a tf.function whose first call creates variables is traced again. Here through every layer that makes variables:
  fp16's loss scaling around AGC around Lookahead around AdamW, on 2 replicas, 2 calls of the loop.
  Validation's batches come in one length per bucket; its step is traced for the first length and then once for
  any length (reduce_retracing), not once per bucket."""
  made = {}
  real = tf.function

  def recording(fn=None, **kwargs):
    if fn is None:
      return lambda f: recording(f, **kwargs)
    made.setdefault(fn.__qualname__, []).append(real(fn, **kwargs))
    return made[fn.__qualname__][-1]

  monkeypatch.setattr(tf, "function", recording)
  run = run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=4, steps_per_loop=2, dtype="fp16",
                  optimizer_wrapper="lookahead,agc", num_cpu_devices=2)
  monkeypatch.undo()
  traces = [f.experimental_get_tracing_count() for f in made["main.<locals>.train_loop"]]
  assert traces == [1], f"train_loop traced {traces} times (a variable made in its first call?)"
  with open(os.path.join(run, "config.json")) as f:
    assert len(json.load(f)["train_bucket_lengths"]) >= 3  # validation pads to these: 3 or more lengths
  traces = [f.experimental_get_tracing_count() for f in made["make_predict_fn.<locals>.step"]]
  assert traces == [2], f"validation's step traced {traces} times"


@pytest.mark.slow
def test_refuses_to_resume_a_different_model(tmp_path, tiny_hub, toy_imdb):
  run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=5)
  with pytest.raises(ValueError, match="seq_length: saved 24, now 32"):
    run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=10, seq_length=32)


def test_batch_must_divide_by_replicas(tmp_path, tiny_hub, toy_imdb):
  with pytest.raises(ValueError, match="--batch_size=15 is a global batch and must divide by the 2 replicas"):
    run_train(tmp_path / "run", tiny_hub, toy_imdb, batch_size=15, num_cpu_devices=2)


def _start(model_dir, tiny_hub, toy_imdb, **overrides):
  return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")] +
                          _argv(str(model_dir), tiny_hub, toy_imdb, **overrides),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)


def _wait_for(proc, needle, timeout=120):
  """Reads the process output until a line contains needle; returns all output read."""
  seen, deadline = [], time.time() + timeout
  for line in proc.stdout:
    seen.append(line)
    if needle in line or time.time() > deadline:
      break
  return "".join(seen)


@pytest.mark.slow  # a 100-step reference, a train.py process that is interrupted, and its resume (in this process)
@pytest.mark.parametrize("how,replicas", [("sigterm", 1), ("kill", 2)])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_hub, toy_imdb, how, replicas, caplog):
  # 100 steps at batch 16: long enough to interrupt in the middle. Dropout on: its masks are redrawn exactly.
  common = dict(epochs=5, steps_per_loop=2, log_every_steps=2, checkpoint_every_steps=20, dropout=0.3,
                num_cpu_devices=replicas)
  reference = run_train(tmp_path / "reference", tiny_hub, toy_imdb, **common)
  interrupted = tmp_path / "interrupted"
  proc = _start(interrupted, tiny_hub, toy_imdb, **common)
  out = _wait_for(proc, "step 40/100")
  if how == "sigterm":
    proc.send_signal(signal.SIGTERM)
    out += proc.communicate(timeout=120)[0]
    assert proc.returncode == 128 + signal.SIGTERM, tail(out)
    assert "Stopped by signal" in out
  else:
    out += _wait_for(proc, "step 44/100")  # a checkpoint at 40 exists by now
    proc.kill()
    proc.wait()
  stopped_at = int(tf.train.latest_checkpoint(str(interrupted)).rsplit("-", 1)[1])
  assert 40 <= stopped_at < 100
  (interrupted / "ckpt-999_temp").mkdir()  # what a kill during a save leaves behind
  # The resume reads nothing but model_dir, so it runs in this process (a fresh train.py costs an import).
  caplog.clear()
  run_train(interrupted, tiny_hub, toy_imdb, verbosity=0, **common)
  out = "\n".join(caplog.messages)
  assert f"continuing at step {stopped_at} of 100" in out, tail(out)
  assert not (interrupted / "ckpt-999_temp").exists() and "ckpt-999_temp, left by a save" in out
  final = tf.train.latest_checkpoint(str(interrupted))
  assert final.endswith("-100")
  assert_same_tensors(_weights(final), _weights(tf.train.latest_checkpoint(reference)),
                      what="resumed vs uninterrupted weights")  # bit for bit
  # One TensorBoard point per step, although steps after the checkpoint ran twice; the restart is in history.
  steps = [s for s, _ in summaries.read_scalars(str(interrupted / "train"))["loss"]]
  assert steps == sorted(set(steps)) and steps[-1] == 100
  with open(interrupted / "history.jsonl") as f:
    history = [json.loads(line) for line in f]
  assert [h["start_step"] for h in history] == [0, stopped_at] and "config" in history[0]
  assert history[1]["changed"] == {} and history[1]["num_replicas"] == replicas


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_hub, toy_imdb, ten_step_run,
                                                                  monkeypatch):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from bertclf.swaps import losses  # pylint: disable=g-import-not-at-top
  run = copy_run(ten_step_run, tmp_path / "run")  # finished at step 10
  good = losses.LOSSES["softmax_ce"]
  monkeypatch.setitem(losses.LOSSES, "softmax_ce", dataclasses.replace(
      good, per_example=lambda labels, logits: good.per_example(labels, logits) * float("nan")))
  with pytest.raises(FloatingPointError, match=r"diverged at step 11: loss nan.*last good checkpoint is .*ckpt-10"):
    run_train(run, tiny_hub, toy_imdb, train_steps=20)
  assert tf.train.latest_checkpoint(run).endswith("ckpt-10")


@pytest.mark.slow
@pytest.mark.parametrize("progress_every_secs", [30, 0])
def test_a_short_run_logs_progress_early_and_draws_a_curve(tmp_path, tiny_hub, toy_imdb, caplog, monkeypatch,
                                                           progress_every_secs):
  import train  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(train, "PROGRESS_EVERY_SECS", progress_every_secs)
  caplog.clear()
  # 45 steps at the default cadences (a line and a point every 50 steps) would log and draw step 45 only
  # (summary_every_steps=None leaves the flag at its default).
  run = run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=45, steps_per_loop=10, log_every_steps=50,
                  summary_every_steps=None, checkpoint_every_steps=500, verbosity=0)
  logged = [int(m.split()[1].split("/")[0]) for m in caplog.messages if m.startswith("step ")]
  points = [s for s, _ in summaries.read_scalars(os.path.join(run, "train"))["loss"]]
  assert points == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 45]  # every 45 // 10 steps, and the last
  if progress_every_secs:
    assert logged[0] == 4 and logged[-1] == 45  # after the first call (4 steps: the first point), and the end
  else:
    assert logged == points  # a line after every call: calls end at the points (and epoch ends, 20 and 40)
