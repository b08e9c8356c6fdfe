"""Accuracy at equal steps: which speed option costs accuracy, each one alone against the tutorial's `fit`.

  python benchmarks/ablation.py --configs=tutorial,hub_fp32,native_fp32,native_bf16,native_fp32_buckets,fast \
      --seeds=0,1,2,3,4 --out=docs/benchmarks/ablation
  python benchmarks/ablation.py --configs=tutorial_paired,hub_fp32,fast --paired_baseline=tutorial_paired ...

Every configuration trains on the same first --train_examples demo tweets (one epoch, 10% warmup) once per seed
(the seed sets the head's init, dropout and the data order) and is scored on the same --validation_examples.
The seeds are fixed before the run. Reported per configuration: mean ± std over seeds and the per-seed values;
against --baseline (the tutorial): the difference of the means, its standard error and Welch's test; against
--paired_baseline (a train.py configuration, or tutorial_paired: the tutorial's fit on train.py's data order and
head init): the mean per-seed difference, its standard error and a paired t-test (bertclf/stats.py). Results
are written after every run, and a rerun with the same --out skips the (configuration, seed) pairs already
there, so a long ablation can be stopped and continued.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bertclf  # noqa: F401,E402  (selects tf_keras before TensorFlow loads)

import json  # noqa: E402
import tempfile  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import numpy as np  # noqa: E402

from bertclf import data  # noqa: E402
from bertclf import encoders  # noqa: E402
from bertclf import hardware  # noqa: E402
from bertclf import stats  # noqa: E402
import throughput  # noqa: E402  (its flags: --encoder, --seq_length, --batch_size, --learning_rate, ...)

FLAGS = flags.FLAGS
NATIVE = ["--encoder_impl=native"]
BUCKETS = ["--bucket_boundaries=auto", "--num_buckets=16"]
UNBUCKETED = ["--bucket_boundaries="]
# Name → (description, train.py flags). None: the tutorial's Keras model and fit (throughput.tutorial_fit);
# PAIRED: the same, with train.py's data order and head init for the seed (tutorial_fit(paired=True)).
PAIRED = ["<tutorial_fit paired>"]
CONFIGS = {
    "tutorial": ("Keras fit, Hub preprocessing + encoder in the model, fp32", None),
    "tutorial_paired": ("the tutorial with train.py's data order and head init for the seed", PAIRED),
    "hub_fp32": ("train.py, Hub encoder, fp32, fixed length", ["--encoder_impl=hub", "--dtype=fp32"] + UNBUCKETED),
    "native_fp32": ("train.py, native encoder, fp32, fixed length", NATIVE + ["--dtype=fp32"] + UNBUCKETED),
    "native_bf16": ("train.py, native encoder, bf16, fixed length", NATIVE + ["--dtype=bf16"] + UNBUCKETED),
    "native_fp32_buckets": ("train.py, native encoder, fp32, auto buckets", NATIVE + ["--dtype=fp32"] + BUCKETS),
    "fast": ("train.py, native encoder, bf16, auto buckets", NATIVE + ["--dtype=bf16"] + BUCKETS),
    "fast_all_rows": ("fast with every row of the last layer", NATIVE + ["--dtype=bf16", "--cls_only_last_layer=false"]
                      + BUCKETS),
    "fast_32bit_masks": ("fast with 32-bit dropout masks", NATIVE + ["--dtype=bf16", "--dropout_masks=32bit"]
                         + BUCKETS),
}
flags.DEFINE_list("configs", ["tutorial", "hub_fp32", "native_fp32", "native_bf16", "native_fp32_buckets", "fast"],
                  f"Configurations to run, in this order: {', '.join(CONFIGS)}, or NAME=train.py flags "
                  "separated by spaces (e.g. 'fast_pool8=--encoder_impl=native --dtype=bf16 "
                  "--bucket_boundaries=auto --bucket_pool_batches=8').")
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "One run per configuration and seed.")
flags.DEFINE_string("baseline", "tutorial", "Configuration compared unpaired (Welch) with every other one.")
flags.DEFINE_string("paired_baseline", "native_fp32", "train.py configuration compared paired by seed with the "
                    "other train.py ones.")
flags.DEFINE_bool("report_only", False, "Rewrite the report from <out>.json without training.")


def parse_config(value):
  """--configs entry → (name, description, train.py flags or None)."""
  if "=" in value.split()[0] and not value.startswith("--"):
    name, extra = value.split("=", 1)
    return name, extra, extra.split()
  if value not in CONFIGS:
    raise app.UsageError(f"--configs: unknown configuration {value!r}; known: {', '.join(CONFIGS)}, or NAME=flags.")
  return (value,) + CONFIGS[value]


def run_one(flags_, handles, train, val, class_names, paths, steps, workdir, seed):
  """One training run; returns {seed, validation_accuracy, train_seconds}."""
  if flags_ is None:
    _, seconds, accuracy = throughput.tutorial_fit(handles, train.texts, train.labels, len(class_names), steps,
                                                   val, seed)
  elif flags_ == PAIRED:
    # train.py's training list: the subset file as train.py loads it (load_text_data's defaults are train.py's
    # data flag defaults: the split seed permutes the file order).
    listed = data.load_text_data(paths["train"], validation_file=paths["validation"]).train
    _, seconds, accuracy = throughput.tutorial_fit(handles, listed.texts, listed.labels, len(class_names), steps,
                                                   val, seed, paired=True)
  else:
    _, seconds, accuracy = throughput.run_train(flags_, paths, steps, workdir, seed)
  return {"seed": seed, "validation_accuracy": float(accuracy), "train_seconds": float(seconds)}


def summarise(report):
  """Per configuration: its seed summary, and two comparisons.

  Against --baseline (the tutorial): Welch's unpaired test. The tutorial's Keras fit draws its data order, head
  init and dropout from other code than train.py, so its seed s shares nothing with train.py's seed s.
  Against --paired_baseline (a train.py configuration or tutorial_paired): the paired t-test over seeds, since
  train.py's seed gives every configuration the same head init and dropout masks (and, without buckets, the
  same data order), so seed-to-seed luck cancels in the per-seed difference; tutorial_paired shares the head
  init and data order (not dropout).
  """
  configs = report["configs"]
  for name, entry in configs.items():
    entry["summary"] = stats.seed_summary([r["validation_accuracy"] for r in entry["runs"]])
    entry.pop("vs_baseline", None)
    if FLAGS.baseline in configs and name != FLAGS.baseline:
      base = [r["validation_accuracy"] for r in configs[FLAGS.baseline]["runs"]]
      entry["vs_baseline"] = stats.unpaired_seed_test(base, entry["summary"]["values"])
    paired = {r["seed"]: r["validation_accuracy"] for r in configs.get(FLAGS.paired_baseline, {}).get("runs", [])}
    shared = [r for r in entry["runs"] if r["seed"] in paired]
    if name != FLAGS.paired_baseline and entry["flags"] is not None and len(shared) >= 2:  # not 'tutorial'
      vs = stats.paired_seed_test([paired[r["seed"]] for r in shared], [r["validation_accuracy"] for r in shared])
      vs.update(seeds=[r["seed"] for r in shared], standard_error=vs["std"] / np.sqrt(vs["n"]))
      entry["vs_paired_baseline"] = vs


def _points(vs):
  """'+0.12 (0.20), p 0.57': a difference in accuracy points, its standard error and p; '' when not defined."""
  if not vs or vs.get("p") is None:
    return ""
  return f"{100 * vs['mean']:+.2f} ({100 * vs['standard_error']:.2f}), p {vs['p']:.2f}"


def markdown(report):
  lines = [f"Accuracy at equal steps: {report['train_examples']} training examples (one epoch of "
           f"{report['steps']} steps of {report['batch_size']}), {report['validation_examples']} validation "
           f"examples, seeds {', '.join(map(str, report['seeds']))}. Differences in accuracy points with their "
           f"standard error and p: against {FLAGS.baseline} unpaired (Welch), against {FLAGS.paired_baseline} "
           f"paired by seed. Command: `{report['command']}`", "",
           "| configuration | train s (median) | validation accuracy, mean ± std | per seed | "
           f"vs {FLAGS.baseline} | vs {FLAGS.paired_baseline} |", "|---|---|---|---|---|---|"]
  for name, e in report["configs"].items():
    s, runs = e["summary"], e["runs"]
    mean_std = f"{s['mean']:.4f} ± {s['std']:.4f}" if s.get("std") is not None else f"{s['mean']:.4f}"
    per_seed = ", ".join(f"{r['validation_accuracy']:.4f}" for r in runs)
    source = f" ({e['source']})" if e.get("source") else ""
    lines.append(f"| {name}: {e['description']}{source} | {np.median([r['train_seconds'] for r in runs]):.0f} | "
                 f"{mean_std} | {per_seed} | {_points(e.get('vs_baseline'))} | "
                 f"{_points(e.get('vs_paired_baseline'))} |")
  return "\n".join(lines) + "\n"


def main(_):
  configs = [parse_config(c) for c in FLAGS.configs]
  seeds = [int(s) for s in FLAGS.seeds]
  out = os.path.join(throughput.ROOT, FLAGS.out)
  report = {"configs": {}}
  if os.path.exists(out + ".json"):
    with open(out + ".json") as f:
      report = json.load(f)
  if FLAGS.report_only:
    _write(report, out)
    return
  handles = encoders.resolve(FLAGS.encoder)
  workdir = tempfile.mkdtemp(prefix="bertclf_ablation_")
  train, val, class_names, paths = throughput.write_subset(workdir)
  steps = len(train) // FLAGS.batch_size
  report.update({"train_examples": steps * FLAGS.batch_size, "steps": steps, "batch_size": FLAGS.batch_size,
                 "validation_examples": len(val), "seeds": seeds, "encoder": FLAGS.encoder,
                 "machine": {"processor": hardware.cpu_name(), "cpus": os.cpu_count(),
                             "cpu_flags": throughput.cpu_flags()}, "command": " ".join(sys.argv)})
  for name, description, flags_ in configs:
    entry = report["configs"].setdefault(name, {"description": description, "flags": flags_, "runs": []})
    for seed in seeds:
      if any(r["seed"] == seed for r in entry["runs"]):
        continue
      result = run_one(flags_, handles, train, val, class_names, paths, steps,
                       os.path.join(workdir, f"{name}_{seed}"), seed)
      entry["runs"].append(result)
      entry["runs"].sort(key=lambda r: r["seed"])
      logging.info("%s seed %d: %s", name, seed, result)
      _write(report, out)
  print(markdown(report))


def _write(report, out):
  """Summarises and writes <out>.json and <out>.md."""
  summarise(report)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".json", "w") as f:
    json.dump(report, f, indent=2)
  with open(out + ".md", "w") as f:
    f.write(markdown(report))


if __name__ == "__main__":
  flags.FLAGS.set_default("train_examples", 4096)
  flags.FLAGS.set_default("window_steps", 16)  # 128 steps = 8 whole windows, so train seconds count every step
  flags.FLAGS.set_default("tta_validation_examples", 3351)  # all of the demo's validation split
  flags.FLAGS.set_default("out", "docs/benchmarks/ablation")
  app.run(main)
