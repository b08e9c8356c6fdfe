"""The same train.py command after the run finished: one line saying so, exit 0, no second export, no warnings
about checkpoint values that were never restored; a missing export is written once."""
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from harness import ROOT, _argv, copy_run, run_train, tail


@pytest.mark.slow  # a train.py process: the warnings it must not print come at its exit
def test_rerun_of_a_finished_run_says_so_and_does_nothing(tmp_path, tiny_hub, toy_imdb, ten_step_run):
  flags = dict(train_steps=10, export=True)  # as ten_step_run was trained
  run = copy_run(ten_step_run, tmp_path / "run")
  export_pb = os.path.join(run, "export", "saved_model.pb")
  written = os.stat(export_pb).st_mtime_ns
  checkpoints = sorted(os.listdir(run))
  # A separate process, as a user reruns it: TensorFlow's "Value in checkpoint could not be found" warnings are
  # printed when the restore's bookkeeping is garbage-collected, at the latest when the process exits.
  out = subprocess.run([sys.executable, os.path.join(ROOT, "train.py")] +
                       _argv(run, tiny_hub, toy_imdb, **flags), capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert out.returncode == 0, tail(out.stderr)
  finished = [line for line in out.stderr.splitlines() if "already finished" in line]
  assert len(finished) == 1 and finished[0].endswith(
      f"The run in {run} is already finished at step 10 of 10; its export is {os.path.join(run, 'export')}. "
      "Nothing to do."), tail(out.stderr)
  assert "could not be found" not in out.stderr and "unrestored values" not in out.stderr, tail(out.stderr)
  assert "Exporting" not in out.stderr and os.stat(export_pb).st_mtime_ns == written
  assert sorted(os.listdir(run)) == checkpoints  # no new checkpoint either

  # Without its export (deleted, or trained with --export=false), the rerun writes it once, from the best
  # checkpoint, and trains no further.
  tf.io.gfile.rmtree(os.path.join(run, "export"))
  run_train(tmp_path / "run", tiny_hub, toy_imdb, **flags)
  assert os.path.exists(export_pb)
  assert tf.train.latest_checkpoint(run).endswith("-10")
