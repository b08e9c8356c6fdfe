"""Tests for bertclf.plots: PNGs from real event files, the data each figure plots, and the errors."""
import json
import os

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from matplotlib import image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn import metrics

from bertclf import plots
from bertclf import summaries

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRAIN = {10: (0.69, 0.50), 20: (0.55, 0.70), 30: (0.40, 0.80), 40: (0.30, 0.88)}  # step: (loss, accuracy)
VALIDATION = {20: (0.50, 0.75), 40: (0.35, 0.85)}


def assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  pixels = mpimg.imread(path)
  assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def write_run(model_dir, config=None):
  for name, points in (("train", TRAIN), ("validation", VALIDATION)):
    w = summaries.writer(model_dir, name)
    for step, (loss, accuracy) in points.items():
      summaries.write_scalars(w, step, {"loss": loss, "accuracy": accuracy})
    w.close()
  if config is not None:
    with open(os.path.join(model_dir, "config.json"), "w") as f:
      json.dump(config, f)
  return str(model_dir)


@pytest.fixture(autouse=True)
def close_figures():
  yield
  plt.close("all")


def test_training_curves_png_from_event_files(tmp_path):
  model_dir = write_run(tmp_path / "run", config={"steps_per_epoch": 20, "encoder": "tiny"})
  out = str(tmp_path / "out" / "nested" / "curves.png")  # parent folders do not exist yet
  assert plots.plot_training_curves(model_dir, out) == out
  assert_png(out)
  assert not plt.get_fignums()  # saved figures are closed


def test_training_curves_figure_plots_the_logged_values(tmp_path):
  curves = plots.read_curves(write_run(tmp_path / "run"))
  fig = plots.training_curves_figure(curves, steps_per_epoch=20)
  loss_ax, accuracy_ax = fig.axes[:2]
  for ax, column, tag in ((loss_ax, 0, "loss"), (accuracy_ax, 1, "accuracy")):
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]
    assert ax.get_ylabel() == tag
    for line, points in zip(ax.lines, (TRAIN, VALIDATION)):
      np.testing.assert_array_equal(line.get_xdata(), list(points))
      np.testing.assert_allclose(line.get_ydata(), [v[column] for v in points.values()], rtol=1e-6)
  assert accuracy_ax.get_xlabel() == "training step"
  epoch_axes = [c for c in loss_ax.child_axes if c.get_xlabel() == "epoch"]
  assert len(epoch_axes) == 1
  assert len(plots.training_curves_figure(curves).axes[0].child_axes) == 0  # no steps_per_epoch, no epoch axis


def test_training_curves_steps_per_epoch_from_config(tmp_path, monkeypatch):
  model_dir = write_run(tmp_path / "run", config={"steps_per_epoch": 20})
  seen = {}
  original = plots.training_curves_figure

  def spy(scalars, steps_per_epoch=None, title=None):
    seen["steps_per_epoch"] = steps_per_epoch
    return original(scalars, steps_per_epoch, title=title)
  monkeypatch.setattr(plots, "training_curves_figure", spy)
  plots.plot_training_curves(model_dir, str(tmp_path / "a.png"))
  assert seen["steps_per_epoch"] == 20
  plots.plot_training_curves(model_dir, str(tmp_path / "b.png"), steps_per_epoch=7)  # an explicit value wins
  assert seen["steps_per_epoch"] == 7


@pytest.mark.parametrize("make", ["empty", "missing"])
def test_training_curves_without_events_names_the_folder(tmp_path, make):
  model_dir = tmp_path / "not_a_run"
  if make == "empty":
    model_dir.mkdir()
  with pytest.raises(ValueError, match=r"not_a_run.*--model_dir of a training run"):
    plots.plot_training_curves(str(model_dir), str(tmp_path / "curves.png"))
  assert not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize("class_names", [["neg", "pos"],
                                         [f"a rather long class name {i}" for i in range(10)]])
def test_confusion_matrix_png_and_annotations(tmp_path, class_names):
  n = len(class_names)
  matrix = np.arange(n * n).reshape(n, n) + 5 * np.eye(n, dtype=int)
  out = plots.plot_confusion_matrix(matrix, class_names, str(tmp_path / "cm" / "cm.png"))
  assert_png(out)

  fig = plots.confusion_matrix_figure(matrix, class_names, title="dev")
  ax = fig.axes[0]
  assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("predicted label", "true label", "dev")
  assert len(fig.axes) == 2  # the matrix and its colorbar
  texts = [t.get_text() for t in ax.texts]
  assert len(texts) == n * n
  # Row 1, column 0: count and share of true class 1.
  share = 100 * matrix[1, 0] / matrix[1].sum()
  assert texts[n] == f"{matrix[1, 0]}\n({share:.1f}%)"
  ticks = [t.get_text() for t in ax.get_xticklabels()]
  assert len(set(ticks)) == n  # long names are shortened, but stay apart
  for tick, name in zip(ticks, class_names):
    head, _, tail = tick.partition("…")
    assert name.startswith(head) and name.endswith(tail) and len(tick) <= 24


def test_confusion_matrix_rejects_wrong_shape():
  with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
    plots.confusion_matrix_figure(np.ones((2, 2)), ["a", "b", "c"])


def test_roc_png_and_auc_in_legend(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 200)
  probs = np.clip(0.5 + 0.3 * (labels - 0.5) + 0.25 * rng.standard_normal(200), 0, 1)
  out = plots.plot_roc(labels, probs, str(tmp_path / "roc" / "roc.png"))
  assert_png(out)

  ax = plots.roc_figure(labels, probs).axes[0]
  legend = [t.get_text() for t in ax.get_legend().get_texts()]
  auc = float(legend[0].split("AUC = ")[1].rstrip(")"))
  assert auc == pytest.approx(metrics.roc_auc_score(labels, probs), abs=5e-4)
  fpr, tpr, _ = metrics.roc_curve(labels, probs)
  np.testing.assert_allclose(ax.lines[0].get_xdata(), fpr)
  np.testing.assert_allclose(ax.lines[0].get_ydata(), tpr)
  assert ax.lines[1].get_linestyle() == "--"  # the chance diagonal
  assert (ax.get_xlim(), ax.get_ylim()) == ((0, 1), (0, 1))
  assert (ax.get_xlabel(), ax.get_ylabel()) == ("false positive rate", "true positive rate")


@pytest.mark.parametrize("labels,probs,match", [([0, 1, 2], [0.1, 0.5, 0.9], "binary"),
                                                ([1, 1, 1], [0.1, 0.5, 0.9], "both classes"),
                                                ([0, 1], [[0.9, 0.1], [0.2, 0.8]], r"probs\[:, 1\]")])
def test_roc_rejects_bad_input(labels, probs, match):
  with pytest.raises(ValueError, match=match):
    plots.roc_figure(labels, probs)
