"""tools/crash_soak.py's counting: a run that dies by a signal is a crash, with its folder and last lines kept; a
clean run's folder goes. The long soak itself (train.py, many times) is a script; docs/TRAINING.md has its counts."""
import json
import os
import signal
import sys

from harness import ROOT

sys.path.insert(0, os.path.join(ROOT, "tools"))
import crash_soak  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def test_a_run_killed_by_a_signal_is_counted_kept_and_its_tail_recorded(tmp_path):
  # run 1 prints a line and ends by SIGSEGV (as a native crash does), run 2 exits 3, the others exit 0.
  script = ("import os, signal, sys; run = int(os.path.basename(os.path.dirname(sys.argv[1]))[4:]); "
            "print('last words of run', run, flush=True); "
            "os.kill(os.getpid(), signal.SIGSEGV) if run == 1 else sys.exit(3 if run == 2 else 0)")
  rows = crash_soak.soak(lambda model_dir: [sys.executable, "-c", script, model_dir], runs=4, parallel=2,
                         env=dict(os.environ), work_dir=str(tmp_path), jsonl=str(tmp_path / "rows.jsonl"))
  assert [(r["run"], r["code"]) for r in rows] == [(0, 0), (1, -signal.SIGSEGV), (2, 3), (3, 0)]
  assert rows[1]["tail"] == "last words of run 1\n" and "tail" not in rows[0]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "run_1", "run_2"]
  lines = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
  assert sorted((r["run"], r["code"]) for r in lines) == [(r["run"], r["code"]) for r in rows]
