"""The comparison of a sweep's configurations (compare.py): per-config intervals over seeds, and against a
baseline the paired t-test over seeds and the example-level paired bootstrap; as Markdown, JSON and a PNG.

Reads what sweep.py and eval.py wrote: <sweep_dir>/sweep.json (configs, seeds, split), and in each finished
run folder eval_<split>.json (accuracy, macro F1, loss) and predictions_<split>.jsonl (per-example
probabilities). The statistics are in bertclf/stats.py; docs/SWEEPS.md says what each one answers.
"""
import json
import os

import numpy as np

from bertclf import stats
from bertclf.tools import predictions
from bertclf.tools import sweeps

# (key in eval_<split>.json, label, lower is better)
METRICS = (("accuracy", "accuracy", False), ("macro_f1", "macro F1", False), ("loss", "loss", True))
# The bootstrap recomputes each metric from the probabilities; its loss is the NLL of the true class, which is
# eval.py's loss for the softmax and sigmoid cross-entropies (not for a smoothed loss).
BOOTSTRAP_METRICS = (("accuracy", "accuracy", False), ("macro_f1", "macro F1", False), ("nll", "NLL", True))


def compare(sweep_dir, baseline=None, resamples=10000, confidence=stats.CONFIDENCE, seed=0):
  """The report as a JSON-ready dict; baseline: a config name (default: the sweep's first config)."""
  plan = sweeps.read_plan(sweep_dir)
  if plan is None:
    raise ValueError(f"{sweep_dir} has no {sweeps.PLAN_FILE}: it is not a sweep.py folder. Pass the "
                     "--sweep_dir sweep.py ran with.")
  split, names = plan["split"], [c["name"] for c in plan["configs"]]
  baseline = baseline or names[0]
  if baseline not in names:
    raise ValueError(f"--baseline={baseline} is not a config of {sweep_dir}; its configs: {', '.join(names)}.")
  finished = sweeps.finished_runs(sweep_dir)
  runs = {name: {seed: run_dir for config, seed, run_dir in finished if config == name} for name in names}
  missing = [f"{name}/seed_{seed}" for name in names for seed in plan["seeds"] if seed not in runs[name]]
  if not runs[baseline]:
    raise ValueError(f"The baseline {baseline} has no finished run in {sweep_dir}: run sweep.py first.")
  results = {name: {seed: _read_json(os.path.join(d, f"eval_{split}.json")) for seed, d in by_seed.items()}
             for name, by_seed in runs.items()}
  report = {"sweep_dir": sweep_dir, "split": split, "baseline": baseline, "confidence": confidence,
            "missing_runs": missing, "configs": {}, "paired_over_seeds": {}, "bootstrap": {}}
  num_examples = {r["num_examples"] for by_seed in results.values() for r in by_seed.values()}
  report["num_examples"] = num_examples.pop() if len(num_examples) == 1 else sorted(num_examples)
  for name in names:
    seeds = sorted(results[name])
    if not seeds:
      continue
    report["configs"][name] = {"seeds": seeds, "metrics": {
        key: stats.seed_summary([results[name][s][key] for s in seeds], confidence) for key, _, _ in METRICS}}
  for name in names:
    common = sorted(set(results[name]) & set(results[baseline]))
    if name == baseline or not common:
      continue
    paired = {}
    for key, _, lower_is_better in METRICS:
      test = stats.paired_seed_test([results[baseline][s][key] for s in common],
                                    [results[name][s][key] for s in common], confidence)
      paired[key] = dict(test, seeds=common, verdict=stats.verdict(test["interval"], lower_is_better))
    report["paired_over_seeds"][name] = paired
    files = [os.path.join(runs[c][s], f"predictions_{split}.jsonl") for c in (baseline, name) for s in common]
    labels, probs = predictions.read_aligned(files)  # [N], [2S, N, C]
    boot = stats.paired_bootstrap(labels, probs[:len(common)], probs[len(common):], resamples, confidence, seed)
    report["bootstrap"][name] = {key: dict(boot[key], seeds=common,
                                           verdict=stats.verdict(boot[key]["interval"], lower_is_better))
                                 for key, _, lower_is_better in BOOTSTRAP_METRICS}
  return report


