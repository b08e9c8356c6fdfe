"""multi_worker_mirrored: two local worker processes on 127.0.0.1, each with its own TF_CONFIG.

Every test here starts train.py processes (TensorFlow's import and tracing, per worker): all are marked slow."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from bertclf import summaries
from bertclf.tools import local_cluster
from harness import _argv
from harness import _weights
from harness import assert_same_tensors
from harness import copy_run
from harness import ROOT
from harness import run_train
from harness import tail

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_worker_run(tmp_path_factory, tiny_hub, toy_imdb):
  """10 steps on two workers that share --model_dir (a checkpoint at 10), with an export; length buckets 26, 27 and
  40, which the toy reviews' batches (longest 25-35 tokens) all use within 10 steps."""
  model_dir = tmp_path_factory.mktemp("mw") / "run"
  procs = []
  for tf_config in local_cluster.worker_tf_configs(2):
    env = dict(os.environ, TF_CONFIG=tf_config)
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker_mirrored"] +
        _argv(str(model_dir), tiny_hub, toy_imdb, train_steps=10, epochs=1, checkpoint_every_steps=10,
              export=True, seq_length=40, bucket_boundaries="26,27"),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT))
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0, f"worker {i}: exit {p.returncode}" + tail(out)
  return model_dir


def test_two_workers_train_together(two_worker_run):
  model_dir = two_worker_run
  with open(model_dir / "config.json") as f:
    config = json.load(f)
  assert config["num_replicas"] == 2 and "CollectiveAllReduce" in config["strategy_class"], config
  assert tf.train.latest_checkpoint(str(model_dir)).endswith("-10")  # the chief writes the real checkpoints
  assert (model_dir / "export" / "saved_model.pb").exists()
  losses = summaries.read_scalars(str(model_dir / "train"))["loss"]
  assert losses[-1][0] == 10 and all(v == v for _, v in losses)  # finite (not NaN)


def test_two_workers_bucket_as_two_replicas_of_one_process(two_worker_run, tmp_path, tiny_hub, toy_imdb):
  """The same buckets and global batches on 2 workers as on 2 replicas in one process, so the same weights: every
  worker pads a step's batch to the same length, and the embedding rows padded for the collectives add nothing."""
  with open(two_worker_run / "config.json") as f:
    config = json.load(f)
  assert config["train_bucket_lengths"] == [26, 27, 40], config["train_bucket_lengths"]
  one_process = run_train(tmp_path / "mirrored", tiny_hub, toy_imdb, train_steps=10, epochs=1,
                          checkpoint_every_steps=10, seq_length=40, bucket_boundaries="26,27", num_cpu_devices=2)
  assert_same_tensors(_weights(tf.train.latest_checkpoint(str(two_worker_run))),
                      _weights(tf.train.latest_checkpoint(one_process)), atol=1e-6,
                      what="2 workers vs 2 replicas in one process")


class _Workers:
  """Two train.py workers on 127.0.0.1; their output is collected by threads so either can be waited on."""

  def __init__(self, model_dirs, tiny_hub, toy_imdb, **overrides):
    self.procs, self.outputs = [], []
    for tf_config, model_dir in zip(local_cluster.worker_tf_configs(len(model_dirs)), model_dirs):
      env = dict(os.environ, TF_CONFIG=tf_config)
      proc = subprocess.Popen(
          [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker_mirrored"] +
          _argv(str(model_dir), tiny_hub, toy_imdb, **overrides),
          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
      lines = []
      threading.Thread(target=lambda p=proc, out=lines: out.extend(p.stdout), daemon=True).start()
      self.procs.append(proc)
      self.outputs.append(lines)

  def wait_for(self, index, needle, timeout=180):
    deadline = time.time() + timeout
    while not any(needle in line for line in list(self.outputs[index])):
      assert time.time() < deadline and self.procs[index].poll() is None, \
          f"worker {index}: no {needle!r} (exit {self.procs[index].poll()})" + tail(self.text(index))
      time.sleep(0.05)

  def finish(self, timeout=180):
    codes = [p.wait(timeout=timeout) for p in self.procs]
    time.sleep(0.2)  # the reader threads take the last lines
    return codes

  def text(self, index):
    return "".join(self.outputs[index])


def _step_of(ckpt):
  return int(ckpt.rsplit("-", 1)[1])


def test_a_stop_or_a_lost_worker_ends_every_worker_and_the_same_command_resumes(tmp_path, tiny_hub, toy_imdb):
  model_dir = tmp_path / "mw"
  # 60 steps, one per call, so a signal lands between steps; a checkpoint every 20 steps.
  common = dict(train_steps=60, epochs=1, steps_per_loop=1, log_every_steps=1, checkpoint_every_steps=20,
                dropout=0.3)
  # 1. SIGTERM to worker 1 only: every worker saves the same step and exits like a single host (143).
  workers = _Workers([model_dir] * 2, tiny_hub, toy_imdb, **common)
  workers.wait_for(1, "step 8/60")
  workers.procs[1].send_signal(signal.SIGTERM)
  assert workers.finish() == [143, 143], tail(workers.text(0)) + tail(workers.text(1))
  stopped = _step_of(tf.train.latest_checkpoint(str(model_dir)))
  assert 8 <= stopped < 40, stopped
  assert _step_of(tf.train.latest_checkpoint(str(model_dir / ".workers" / "worker_1"))) == stopped
  # 2. The same command on both: each restores the chief's checkpoint. Then kill -9 of worker 1 ends the chief
  # in bounded time with one line naming the checkpoint a rerun resumes from.
  workers = _Workers([model_dir] * 2, tiny_hub, toy_imdb, **common)
  for index in (0, 1):
    workers.wait_for(index, f"continuing at step {stopped} of 60")
  periodic = (stopped // 20 + 1) * 20  # the next periodic checkpoint (every 20 steps): 20 or 40
  workers.wait_for(0, f"step {periodic + 3}/60")
  workers.procs[1].kill()
  start = time.time()
  code = workers.procs[0].wait(timeout=120)
  assert code not in (0, 143) and time.time() - start < 120
  lost = [line for line in workers.outputs[0] if line.startswith("error: a worker was lost")]
  assert len(lost) == 1 and lost[0].rstrip().endswith(f"resumes from {model_dir / f'ckpt-{periodic}'}."), lost
  # 3. The same command again finishes the run from there.
  workers = _Workers([model_dir] * 2, tiny_hub, toy_imdb, **common)
  assert workers.finish() == [0, 0], tail(workers.text(0)) + tail(workers.text(1))
  assert all(f"continuing at step {periodic} of 60" in workers.text(i) for i in (0, 1))
  assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-60")


def test_workers_that_restore_different_steps_are_refused(tmp_path, tiny_hub, toy_imdb, two_worker_run):
  chief_dir = copy_run(two_worker_run, tmp_path / "a")  # finished at step 10
  # Worker 1 does not see the chief's folder (as if --model_dir were not on shared storage).
  workers = _Workers([chief_dir, tmp_path / "b"], tiny_hub, toy_imdb, train_steps=20, epochs=1,
                     checkpoint_every_steps=10, seq_length=40, bucket_boundaries="26,27")  # two_worker_run's
  assert workers.finish() == [2, 2], tail(workers.text(0)) + tail(workers.text(1))
  assert "error: The workers would restore different steps (0 and 10" in workers.text(0), tail(workers.text(0))
