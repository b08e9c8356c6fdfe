"""bertclf/stats.py against textbook values, numpy, scipy and sklearn on synthetic numbers with known answers."""
import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn import metrics as skm

from bertclf import stats

T_975_4DF = 2.776  # the t table: two-sided 95%, 4 degrees of freedom


def test_seed_summary_is_the_textbook_t_interval():
  s = stats.seed_summary([1.0, 2.0, 3.0, 4.0, 5.0])
  assert s["n"] == 5 and s["mean"] == 3.0
  assert s["std"] == pytest.approx(np.sqrt(2.5))  # sample std, ddof=1
  half = T_975_4DF * np.sqrt(2.5) / np.sqrt(5)  # 1.963
  assert s["interval"] == pytest.approx([3.0 - half, 3.0 + half], abs=1e-3)
  expected = scipy_stats.t.interval(0.95, 4, loc=3.0, scale=scipy_stats.sem([1, 2, 3, 4, 5]))
  assert s["interval"] == pytest.approx(list(expected), rel=1e-12)
  assert all(isinstance(x, float) for x in s["interval"])  # JSON-ready


def test_one_seed_has_no_interval():
  s = stats.seed_summary([0.8])
  assert s["std"] is None and s["interval"] is None
  t = stats.paired_seed_test([0.8], [0.9])
  assert t["p"] is None and t["interval"] is None
  assert stats.verdict(t["interval"]) == "too few seeds for an interval"


def test_paired_test_finds_a_small_steady_gain_hidden_in_a_large_seed_effect():
  # The seed moves both configs by up to 2 points; the variant is 1 point better on every seed (± 0.1).
  baseline = np.array([0.80, 0.82, 0.78, 0.81, 0.79])
  gain = np.array([0.010, 0.011, 0.009, 0.010, 0.010])
  t = stats.paired_seed_test(baseline, baseline + gain)
  assert t["mean"] == pytest.approx(gain.mean())
  assert t["values"] == pytest.approx(gain.tolist())
  assert t["p"] == pytest.approx(scipy_stats.ttest_rel(baseline + gain, baseline).pvalue, rel=1e-9)
  t_stat = gain.mean() / (gain.std(ddof=1) / np.sqrt(5))  # the t statistic by hand
  assert t["p"] == pytest.approx(2 * scipy_stats.t.sf(t_stat, 4), rel=1e-6)
  assert t["p"] < 1e-4 and t["interval"][0] > 0
  assert stats.verdict(t["interval"]) == "higher (better)"
  assert stats.verdict(t["interval"], lower_is_better=True) == "higher (worse)"
  # Unpaired, the seed effect swamps the gain: why the sweep pairs configs by seed.
  assert scipy_stats.ttest_ind(baseline + gain, baseline).pvalue > 0.2


def test_paired_test_with_no_difference():
  baseline = np.array([0.80, 0.82, 0.78, 0.81, 0.79])
  noise = np.array([0.01, -0.01, 0.005, -0.005, 0.0])  # mean exactly 0
  t = stats.paired_seed_test(baseline, baseline + noise)
  assert t["mean"] == pytest.approx(0.0, abs=1e-12)
  assert t["p"] == pytest.approx(1.0)
  assert t["interval"][0] < 0 < t["interval"][1]
  assert t["interval"][0] == pytest.approx(-t["interval"][1])
  assert stats.verdict(t["interval"]) == stats.NO_DIFFERENCE


def test_identical_runs_have_no_p_value_and_no_difference():
  t = stats.paired_seed_test([0.8, 0.7, 0.9], [0.8, 0.7, 0.9])
  assert t["p"] is None and t["interval"] == [0.0, 0.0]
  assert stats.verdict(t["interval"]) == stats.NO_DIFFERENCE
  with pytest.raises(ValueError, match="same seeds"):
    stats.paired_seed_test([0.8, 0.7], [0.8, 0.7, 0.9])


def _probs(labels, correct, num_classes, rng):
  """[N, C] probabilities whose argmax is the label where correct [N] is True, another class elsewhere."""
  n = len(labels)
  predicted = np.where(correct, labels, (labels + rng.integers(1, num_classes, n)) % num_classes)
  probs = rng.uniform(0.0, 0.5, (n, num_classes))
  probs[np.arange(n), predicted] = 1.0
  return probs / probs.sum(-1, keepdims=True)


def _correct(n, k, rng):
  """[N] bool with exactly k True at random positions."""
  out = np.zeros(n, bool)
  out[rng.permutation(n)[:k]] = True
  return out


def test_macro_f1_matches_sklearn_with_absent_classes():
  labels = np.array([0, 0, 1, 1, 1, 2, 2])  # class 3 never occurs, class 2 is never predicted
  predicted = np.array([0, 1, 1, 1, 0, 0, 1])
  expected = skm.f1_score(labels, predicted, labels=range(4), average="macro", zero_division=0)
  assert stats.macro_f1(labels, predicted, 4) == pytest.approx(expected)


def test_bootstrap_point_estimates_are_the_seed_averaged_metrics():
  rng = np.random.default_rng(0)
  n, c = 300, 3
  labels = rng.integers(0, c, n)
  pa = np.stack([_probs(labels, rng.random(n) < 0.7, c, rng) for _ in range(3)])  # [S=3, N, C]
  pb = np.stack([_probs(labels, rng.random(n) < 0.8, c, rng) for _ in range(3)])
  out = stats.paired_bootstrap(labels, pa, pb, num_resamples=200)

  def mean_over_seeds(fn, probs):
    return np.mean([fn(p) for p in probs])
  accuracy = lambda p: np.mean(p.argmax(-1) == labels)  # noqa: E731
  f1 = lambda p: skm.f1_score(labels, p.argmax(-1), average="macro")  # noqa: E731
  nll = lambda p: skm.log_loss(labels, p, labels=range(c))  # noqa: E731
  for key, fn in (("accuracy", accuracy), ("macro_f1", f1), ("nll", nll)):
    assert out[key]["difference"] == pytest.approx(mean_over_seeds(fn, pb) - mean_over_seeds(fn, pa)), key
    assert out[key]["n_seeds"] == 3 and out[key]["n_examples"] == n


