"""Kills training at random moments, resumes it with the same command, and checks the result.

  python tools/fault_injection.py --trials=20 --out=docs/benchmarks/fault_injection
  python tools/fault_injection.py --trials=20 --workers=2 --out=docs/benchmarks/fault_injection_workers
  python tools/fault_injection.py --trials=30 --replicas=2 --extra="--encoder_impl=native --dtype=bf16 \\
      --bucket_boundaries=auto"
  python tools/fault_injection.py --trials=10 --variant=swa    # the evaluation weights' state resumes too

bf16 resumes bit for bit as well where it was measured (10 of 10 trials with 2 replicas and buckets on an
AMX-BF16 Xeon: docs/benchmarks/fault_injection_bf16_buckets.md).

Each trial trains the tiny preset (generated reviews, a random 2-layer hidden-32 encoder rebuilt natively, so its
dropout and the head's are bertclf's resumable masks; rates 0.1 and 0.3; fp32 and no buckets unless --extra gives
--dtype or --bucket_boundaries) to --steps: it starts the run, sends kill -9 or SIGTERM (chosen at random) at a
random moment, to the process or, with --workers=2, to one random worker of a multi_worker_mirrored pair on
127.0.0.1, then reruns the same command, up to --interrupts times (each at a random step), then lets it finish.
Checkpoints come every --checkpoint_every steps, so many kills land during a save. --variant=ema or swa trains with
that --weights_for_eval entry (its averages are then in every checkpoint). The final checkpoint is compared with an
uninterrupted run of the same command: "identical" means every tensor of the checkpoint (model, optimizer, step,
best validation score, recovery count, --weights_for_eval state) is equal bit for bit. Any exit that was not caused
by the injected signal is counted as a crash (a segmentation fault is -11), with the last lines of its output kept.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
sys.path.insert(0, ROOT)
from bertclf.tools import local_cluster  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


# --variant: the evaluation-weights entries whose state the comparison covers (averages in every checkpoint).
VARIANTS = {"none": [], "ema": ["--weights_for_eval=ema", "--ema_decay=0.9"],
            "swa": ["--weights_for_eval=swa", "--swa_start_fraction=0.25", "--swa_every=3"]}


class Run:
  """One start of the command: 1 process, or 2 worker processes with their own TF_CONFIG."""

  def __init__(self, args, model_dir):
    flags = [f"--dataset={args.assets}/imdb", f"--encoder={args.assets}/hub", f"--model_dir={model_dir}",
             "--seq_length=24", "--batch_size=16", "--learning_rate=5e-3", f"--train_steps={args.steps}",
             "--steps_per_loop=1", "--log_every_steps=1", f"--checkpoint_every_steps={args.checkpoint_every}",
             "--dropout=0.3", "--encoder_impl=native", "--dtype=fp32", "--bucket_boundaries=", "--export=false",
             f"--num_cpu_devices={args.replicas}"] + VARIANTS[args.variant] + args.extra.split()  # --extra wins
    envs = [dict(os.environ)]
    if args.workers > 1:
      envs = [dict(os.environ, TF_CONFIG=c) for c in local_cluster.worker_tf_configs(args.workers)]
      flags.append("--strategy=multi_worker_mirrored")
    self.procs, self.lines = [], []
    for env in envs:
      proc = subprocess.Popen([PY, os.path.join(ROOT, "train.py")] + flags, env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
      lines = []
      threading.Thread(target=lambda p=proc, out=lines: out.extend(p.stdout), daemon=True).start()
      self.procs.append(proc)
      self.lines.append(lines)

  def last_step(self):
    """The last step the chief has logged (0 before the first): the signal handlers are in place after it."""
    steps = [int(m.group(1)) for line in list(self.lines[0]) if (m := re.search(r"\] step (\d+)/\d+ ", line))]
    return max(steps, default=0)

  def wait(self, timeout):
    codes = []
    for proc in self.procs:
      try:
        codes.append(proc.wait(timeout=timeout))
      except subprocess.TimeoutExpired:
        proc.kill()
        codes.append("hung")
    time.sleep(0.2)
    return codes

  def tail(self, index, n=30):
    return "".join(self.lines[index][-n:])


def _tensors(model_dir):
  """Every tensor of the latest checkpoint but its save count and object graph (bookkeeping of the saves)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ckpt = tf.train.latest_checkpoint(model_dir)
  reader = tf.train.load_checkpoint(ckpt)
  return ckpt, {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def trial(args, rng, model_dir):
  """Interrupts and reruns one run until it finishes; returns a result row."""
  row = {"kills": 0, "sigterms": 0, "crashes": [], "starts": 0, "hung": 0}
  for attempt in range(args.interrupts + 1):
    run = Run(args, model_dir)
    row["starts"] += 1
    # A random step of the run; the signal goes out as soon as the chief has logged it (or a later one), after a
    # random few milliseconds, so it lands in a step, a save (every --checkpoint_every steps) or a validation.
    kill_at = rng.randrange(1, args.steps)
    deadline = time.time() + 300
    while run.last_step() < kill_at and time.time() < deadline and all(p.poll() is None for p in run.procs):
      time.sleep(0.005)
    target = rng.randrange(len(run.procs))
    sig = None
    if attempt < args.interrupts and run.procs[target].poll() is None:
      time.sleep(rng.uniform(0, args.max_delay))
      sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
      if run.procs[target].poll() is None:
        run.procs[target].send_signal(sig)
        row["kills" if sig == signal.SIGKILL else "sigterms"] += 1
    codes = run.wait(timeout=600)
    for index, code in enumerate(codes):
      expected = {0, 1, 143} if sig is not None else {0}  # 1: a worker that lost its peer (one-line error)
      if index == target and sig is not None:
        # SIGKILL always ends the process; a SIGTERM that lands after the loop (the handlers are gone then, the
        # last checkpoint saved) ends it the default way, and the rerun finds the run finished.
        expected |= {-sig}
      if code == "hung":
        row["hung"] += 1
      elif code not in expected:
        row["crashes"].append({"code": code, "attempt": attempt, "tail": run.tail(index)})
    if all(code == 0 for code in codes):
      break
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--trials", type=int, default=10)
  parser.add_argument("--interrupts", type=int, default=2, help="interruptions per trial before it may finish")
  parser.add_argument("--workers", type=int, default=1, choices=[1, 2])
  parser.add_argument("--replicas", type=int, default=1, help="logical CPU devices per process")
  parser.add_argument("--steps", type=int, default=120)
  parser.add_argument("--checkpoint_every", type=int, default=5)
  parser.add_argument("--max_delay", type=float, default=0.05, help="seconds after the chosen step, at most")
  parser.add_argument("--variant", default="none", choices=sorted(VARIANTS),
                      help="train with this --weights_for_eval entry, so its state is checked too")
  parser.add_argument("--extra", default="", help="more train.py flags, e.g. '--dtype=bf16'")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--work_dir", default="/tmp/bertclf_fault_injection")
  parser.add_argument("--out", default=None, help="write OUT.md and OUT.json")
  args = parser.parse_args()
  args.assets = os.path.join(args.work_dir, "assets")
  if not os.path.exists(os.path.join(args.assets, "hub")):
    subprocess.run([PY, "-m", "bertclf.tools.toydata", f"--out_dir={args.assets}"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  rng = random.Random(args.seed)
  reference_dir = os.path.join(args.work_dir, "reference")
  shutil.rmtree(reference_dir, ignore_errors=True)
  start = time.time()
  codes = Run(args, reference_dir).wait(timeout=900)
  assert codes == [0] * len(codes), f"the uninterrupted run failed: {codes}"
  ref_ckpt, reference = _tensors(reference_dir)
  rows = []
  for t in range(args.trials):
    model_dir = os.path.join(args.work_dir, f"trial_{t}")
    shutil.rmtree(model_dir, ignore_errors=True)
    row = trial(args, rng, model_dir)
    ckpt, tensors = _tensors(model_dir)
    row["final"] = os.path.basename(ckpt)
    row["identical"] = (tensors.keys() == reference.keys() and
                        all(np.array_equal(tensors[k], reference[k]) for k in reference))
    row["differ"] = sorted(k for k in reference if k not in tensors or not np.array_equal(tensors[k], reference[k]))
    row["max_abs_diff"] = max(float(np.max(np.abs(tensors[k].astype(np.float64) - reference[k])))
                              for k in reference if k in tensors)
    rows.append(row)
    print(f"trial {t}: starts {row['starts']} kill -9 {row['kills']} SIGTERM {row['sigterms']} "
          f"crashes {len(row['crashes'])} final {row['final']} identical {row['identical']}", flush=True)
    if row["identical"] and not row["crashes"]:
      shutil.rmtree(model_dir, ignore_errors=True)  # kept otherwise, to look at
  summary = {"command": " ".join(sys.argv), "reference": os.path.basename(ref_ckpt), "trials": len(rows),
             "kill -9": sum(r["kills"] for r in rows), "SIGTERM": sum(r["sigterms"] for r in rows),
             "starts": sum(r["starts"] for r in rows), "crashes": sum(len(r["crashes"]) for r in rows),
             "hung": sum(r["hung"] for r in rows), "finished": sum(r["final"] == ref_ckpt.rsplit("/", 1)[1]
                                                                   for r in rows),
             "identical": sum(r["identical"] for r in rows), "minutes": round((time.time() - start) / 60, 1)}
  print(json.dumps(summary, indent=2))
  if args.out:
    with open(args.out + ".json", "w") as f:
      json.dump({"summary": summary, "rows": rows}, f, indent=2, default=str)
    with open(args.out + ".md", "w") as f:
      f.write(f"`python {' '.join(sys.argv)}`\n\n| | |\n|---|---|\n")
      f.write("".join(f"| {k} | {v} |\n" for k, v in summary.items() if k != "command"))
      f.write("\n| trial | starts | kill -9 | SIGTERM | crashes | final | identical | max abs diff |\n"
              "|---|---|---|---|---|---|---|---|\n")
      f.write("".join(f"| {i} | {r['starts']} | {r['kills']} | {r['sigterms']} | {len(r['crashes'])} | "
                      f"{r['final']} | {r['identical']} | {r['max_abs_diff']:.3g} |\n" for i, r in enumerate(rows)))
      for i, r in enumerate(rows):
        for c in r["crashes"]:
          f.write(f"\ntrial {i}, start {c['attempt']}: exit {c['code']}\n```\n{c['tail']}```\n")
  sys.exit(0 if summary["crashes"] == summary["hung"] == 0 and summary["identical"] == len(rows) else 1)


if __name__ == "__main__":
  main()
