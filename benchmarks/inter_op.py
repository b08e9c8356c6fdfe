"""Training speed with one op at a time (--inter_op_threads=1, the CPU default) against TensorFlow's choice (0).

  python benchmarks/inter_op.py --rounds=4 --out=docs/benchmarks/inter_op

The crash soak's data and encoder (tools/crash_soak.py: 3,000 tweets in aclImdb layout, a 2-layer H128 encoder
without bert_config.json; or --encoder), --seq_length=64, --batch_size=32, buckets auto, for each --dtypes entry.
Every round runs each (dtype, threads) row once as a fresh train.py process, in an order rotated per round
(benchmarks/rounds.py), so a slow spell of the machine hits every row. Per row: examples/s as the median of its
timed windows (every TensorBoard window after the first, which holds the tracing), and the ratio to threads=0 of the
same dtype in the same round, median over rounds (min-max); plus the process's wall seconds (startup, tokenizing,
validation too).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import bertclf  # noqa: F401,E402  (selects tf_keras before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import rounds  # noqa: E402
from bertclf import hardware  # noqa: E402
from bertclf import summaries  # noqa: E402
from tools import crash_soak  # noqa: E402

WINDOW = 20  # steps per TensorBoard window


def run(imdb, hub, model_dir, dtype, threads, steps):
  """One train.py process: (examples/s of each timed window, wall seconds)."""
  shutil.rmtree(model_dir, ignore_errors=True)
  cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--dataset={imdb}", f"--encoder={hub}",
         f"--model_dir={model_dir}", "--seq_length=64", "--batch_size=32", f"--train_steps={steps}",
         f"--steps_per_loop={WINDOW // 2}", f"--summary_every_steps={WINDOW}", f"--log_every_steps={WINDOW}",
         "--checkpoint_every_steps=1000000", "--encoder_impl=native", f"--dtype={dtype}", "--export=false",
         f"--inter_op_threads={threads}"]
  start = time.time()
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  wall = time.time() - start
  if proc.returncode:
    raise RuntimeError(f"train.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  rates = [v for _, v in summaries.read_scalars(os.path.join(model_dir, "train"))["examples_per_sec"]]
  return rates[1:], wall


def _machine():
  """CPU model, core count and TensorFlow version, for the report."""
  return f"{hardware.cpu_name()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--dtypes", default="fp32,bf16")
  parser.add_argument("--encoder", default=None, help="another encoder (e.g. runs/minilm_hub from make demo); "
                      "default: the soak's 2-layer H128 one")
  parser.add_argument("--work_dir", default="/tmp/bertclf_inter_op")
  parser.add_argument("--out", default=None, help="write OUT.md and OUT.json")
  args = parser.parse_args()
  imdb, hub = crash_soak.make_assets(os.path.join(args.work_dir, "assets"))
  hub = args.encoder or hub
  rows = [(dtype, threads) for dtype in args.dtypes.split(",") for threads in (0, 1)]
  windows = {row: [] for row in rows}
  walls = {row: [] for row in rows}
  for r in range(args.rounds):
    for dtype, threads in rounds.rotated(rows, r):
      rates, wall = run(imdb, hub, os.path.join(args.work_dir, "model"), dtype, threads, args.steps)
      windows[(dtype, threads)].append(rates)
      walls[(dtype, threads)].append(wall)
      print(f"round {r} {dtype} threads={threads}: {np.median(rates):.1f} examples/s, {wall:.1f} s", flush=True)
  results = []
  for dtype, threads in rows:
    stats = rounds.row_stats(windows[(dtype, threads)], reference=windows[(dtype, 0)])
    results.append({"dtype": dtype, "inter_op_threads": threads, "wall_seconds": float(np.median(walls[(dtype,
                    threads)])), **stats})
  lines = [f"`python {' '.join(sys.argv)}`", "", f"{_machine()}, {time.strftime('%Y-%m-%d')}", "",
           "| dtype | --inter_op_threads | examples/s (min-max) | ratio to 0 (min-max) | wall s |",
           "|---|---|---|---|---|"]
  for x in results:
    lines.append(f"| {x['dtype']} | {x['inter_op_threads']} | {x['examples_per_sec']:.1f} "
                 f"({x['spread'][0]:.1f}-{x['spread'][1]:.1f}) | {x['ratio_to_0']:.3f} "
                 f"({x['ratio_spread'][0]:.3f}-{x['ratio_spread'][1]:.3f}) | {x['wall_seconds']:.1f} |")
  print("\n".join(lines))
  if args.out:
    with open(args.out + ".md", "w", encoding="utf-8") as f:
      f.write("\n".join(lines) + "\n")
    with open(args.out + ".json", "w", encoding="utf-8") as f:
      json.dump({"command": " ".join(sys.argv), "rows": results}, f, indent=1)


if __name__ == "__main__":
  main()
