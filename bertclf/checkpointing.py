"""Checkpoints across stops, restarts and hosts: who writes where, a coordinated stop on many workers, the
checks that keep a bad or mismatched state from being saved or resumed, and the run's history.

Every worker of a multi_worker_mirrored run saves (saving is collective), but only the chief into --model_dir;
the others write into <model_dir>/.workers/<task>. Every worker RESTORES the chief's checkpoint, so --model_dir
must be on storage that all hosts share; a worker that restores a different step is refused before training.
"""
import datetime
import glob
import json
import os
import shutil
import signal

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import numpy as np
import tensorflow as tf

from bertclf import errors
from bertclf import run_config

HISTORY_FILE = "history.jsonl"


def is_chief(strategy):
  """True on the one worker that writes files (as official's `is_chief`): single host, chief, or worker 0."""
  resolver = getattr(strategy, "cluster_resolver", None)
  task_type = resolver.task_type if resolver else None
  return (task_type is None or task_type == "chief" or
          (task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs))


def num_workers(strategy):
  resolver = getattr(strategy, "cluster_resolver", None)
  jobs = resolver.cluster_spec().as_dict() if resolver else {}
  return max(1, len(jobs.get("worker", [])) + len(jobs.get("chief", [])))


def writable_dir(strategy, path):
  """Where this worker writes checkpoints and summaries: `path` on the chief, a private folder elsewhere."""
  if is_chief(strategy):
    return path
  resolver = strategy.cluster_resolver
  return os.path.join(path, ".workers", f"{resolver.task_type}_{resolver.task_id}")


def remove_stale_temp_folders(model_dir):
  """Removes the `ckpt-N_temp` folders a save killed mid-write leaves behind (chief only, before training)."""
  stale = [p for pattern in ("ckpt-*_temp", "best/ckpt-*_temp", ".workers/*/ckpt-*_temp")
           for p in glob.glob(os.path.join(model_dir, pattern)) if os.path.isdir(p)]
  for path in stale:
    shutil.rmtree(path, ignore_errors=True)
    logging.info("Removed %s, left by a save that was interrupted.", path)
  return stale


def append_history(model_dir, config, step):
  """Appends this start (time, step, replicas, workers, flags changed since the run's first start) to
  <model_dir>/history.jsonl; config.json keeps what the run started with."""
  path = os.path.join(model_dir, HISTORY_FILE)
  first = None
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      first = json.loads(f.readline())["config"]
  entry = {"time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "start_step": step,
           "num_replicas": config["num_replicas"], "num_workers": config["num_workers"]}
  if first is None:
    entry["config"] = json.loads(json.dumps(config, default=str))
  else:
    now = json.loads(json.dumps(config, default=str))
    entry["changed"] = {k: [first.get(k), now.get(k)] for k in sorted(set(first) | set(now))
                        if first.get(k) != now.get(k)}
    if entry["changed"]:
      logging.info("Changed since the run's first start: %s", entry["changed"])
  line = json.dumps(entry, sort_keys=True) + "\n"
  if first is None:  # the first line holds the config: never half written
    run_config.write_atomically(path, line)
    return
  with tf.io.gfile.GFile(path) as f:
    torn = not f.read().endswith("\n")  # a kill during an earlier append
  with tf.io.gfile.GFile(path, "a") as f:
    f.write(("\n" if torn else "") + line)


def check_same_checkpoint(strategy, latest):
  """Refuses to train when the workers would restore different steps (e.g. --model_dir not shared). Runs
  before the restore: a restore that creates variables on one worker only would desynchronise collectives."""
  step = int(latest.rsplit("-", 1)[1]) if latest else 0

  def replica_step():
    return tf.constant([step], tf.int64)

  @tf.function
  def every_replicas_step():
    return strategy.gather(strategy.run(replica_step), axis=0)  # [replicas of every worker]

  steps = every_replicas_step()
  low, high = int(tf.reduce_min(steps)), int(tf.reduce_max(steps))
  if low != high:
    raise errors.UserError(
        f"The workers would restore different steps ({low} and {high}; this worker {step}, from "
        f"{latest or 'nothing'}). Every worker must read the chief's checkpoints: put --model_dir on storage "
        "that all hosts share, or copy the chief's --model_dir to every host, then rerun.")


def all_finite(variables):
  """True when every element of `variables` is finite: checked before any save."""
  return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables
                             if v.dtype.is_floating]))


def first_bad_step(outputs, start_step, loss_upper_bound, gradients_may_overflow):
  """The first step of a train_loop call whose loss is non-finite or above the bound, or whose gradient norm
  is non-finite; None when all are good. outputs: {"loss": [n], "grad_norm": [n]}. Under fp16 loss scaling a
  non-finite gradient only means the optimizer skipped that update, so it is not a bad step there."""
  bad = ~np.isfinite(outputs["loss"]) | (outputs["loss"] > loss_upper_bound)
  if not gradients_may_overflow:
    bad |= ~np.isfinite(outputs["grad_norm"])
  return start_step + 1 + int(np.argmax(bad)) if bad.any() else None


def divergence_advice(dtype, learning_rate):
  """What to try after a diverged step, for the run's --dtype."""
  by_dtype = {
      "fp16": "fp16 overflows more easily than the other dtypes: try --dtype=bf16 (or fp32), or lower "
              f"--learning_rate (now {learning_rate:g})",
      "bf16": f"lower --learning_rate (now {learning_rate:g}) or try --dtype=fp32",
      "fp32": f"lower --learning_rate (now {learning_rate:g}) or raise --warmup_fraction",
  }
  return by_dtype[dtype] + "; --recovery_max_trials=N reloads the last good checkpoint and continues instead"


class Diverged(errors.UserError, FloatingPointError):
  """Training diverged (non-finite or exploding loss, non-finite gradients or weights); nothing bad was saved."""


class StopRequests:
  """SIGTERM / SIGINT → a flag the loop reads between steps (the default handlers come back on `restore`)."""

  def __init__(self):
    self.signals = []
    self._previous = {sig: signal.signal(sig, lambda signum, _: self.signals.append(signum))
                      for sig in (signal.SIGTERM, signal.SIGINT)}

  def __bool__(self):
    return bool(self.signals)

  def restore(self):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class Preempted(Exception):
  """Every worker saved the agreed step after a stop request reached one of them."""


def coordinated_stop(strategy, checkpoint, model_dir, save, stop_requests):
  """Multi-worker runs: TensorFlow's PreemptionCheckpointHandler, or None on one host.

  A SIGTERM/SIGINT on any worker sets `stop_requests`; the handler polls it, agrees with every worker (through
  the coordination service) on the step after which all save, and then calls `save(...)` on every worker and
  raises Preempted. It reads the chief's --model_dir (the checkpoint already restored from there).
  """
  if num_workers(strategy) == 1:
    return None

  def exit_fn():
    raise Preempted()

  config = tf.distribute.experimental.TerminationConfig(
      termination_watcher_fn=lambda: bool(stop_requests), exit_fn=exit_fn, save_fn=save, grace_period=0)
  reader = tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=None)  # reads the chief's folder
  return tf.distribute.experimental.PreemptionCheckpointHandler(strategy.cluster_resolver, reader,
                                                                termination_config=config)
