"""sweep.py and compare.py end to end: 2 configs x 1 seed of real train.py + eval.py runs on the tiny encoder, at the
same time on two (fake) GPUs, one of them stopped with SIGTERM mid-training and continued by the sweep, both sharing
one token cache; then a rerun skips everything. One seed, because every run is two processes (a train.py and an
eval.py, each importing TensorFlow and tracing its model); compare.py's statistics over several seeds are
tests/tools/test_comparison.py's."""
import json
import os
import re
import signal
import subprocess
import sys
import time

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from bertclf.tools import predictions
from harness import ROOT
from harness import tail

STEPS = 120


def _sweep(sweep_dir, tiny_hub, toy_imdb):
  train_args = (f"--dataset={toy_imdb} --encoder={tiny_hub} --seq_length=16 --batch_size=16 --learning_rate=5e-3 "
                f"--train_steps={STEPS} --steps_per_loop=2 --log_every_steps=2 --summary_every_steps=40 "
                "--checkpoint_every_steps=40 --export=false --encoder_dropout=false "
                f"--token_cache={sweep_dir.parent / 'tokens'}")
  # Fake GPU ids: two runs at once, each with its own CUDA_VISIBLE_DEVICES (on a CPU host the runs use the CPU).
  return [sys.executable, os.path.join(ROOT, "sweep.py"), f"--sweep_dir={sweep_dir}", "--seeds=0",
          f"--train_args={train_args}", "--config=a: --dropout=0.0", "--config=b: --dropout=0.2", "--gpus=0,1",
          "--retries=1", "--progress_every_secs=5"]


@pytest.mark.slow  # 2 train.py and 2 eval.py processes, a retry, two sweeps and compare.py
def test_sweep_runs_resumes_skips_and_compares(tmp_path, tiny_hub, toy_imdb):
  sweep_dir = tmp_path / "sweep"
  proc = subprocess.Popen(_sweep(sweep_dir, tiny_hub, toy_imdb), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=ROOT)
  seen = []
  for line in proc.stdout:  # the sweep's own lines (each run's output goes to its log file)
    seen.append(line)
    if "start a/seed_0 train" in line:
      break
  pid = int(re.search(r"\(pid (\d+)\)", seen[-1]).group(1))
  log = sweep_dir / "a" / "seed_0" / "train.log"
  deadline = time.time() + 120
  while not re.search(rf"step \d+/{STEPS} ", log.read_text() if log.exists() else "") and time.time() < deadline:
    time.sleep(0.05)
  os.kill(pid, signal.SIGTERM)  # the child train.py, as a preempted host or the OOM killer would
  out = "".join(seen) + proc.communicate(timeout=400)[0]
  assert proc.returncode == 0, tail(out)
  assert "a/seed_0 train: exit 143; starting it again (retry 1 of 1)" in out, tail(out)
  text = log.read_text()
  assert "Stopped by signal 15" in text, tail(text)
  resumed_at = int(re.search(rf"continuing at step (\d+) of {STEPS}", text).group(1))
  assert 0 < resumed_at < STEPS
  assert tf.train.latest_checkpoint(str(sweep_dir / "a" / "seed_0")).endswith(f"-{STEPS}")
  assert "on GPU 0" in out and "on GPU 1" in out and "2 of 2 runs finished" in out, tail(out)

  results = {}
  for config in ("a", "b"):
    run_dir = sweep_dir / config / "seed_0"
    state = json.loads((run_dir / "sweep_run.json").read_text())
    assert state["finished"] and state["train_attempts"] == (2 if config == "a" else 1)
    result = json.loads((run_dir / "eval_test.json").read_text())
    best = tf.train.latest_checkpoint(str(run_dir / "best"))  # the sweep scores what the run exports
    assert result["num_examples"] == 100 and result["checkpoint_rule"] == "best", result
    assert result["checkpoint"] == best and result["step"] == int(best.rsplit("-", 1)[1]), (result, best)
    ids, labels, _, probs = predictions.read(str(run_dir / "predictions_test.jsonl"))
    assert ids.tolist() == list(range(100)) and probs.shape == (100, 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.mean(probs.argmax(-1) == labels) == result["accuracy"]  # the file is what eval.py scored
    results[config] = result
  assert sorted(os.listdir(sweep_dir / "hparams" / "a")) == ["seed_0"]
  # One token cache for the whole sweep: the training, validation and test splits once each.
  assert len(os.listdir(sweep_dir.parent / "tokens")) == 3
  logs = [(sweep_dir / c / "seed_0" / "train.log").read_text() for c in ("a", "b")]
  # Three train.py starts (a, b and a's retry): one tokenized the training split, the other two read it.
  said = ["".join(logs).count(f"Token cache {what} for the training split") for what in ("miss", "hit")]
  assert said == [1, 2], (said, [tail(t) for t in logs])

  rerun = subprocess.run(_sweep(sweep_dir, tiny_hub, toy_imdb), capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
  assert rerun.returncode == 0, tail(rerun.stdout + rerun.stderr)
  assert "2 finished already, 0 to run" in rerun.stdout and " start " not in rerun.stdout, tail(rerun.stdout)

  compared = subprocess.run([sys.executable, os.path.join(ROOT, "compare.py"), f"--sweep_dir={sweep_dir}",
                             "--baseline=a", "--resamples=500"], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
  assert compared.returncode == 0, tail(compared.stderr)
  assert "### Against a, seed by seed" in compared.stdout and "| b | accuracy | 1 |" in compared.stdout
  report = json.loads((sweep_dir / "comparison.json").read_text())
  for config in ("a", "b"):
    for key in ("accuracy", "macro_f1", "loss"):
      assert report["configs"][config]["metrics"][key]["values"] == [results[config][key]]
  assert report["bootstrap"]["b"]["accuracy"]["n_seeds"] == 1
  assert (sweep_dir / "comparison.md").read_text().startswith("## Sweep")
  assert (sweep_dir / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predictions_output_is_refused_beside_predict():
  try:
    with pytest.raises(flags.IllegalFlagValueError, match="--predictions_output holds the scored --split"):
      flags.FLAGS(["eval.py", "--predictions_output=p.jsonl", "--predict=a great film"])
  finally:
    flags.FLAGS.unparse_flags()
