"""A diverged step is never saved, the error names the real last good checkpoint, and --recovery_max_trials
reloads it and finishes the run."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from bertclf import checkpointing
from bertclf import summaries
from bertclf.swaps import losses
from harness import copy_run
from harness import run_train


def _poison(monkeypatch, bad_calls, value_too=False):
  """softmax_ce whose GRADIENT is NaN (its value stays finite unless value_too) on the given calls of the
  loss; the calls are counted per training step (one replica, no variant that calls the loss twice)."""
  good = losses.LOSSES["softmax_ce"]
  calls = tf.Variable(0, dtype=tf.int64, trainable=False)

  @tf.custom_gradient
  def nan_gradient(logits):
    return logits, lambda upstream: upstream * float("nan")

  def per_example(labels, logits):
    calls.assign_add(1)
    bad = tf.reduce_any(tf.equal(calls, tf.constant(bad_calls, tf.int64)))
    logits = tf.cond(bad, lambda: nan_gradient(logits), lambda: tf.identity(logits))
    out = good.per_example(labels, logits)
    return out * float("nan") if value_too else out

  monkeypatch.setitem(losses.LOSSES, "softmax_ce", dataclasses.replace(good, per_example=per_example))


def _finite(ckpt):
  reader = tf.train.load_checkpoint(ckpt)
  values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith("model/")]
  return all(np.all(np.isfinite(v)) for v in values if v.dtype.kind == "f")


@pytest.mark.slow
def test_nan_gradient_with_finite_loss_is_never_saved(tmp_path, tiny_hub, toy_imdb, ten_step_run, monkeypatch):
  run = copy_run(ten_step_run, tmp_path / "run")  # finished at step 10
  _poison(monkeypatch, bad_calls=list(range(1, 100)))
  # A checkpoint is due at the bad step itself (every step, one step per call).
  with pytest.raises(checkpointing.Diverged, match=r"diverged at step 11: loss [0-9.]+, gradient norm nan\. "
                     r"Stopping\. The last good checkpoint is .*ckpt-10\..*lower --learning_rate"):
    run_train(run, tiny_hub, toy_imdb, train_steps=20, checkpoint_every_steps=1, steps_per_loop=1)
  assert tf.train.latest_checkpoint(run).endswith("ckpt-10") and _finite(tf.train.latest_checkpoint(run))


@pytest.mark.slow
@pytest.mark.parametrize("dtype,advice", [("fp32", "raise --warmup_fraction"), ("bf16", "try --dtype=fp32")])
def test_divergence_before_any_checkpoint_says_so_with_advice_for_the_dtype(tmp_path, tiny_hub, toy_imdb,
                                                                           monkeypatch, dtype, advice):
  _poison(monkeypatch, bad_calls=[1], value_too=True)
  with pytest.raises(checkpointing.Diverged, match="No checkpoint was saved before it") as info:
    run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=10, dtype=dtype)
  assert advice in str(info.value) and "None" not in str(info.value)
  assert tf.train.latest_checkpoint(str(tmp_path / "run")) is None


@pytest.mark.slow
def test_recovery_reloads_the_last_good_checkpoint_and_finishes(tmp_path, tiny_hub, toy_imdb, monkeypatch):
  _poison(monkeypatch, bad_calls=[13])  # step 13, in the call of steps 11-15
  run = run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=20, recovery_max_trials=1,
                  summary_every_steps=5)
  final = tf.train.latest_checkpoint(run)
  assert final.endswith("ckpt-20") and _finite(final)
  assert summaries.read_scalars(run + "/train")["recoveries"] == [(10, 1.0)]
  # One recovery; it skipped the 5 batches of the bad call, so the data position is step + 5.
  assert tf.train.load_checkpoint(final).get_tensor("recovery/.ATTRIBUTES/VARIABLE_VALUE").tolist() == [1, 5]


@pytest.mark.slow
def test_recovery_gives_up_after_the_trials(tmp_path, tiny_hub, toy_imdb, monkeypatch):
  _poison(monkeypatch, bad_calls=list(range(11, 100)))  # every step after 10
  with pytest.raises(checkpointing.Diverged, match="diverged at step 1[1-5]"):
    run_train(tmp_path / "run", tiny_hub, toy_imdb, train_steps=30, recovery_max_trials=2)
  assert summaries.read_scalars(str(tmp_path / "run" / "train"))["recoveries"] == [(10, 1.0), (10, 2.0)]


def test_event_files_and_history_cut_short_by_a_kill_still_read(tmp_path):
  writer = summaries.writer(str(tmp_path), "train")
  for step in (5, 10):
    summaries.write_scalars(writer, step, {"loss": float(step)})
  writer.close()
  (path,) = list((tmp_path / "train").glob("events.out.tfevents.*"))
  path.write_bytes(path.read_bytes()[:-7])  # the last record loses its tail, as a kill during a write leaves it
  assert summaries.read_scalars(str(tmp_path / "train")) == {"loss": [(5, 5.0)]}
  assert summaries.writer(str(tmp_path), "train", skip_written=True).written_up_to == 5
  config = {"num_replicas": 1, "num_workers": 1, "seed": 0}
  checkpointing.append_history(str(tmp_path), config, 0)
  with open(tmp_path / "history.jsonl", "a") as f:
    f.write('{"start_step": 7, "tim')  # an append cut short
  checkpointing.append_history(str(tmp_path), dict(config, seed=1), 9)
  lines = (tmp_path / "history.jsonl").read_text().splitlines()
  assert json.loads(lines[0])["config"] == config and json.loads(lines[-1])["changed"] == {"seed": [0, 1]}
