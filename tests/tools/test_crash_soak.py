"""tools/crash_soak.py's counting: a run that dies by a signal is a crash, with its folder and last lines kept; a
clean run's folder goes. And tools/guard_alloc.c (its --guard) faults at a write past a heap block or into a freed
one. The long soak itself (train.py, many times) is a script; docs/TRAINING.md has its counts."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

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


GUARD_SCRIPT = """
import ctypes, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = libc.memalign.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 8192
p = libc.memalign(64, size) if sys.argv[1] == "aligned" else libc.malloc(size)
ctypes.memset(p, 1, size)  # every byte of the block: fine
print("in bounds", flush=True)
if sys.argv[2] == "past_end":
  ctypes.memset(p + size, 1, 64)
elif sys.argv[2] == "after_free":
  libc.free(p)
  ctypes.memset(p, 1, 64)
print("no fault", flush=True)
"""


@pytest.fixture(scope="module")
def guard_so(tmp_path_factory):
  """tools/guard_alloc.c built once for the module's cases."""
  if not shutil.which("gcc"):
    pytest.skip("needs gcc to build tools/guard_alloc.c")
  return crash_soak.build_guard(str(tmp_path_factory.mktemp("guard")))


@pytest.mark.parametrize("block,write,guard_malloc,faults", [
    ("aligned", "past_end", "0", True), ("aligned", "after_free", "0", True), ("aligned", "none", "0", False),
    ("malloc", "past_end", "0", False), ("malloc", "past_end", "1", True), ("malloc", "after_free", "1", True)])
def test_guard_alloc_faults_at_a_write_past_a_block_or_into_a_freed_one(tmp_path, guard_so, block, write,
                                                                         guard_malloc, faults):
  env = dict(os.environ, LD_PRELOAD=guard_so, GUARD_ALLOC_MALLOC=guard_malloc)
  proc = subprocess.run([sys.executable, "-c", GUARD_SCRIPT, block, write], env=env, capture_output=True, text=True,
                        cwd=tmp_path)  # where a core dump of the faulting case goes
  assert proc.stdout.startswith("in bounds\n")
  assert (proc.returncode, proc.stdout.endswith("no fault\n")) == ((-signal.SIGSEGV, False) if faults else (0, True))