def to_markdown(report):
  """The report as Markdown tables (what compare.py prints)."""
  pct = f"{report['confidence']:.0%}"
  n = report["num_examples"]
  n_text = f"{n:,} examples" if isinstance(n, int) else f"{n} examples (runs differ!)"
  base = report["baseline"]
  lines = [f"## Sweep {report['sweep_dir']}: {report['split']} split ({n_text})", "",
           f"Mean ± std over seeds, and the {pct} t-interval of the mean.", "",
           "| config | seeds | " + " | ".join(label for _, label, _ in METRICS) + " |",
           "|---|---|" + "---|" * len(METRICS)]
  for name, c in report["configs"].items():
    cells = [_mean_std(c["metrics"][key]) for key, _, _ in METRICS]
    lines.append(f"| {name}{' (baseline)' if name == base else ''} | {len(c['seeds'])} | " + " | ".join(cells) + " |")
  all_seeds = sorted({s for c in report["configs"].values() for s in c["seeds"]})
  lines += ["", "Per seed:", "", "| config | metric | " + " | ".join(f"seed {s}" for s in all_seeds) + " |",
            "|---|---|" + "---|" * len(all_seeds)]
  for name, c in report["configs"].items():
    for key, label, _ in METRICS:
      by_seed = dict(zip(c["seeds"], c["metrics"][key]["values"]))
      lines.append(f"| {name} | {label} | " + " | ".join(_num(by_seed[s]) if s in by_seed else "–"
                                                        for s in all_seeds) + " |")
  if report["paired_over_seeds"]:
    lines += ["", f"### Against {base}, seed by seed", "",
              f"Difference = config − {base} on the same seed (same data order and head init). Paired t-test "
              "over the seeds both ran (scipy.stats.ttest_rel, two-sided); the interval is the "
              f"{pct} t-interval of the mean difference.", "",
              "| config | metric | seeds | mean difference ± std | interval | p | per seed | verdict |",
              "|---|---|---|---|---|---|---|---|"]
    for name, paired in report["paired_over_seeds"].items():
      for key, label, _ in METRICS:
        t = paired[key]
        std = "–" if t["std"] is None else _num(t["std"])
        lines.append(f"| {name} | {label} | {t['n']} | {_signed(t['mean'])} ± {std} | "
                     f"{_interval(t['interval'])} | {_p(t['p'])} | "
                     f"{', '.join(_signed(v) for v in t['values'])} | {t['verdict']} |")
  if report["bootstrap"]:
    first = next(iter(report["bootstrap"].values()))["accuracy"]
    lines += ["", f"### Against {base}, example by example", "",
              f"Paired bootstrap over the {first['n_examples']:,} {report['split']} examples "
              f"({first['resamples']:,} resamples): each resample scores both configs on the same examples "
              "for every seed, and each metric is averaged over the seeds both ran. NLL: the mean negative "
              "log-probability of the true class.", "",
              "| config | metric | seeds | difference | interval | p | verdict |", "|---|---|---|---|---|---|---|"]
    for name, boot in report["bootstrap"].items():
      for key, label, _ in BOOTSTRAP_METRICS:
        b = boot[key]
        lines.append(f"| {name} | {label} | {b['n_seeds']} | {_signed(b['difference'])} | "
                     f"{_interval(b['interval'])} | {_p(b['p'])} | {b['verdict']} |")
  if report["paired_over_seeds"]:
    comparisons = len(report["paired_over_seeds"]) * len(METRICS)
    lines += ["", f"A verdict other than \"{stats.NO_DIFFERENCE}\" means the {pct} interval excludes 0. The "
              f"p-values are not adjusted for the {comparisons} comparisons in each table: decide which metric "
              "matters before looking, or divide 0.05 by the number of comparisons (Bonferroni)."]
  if report["missing_runs"]:
    lines += ["", f"Not finished (left out): {', '.join(report['missing_runs'])}."]
  return "\n".join(lines) + "\n"


def plot(report, out_path):
  """One panel per metric: each seed's value (dots), the mean (bar) and its interval per config."""
  import matplotlib  # pylint: disable=g-import-not-at-top  (only compare.py draws)
  matplotlib.use("Agg")  # headless machines
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(report["configs"])
  fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.8), squeeze=False)
  for ax, (key, label, lower_is_better) in zip(axes[0], METRICS):
    for x, name in enumerate(names):
      summary = report["configs"][name]["metrics"][key]
      values = summary["values"]
      jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
      ax.scatter(x + jitter, values, s=18, color="tab:blue", alpha=0.7, zorder=2,
                 label="per seed" if x == 0 else None)
      low, high = summary["interval"] or (summary["mean"], summary["mean"])
      ax.errorbar([x + 0.28], [summary["mean"]], yerr=[[summary["mean"] - low], [high - summary["mean"]]],
                  fmt="o", color="black", capsize=4, zorder=3,
                  label=f"mean, {report['confidence']:.0%} interval" if x == 0 else None)
    base_mean = report["configs"][report["baseline"]]["metrics"][key]["mean"]
    ax.axhline(base_mean, color="gray", linestyle="--", linewidth=0.8, zorder=1)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n(baseline)" if n == report["baseline"] else n for n in names])
    ax.set_title(f"{report['split']} {label} ({'lower' if lower_is_better else 'higher'} is better)")
    ax.grid(axis="y", alpha=0.3)
  axes[0][0].legend(fontsize=8, loc="best")
  fig.tight_layout()
  folder = os.path.dirname(out_path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  try:
    fig.savefig(out_path, dpi=120, format="png")
  finally:
    plt.close(fig)
  return out_path


def _mean_std(summary):
  if summary["std"] is None:
    return f"{_num(summary['mean'])} (1 seed)"
  return f"{_num(summary['mean'])} ± {_num(summary['std'])} {_interval(summary['interval'])}"


def _interval(interval):
  return "–" if interval is None else f"[{_num(interval[0])}, {_num(interval[1])}]"


def _num(x, sign=""):
  """4 decimals, as eval.py logs; values below 0.001 (a tiny loss or difference) in 3 significant digits."""
  return f"{x:{sign}.4f}" if x == 0 or abs(x) >= 0.001 else f"{x:{sign}.2e}"


def _signed(x):
  return _num(x, "+")


def _p(p):
  return "–" if p is None else ("<0.0001" if p < 1e-4 else f"{p:.4f}")


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)
