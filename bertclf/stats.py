"""Statistics of a seed sweep: per-configuration intervals, paired tests over seeds, an example-level bootstrap.

Two sources of noise decide whether a variant "is better", and each test here covers one of them:

* seeds: the seed sets the head's init, dropout and the data order, and moves a fine-tuned BERT's test score
  by about a point. `seed_summary` gives mean ± std and a t-interval of the mean over seeds;
  `paired_seed_test` compares two configurations trained with the same seeds (same data order, same head
  init), seed by seed, with a paired t-test. It treats the test set as fixed.
* examples: the test set is a sample too. `paired_bootstrap` resamples the test examples (the same resample
  for both configurations and every seed), averages each metric over the seeds, and gives the interval of
  the difference. It treats these seeds as fixed.

A difference is reported as detectable only when its interval excludes 0 (`verdict`). Shapes: S = seeds,
N = examples, C = classes, R = bootstrap resamples.
"""
import numpy as np
from scipy import stats as scipy_stats

CONFIDENCE = 0.95
NO_DIFFERENCE = "no detectable difference"


def seed_summary(values, confidence=CONFIDENCE):
  """Mean, sample std (ddof=1) and the t-interval of the mean of per-seed values [S].

  With one value the std and the interval are None: one seed says nothing about the spread.
  """
  x = np.asarray(values, np.float64)
  n = len(x)
  if n == 0:
    raise ValueError("seed_summary needs at least one value.")
  out = {"n": n, "mean": float(x.mean()), "std": None, "interval": None, "values": x.tolist()}
  if n >= 2:
    std = float(x.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n))
    out.update(std=std, interval=[out["mean"] - half, out["mean"] + half])
  return out


def paired_seed_test(baseline, variant, confidence=CONFIDENCE):
  """Paired t-test of variant − baseline over seeds (two-sided, scipy.stats.ttest_rel).

  baseline, variant: [S] values of one metric, position i of both from the same seed. Why this test: with the
  seed shared, the seed's own effect (a lucky data order or init) cancels in the difference; the t
  distribution is exact for normal differences and is the right reference with 3-10 seeds, where a normal
  approximation is too narrow. Wilcoxon's signed-rank test cannot reach p < 0.0625 with five seeds.
  Returns seed_summary of the differences plus "p" (None when undefined: fewer than 2 seeds, or differences
  that do not vary at all).
  """
  a, b = np.asarray(baseline, np.float64), np.asarray(variant, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"paired_seed_test needs two [S] arrays of the same seeds, got {a.shape} and {b.shape}.")
  out = seed_summary(b - a, confidence)
  p = None
  if len(a) >= 2 and out["std"] > 0:
    p = float(scipy_stats.ttest_rel(b, a).pvalue)
  elif out["std"] == 0:  # identical differences: no spread to test against; the interval is the point
    out["interval"] = [out["mean"], out["mean"]]
  out.update(p=p, test="paired t-test over seeds (scipy.stats.ttest_rel, two-sided)")
  return out


def unpaired_seed_test(baseline, variant, confidence=CONFIDENCE):
  """Welch's t-test of mean(variant) − mean(baseline) for runs that the seed does NOT pair (scipy.stats.ttest_ind,
  equal_var=False, two-sided).

  Use it when the two configurations draw their data order, init or dropout from different code (another
  training loop, another framework), so seed s of one has nothing in common with seed s of the other and a
  paired test would claim a precision the pairing does not give. Welch's version does not assume equal spreads.
  Returns {"n": [n_baseline, n_variant], "mean": difference, "interval": Welch-Satterthwaite t-interval,
  "p", "test"}; interval and p are None with fewer than 2 values on a side or no spread at all.
  """
  a, b = np.asarray(baseline, np.float64), np.asarray(variant, np.float64)
  out = {"n": [len(a), len(b)], "mean": float(b.mean() - a.mean()), "interval": None, "p": None,
         "test": "Welch's t-test (scipy.stats.ttest_ind, equal_var=False, two-sided)"}
  if len(a) >= 2 and len(b) >= 2:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb > 0:
      dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
      half = float(scipy_stats.t.ppf(0.5 + confidence / 2, dof) * np.sqrt(va + vb))
      out.update(interval=[out["mean"] - half, out["mean"] + half],
                 p=float(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue), standard_error=float(np.sqrt(va + vb)))
  return out


def macro_f1(labels, predicted, num_classes):
  """Macro F1 over classes 0..C-1 (sklearn's with zero_division=0): labels, predicted [N] → float."""
  tp, fp, fn = _confusion_counts(np.ones([1, len(labels)]), labels, predicted[None], num_classes)
  return float(_f1_from_counts(tp, fp, fn)[0, 0])


