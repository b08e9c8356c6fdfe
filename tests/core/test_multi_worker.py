"""multi_worker_mirrored: two local worker processes on 127.0.0.1, each with its own TF_CONFIG."""
import json
import os
import socket
import subprocess
import sys

import tensorflow as tf

from bertclf import summaries
from harness import _argv
from harness import ROOT


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def test_two_workers_train_together(tmp_path, tiny_hub, toy_imdb):
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  model_dir = tmp_path / "mw"
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), "--strategy=multi_worker_mirrored"] +
        _argv(str(model_dir), tiny_hub, toy_imdb, train_steps=10, epochs=1, export=True),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT))
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  with open(model_dir / "config.json") as f:
    config = json.load(f)
  assert config["num_replicas"] == 2 and "CollectiveAllReduce" in config["strategy_class"], config
  assert tf.train.latest_checkpoint(str(model_dir)).endswith("-10")  # the chief writes the real checkpoints
  assert (model_dir / "export" / "saved_model.pb").exists()
  losses = summaries.read_scalars(str(model_dir / "train"))["loss"]
  assert losses[-1][0] == 10 and all(v == v for _, v in losses)  # finite (not NaN)