def test_bootstrap_with_no_difference():
  # Same accuracy (700 of 1000 right), errors on independent examples: the difference is exactly 0.
  rng = np.random.default_rng(1)
  n = 1000
  labels = rng.integers(0, 2, n)
  correct_a, correct_b = _correct(n, 700, rng), _correct(n, 700, rng)
  out = stats.paired_bootstrap(labels, _probs(labels, correct_a, 2, rng)[None],
                               _probs(labels, correct_b, 2, rng)[None], num_resamples=4000)
  acc = out["accuracy"]
  assert acc["difference"] == 0.0
  assert acc["interval"][0] < 0 < acc["interval"][1] and acc["p"] > 0.5
  assert stats.verdict(acc["interval"]) == stats.NO_DIFFERENCE
  # The half-width is the normal approximation's 1.96 x sd(per-example difference) / sqrt(N), within 10%.
  d = correct_b.astype(float) - correct_a
  half = 1.96 * d.std() / np.sqrt(n)
  assert (acc["interval"][1] - acc["interval"][0]) / 2 == pytest.approx(half, rel=0.1)


def test_bootstrap_with_a_clear_difference():
  rng = np.random.default_rng(2)
  n = 1000
  labels = rng.integers(0, 3, n)
  pa = np.stack([_probs(labels, _correct(n, 700, rng), 3, rng) for _ in range(2)])
  pb = np.stack([_probs(labels, _correct(n, 900, rng), 3, rng) for _ in range(2)])
  out = stats.paired_bootstrap(labels, pa, pb, num_resamples=2000)
  assert out["accuracy"]["difference"] == pytest.approx(0.2)
  assert out["accuracy"]["interval"][0] > 0.15 and out["accuracy"]["p"] == pytest.approx(2 / 2001)
  assert stats.verdict(out["accuracy"]["interval"]) == "higher (better)"
  assert stats.verdict(out["macro_f1"]["interval"]) == "higher (better)"


def test_bootstrap_interval_matches_scipy_bootstrap():
  rng = np.random.default_rng(3)
  n = 500
  labels = rng.integers(0, 2, n)
  correct_a, correct_b = rng.random(n) < 0.75, rng.random(n) < 0.8
  out = stats.paired_bootstrap(labels, _probs(labels, correct_a, 2, rng)[None],
                               _probs(labels, correct_b, 2, rng)[None], num_resamples=10000)
  reference = scipy_stats.bootstrap(
      (correct_a.astype(float), correct_b.astype(float)), lambda a, b, axis: np.mean(b - a, axis=axis),
      paired=True, vectorized=True, n_resamples=10000, method="percentile", rng=np.random.default_rng(4))
  ci = reference.confidence_interval
  assert out["accuracy"]["interval"] == pytest.approx([ci.low, ci.high], abs=0.004)  # Monte Carlo error


def test_bootstrap_of_repeated_seeds_is_the_one_seed_bootstrap():
  # Pooling averages over seeds; three copies of one seed's predictions must give that seed's answer.
  rng = np.random.default_rng(5)
  n = 200
  labels = rng.integers(0, 3, n)
  pa, pb = _probs(labels, rng.random(n) < 0.6, 3, rng), _probs(labels, rng.random(n) < 0.7, 3, rng)
  one = stats.paired_bootstrap(labels, pa[None], pb[None], num_resamples=500)
  three = stats.paired_bootstrap(labels, np.stack([pa] * 3), np.stack([pb] * 3), num_resamples=500)
  for key in one:
    assert three[key]["difference"] == pytest.approx(one[key]["difference"])
    assert three[key]["interval"] == pytest.approx(one[key]["interval"])


def test_bootstrap_rejects_unpaired_shapes():
  with pytest.raises(ValueError, match=r"\[S, N, C\]"):
    stats.paired_bootstrap(np.zeros(5, int), np.ones((2, 5, 2)), np.ones((2, 4, 2)))


def test_unpaired_test_matches_scipy_welch_and_its_interval():
  rng = np.random.default_rng(3)
  a, b = rng.normal(0.75, 0.005, 5), rng.normal(0.74, 0.01, 7)
  out = stats.unpaired_seed_test(a, b)
  welch = scipy_stats.ttest_ind(b, a, equal_var=False)
  assert out["p"] == pytest.approx(welch.pvalue)
  ci = welch.confidence_interval(0.95)
  assert out["interval"] == pytest.approx([ci.low, ci.high])
  assert out["mean"] == pytest.approx(b.mean() - a.mean())


def test_unpaired_test_with_no_difference_and_with_a_clear_one():
  same = stats.unpaired_seed_test([0.70, 0.72, 0.71, 0.73], [0.71, 0.70, 0.73, 0.72])
  assert same["interval"][0] < 0 < same["interval"][1] and same["p"] > 0.5
  clear = stats.unpaired_seed_test([0.70, 0.72, 0.71, 0.73], [0.80, 0.81, 0.79, 0.82])
  assert clear["interval"][0] > 0.05 and clear["p"] < 1e-4
  assert stats.unpaired_seed_test([0.7], [0.8])["p"] is None