def paired_bootstrap(labels, probs_baseline, probs_variant, num_resamples=10000, confidence=CONFIDENCE,
                     seed=0, chunk=500):
  """Example-level paired bootstrap of variant − baseline, pooled over seeds.

  labels: [N] int class ids; probs_baseline, probs_variant: [S, N, C] probabilities of the same N examples,
  seed s of both trained with the same seed. Each resample draws N examples with replacement (weights
  [R, N]); the same draw scores both configurations on every seed; each metric is averaged over the S seeds,
  and the difference of those averages is one bootstrap sample. Returns {metric: {"difference", "interval"
  (percentile), "p" (two-sided: twice the smaller tail share at 0), "n_examples", "n_seeds", "resamples"}} for
  accuracy, macro_f1 and nll (the mean negative log-probability of the true class).
  """
  labels = np.asarray(labels, np.int64)
  pa, pb = np.asarray(probs_baseline, np.float64), np.asarray(probs_variant, np.float64)
  if pa.ndim != 3 or pa.shape != pb.shape or pa.shape[1] != len(labels):
    raise ValueError(f"paired_bootstrap needs [S, N, C] probabilities of the same examples for both "
                     f"configurations and [N] labels; got {pa.shape}, {pb.shape} and {labels.shape}.")
  num_seeds, n, num_classes = pa.shape
  rng = np.random.default_rng(seed)
  point = {k: vb - va for (k, va), vb in zip(_metrics(np.ones([1, n]), labels, pa).items(),
                                              _metrics(np.ones([1, n]), labels, pb).values())}
  diffs = {k: [] for k in point}
  for start in range(0, num_resamples, chunk):
    size = min(chunk, num_resamples - start)
    # N draws with replacement per resample, as counts per example: [r, N].
    draws = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    weights = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)
    for k, va, vb in zip(diffs, _metrics(weights, labels, pa).values(), _metrics(weights, labels, pb).values()):
      diffs[k].append(vb - va)
  alpha = 1.0 - confidence
  out = {}
  for k, chunks in diffs.items():
    d = np.concatenate(chunks)[:, 0]  # [R]
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    out[k] = {"difference": float(point[k][0, 0]),
              "interval": [float(np.quantile(d, alpha / 2)), float(np.quantile(d, 1 - alpha / 2))],
              "p": float(min(1.0, 2 * (tail + 1) / (num_resamples + 1))),
              "n_examples": n, "n_seeds": num_seeds, "resamples": num_resamples,
              "test": "example-level paired bootstrap, pooled over seeds (percentile interval)"}
  return out


def verdict(interval, lower_is_better=False):
  """Honest wording of a difference's interval: 'no detectable difference' when it covers 0."""
  if interval is None:
    return "too few seeds for an interval"
  low, high = interval
  if low <= 0 <= high:
    return NO_DIFFERENCE
  higher = low > 0
  better = higher != lower_is_better
  return f"{'higher' if higher else 'lower'} ({'better' if better else 'worse'})"


def _metrics(weights, labels, probs):
  """Seed-averaged metrics for each row of example weights [R, N]: {name: [R, 1]}; probs [S, N, C]."""
  total = weights.sum(axis=1, keepdims=True)  # [R, 1], = N
  predicted = probs.argmax(-1)  # [S, N]
  correct = (predicted == labels).astype(np.float64)  # [S, N]
  nll = -np.log(np.clip(np.take_along_axis(probs, labels[None, :, None], -1)[..., 0], 1e-12, 1.0))  # [S, N]
  tp, fp, fn = _confusion_counts(weights, labels, predicted, probs.shape[-1])
  return {"accuracy": (weights @ correct.T / total).mean(1, keepdims=True),
          "macro_f1": _f1_from_counts(tp, fp, fn).mean(1, keepdims=True),
          "nll": (weights @ nll.T / total).mean(1, keepdims=True)}


def _confusion_counts(weights, labels, predicted, num_classes):
  """Weighted true positives, false positives, false negatives per seed and class: 3 x [R, S, C]."""
  classes = np.arange(num_classes)
  is_label = labels[None, :, None] == classes  # [1, N, C]
  is_pred = predicted[..., None] == classes  # [S, N, C]
  num_seeds, n = predicted.shape

  def count(mask):  # [S, N, C] → [R, S, C]
    flat = np.broadcast_to(mask, (num_seeds, n, num_classes)).transpose(1, 0, 2).reshape(n, -1)  # [N, S*C]
    return (weights @ flat).reshape(len(weights), num_seeds, num_classes)
  return count(is_pred & is_label), count(is_pred & ~is_label), count(~is_pred & is_label)


def _f1_from_counts(tp, fp, fn):
  """Macro F1 [R, S] from counts [R, S, C]: F1_c = 2TP / (2TP + FP + FN), 0 for a class never seen."""
  denominator = 2 * tp + fp + fn
  f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
  return f1.mean(-1)
