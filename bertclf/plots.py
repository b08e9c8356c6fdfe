"""PNG figures of a run: training curves from its TensorBoard events, a confusion matrix and a ROC curve.

Each `*_figure` function returns a matplotlib Figure (so tests and notebooks can inspect the plotted data);
each `plot_*` function draws the same figure, saves it as a PNG (creating folders) and closes it.
"""
import os

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import matplotlib

# Training machines are headless; Agg renders PNGs without a display.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib import ticker  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics  # noqa: E402

from bertclf import run_config  # noqa: E402
from bertclf import summaries  # noqa: E402

DPI = 120
TRAIN_COLOR, VALIDATION_COLOR = "tab:red", "tab:blue"  # the tutorial's red/blue
PANELS = (("loss", "Training and validation loss"), ("accuracy", "Training and validation accuracy"))


def save(fig, out_path):
  """Writes `fig` as a PNG at `out_path` (creating folders), closes it and returns the path."""
  folder = os.path.dirname(out_path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  try:
    fig.savefig(out_path, dpi=DPI, format="png")
  finally:
    plt.close(fig)  # pyplot keeps every open figure alive otherwise
  return out_path


def read_curves(model_dir):
  """{"train": {tag: [(step, value), ...]}, "validation": {...}} from a run's event files.

  Raises:
    ValueError: neither `train/` nor `validation/` holds a loss or accuracy scalar.
  """
  curves = {split: summaries.read_scalars(os.path.join(model_dir, split)) for split in ("train", "validation")}
  if not any(curves[split].get(tag) for split in curves for tag, _ in PANELS):
    where = "does not exist" if not os.path.isdir(model_dir) else "has no loss/accuracy events in train/ or validation/"
    raise ValueError(f"{model_dir} {where}. Pass the --model_dir of a training run (the folder with "
                     "train/ and validation/ TensorBoard event files).")
  return curves


def training_curves_figure(scalars, steps_per_epoch=None, title=None):
  """The two-panel figure of the "Classify text with BERT" tutorial: loss on top, accuracy below.

  Args:
    scalars: {"train": {tag: [(step, value), ...]}, "validation": {...}}, as `read_curves` returns.
    steps_per_epoch: if given, a top axis shows epochs.
    title: optional figure title (e.g. the run and its encoder).

  Returns:
    The Figure; each panel's lines are training then validation (whichever were logged).
  """
  fig, axes = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
  for ax, (tag, panel_title) in zip(axes, PANELS):
    drawn = False
    for split, label, color, style in (("train", "training", TRAIN_COLOR, {"linewidth": 1.5}),
                                       ("validation", "validation", VALIDATION_COLOR,
                                        # Validation runs once per epoch or so: markers keep single points visible.
                                        {"linewidth": 2, "marker": "o", "markersize": 5})):
      points = scalars.get(split, {}).get(tag)
      if points:
        steps, values = zip(*points)
        ax.plot(steps, values, color=color, label=label, **style)
        drawn = True
    if drawn:
      ax.legend(loc="best", fontsize=11, framealpha=0.9)
    else:
      ax.text(0.5, 0.5, f"no {tag} logged", transform=ax.transAxes, ha="center", va="center",
              fontsize=12, color="gray")
    ax.set_title(panel_title, fontsize=14)
    ax.set_ylabel(tag, fontsize=12)
    ax.tick_params(labelsize=10)
    ax.grid(True, alpha=0.3)
  axes[-1].set_xlabel("training step", fontsize=12)
  if steps_per_epoch:
    # Epochs on the top panel's upper edge; the shared bottom axis keeps steps (what TensorBoard shows).
    spe = float(steps_per_epoch)
    top = axes[0].secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
    top.set_xlabel("epoch", fontsize=12)
    top.tick_params(labelsize=10)
    last_step = max((p[-1][0] for split in scalars.values() for p in split.values() if p), default=0)
    if last_step / spe >= 2:
      top.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  if title:
    fig.suptitle(title, fontsize=15)
  fig.tight_layout()
  return fig


def plot_training_curves(model_dir, out_path, steps_per_epoch=None):
  """Saves the training/validation loss and accuracy curves of the run in `model_dir` as a PNG.

  `steps_per_epoch` defaults to the one in `<model_dir>/config.json`, if that exists. Returns `out_path`.
  """
  curves = read_curves(model_dir)
  config = run_config.read(model_dir) or {}
  if steps_per_epoch is None:
    steps_per_epoch = config.get("steps_per_epoch")
  title = os.path.basename(os.path.normpath(model_dir))
  if config.get("encoder"):
    title += f" ({config['encoder']})"
  return save(training_curves_figure(curves, steps_per_epoch, title=title), out_path)


def _tick_label(name, width=24):
  """Shortens names longer than `width` (they would squeeze the matrix), keeping both ends: names of one task
  often share a prefix ("label_1", "label_2") or a suffix, so either end alone may not tell them apart."""
  name = str(name)
  if len(name) <= width:
    return name
  head = (width - 1) // 2 + 2
  return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def _count_text(count):
  return f"{int(count):d}" if float(count).is_integer() else f"{count:.4g}"


def confusion_matrix_figure(matrix, class_names, title="Confusion matrix"):
  """Counts coloured on a heat map, each cell annotated with its count and its share of the true class (row).

  Args:
    matrix: [C, C] counts, rows = true label, columns = predicted label.
    class_names: C names, in label order.
    title: axes title.
  """
  matrix = np.asarray(matrix)
  n = len(class_names)
  if matrix.shape != (n, n):
    raise ValueError(f"Confusion matrix has shape {matrix.shape}; expected ({n}, {n}) for {n} class names.")
  row_sums = matrix.sum(axis=1, keepdims=True)
  row_share = np.divide(matrix, row_sums, out=np.zeros(matrix.shape, float), where=row_sums > 0)

  side = max(5.0, 0.85 * n + 2.5)
  fig, ax = plt.subplots(figsize=(side + 1.2, side))  # +1.2 for the colorbar
  image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
  colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  colorbar.set_label("count", fontsize=12)

  cell_font = 13 if n <= 4 else 11 if n <= 7 else 9
  for i in range(n):
    for j in range(n):
      count = matrix[i, j]
      text = _count_text(count) + (f"\n({100 * row_share[i, j]:.1f}%)" if row_sums[i, 0] else "")
      # Dark cells need white text to stay readable.
      color = "white" if image.norm(count) > 0.5 else "black"
      ax.text(j, i, text, ha="center", va="center", color=color, fontsize=cell_font)

  labels = [_tick_label(c) for c in class_names]
  ax.set_xticks(range(n))
  ax.set_yticks(range(n))
  # Long names or many classes would overlap side by side; slant them instead.
  rotate = n > 6 or max(len(label) for label in labels) > max(4, 40 // n)
  ax.set_xticklabels(labels, rotation=45 if rotate else 0, ha="right" if rotate else "center",
                     rotation_mode="anchor", fontsize=11)
  ax.set_yticklabels(labels, fontsize=11)
  ax.set_xlabel("predicted label", fontsize=12)
  ax.set_ylabel("true label", fontsize=12)
  ax.set_title(title, fontsize=14)
  fig.tight_layout()
  return fig


def plot_confusion_matrix(matrix, class_names, out_path, title="Confusion matrix"):
  """Saves `confusion_matrix_figure(matrix, class_names, title)` as a PNG; returns `out_path`."""
  return save(confusion_matrix_figure(matrix, class_names, title=title), out_path)


def roc_figure(labels, positive_probs, title="ROC curve"):
  """ROC curve of a binary task, with its AUC in the legend.

  Args:
    labels: [N] 0/1 (or bool) true labels; 1 is the positive class.
    positive_probs: [N] predicted probabilities (or any scores) of the positive class, e.g. `probs[:, 1]`.
    title: axes title.
  """
  labels, positive_probs = np.asarray(labels), np.asarray(positive_probs, dtype=float)
  if positive_probs.ndim != 1 or labels.shape != positive_probs.shape:
    raise ValueError(f"ROC needs 1-D labels and positive-class probabilities of the same length; got shapes "
                     f"{labels.shape} and {positive_probs.shape} (for [N, 2] probabilities pass probs[:, 1]).")
  present = set(np.unique(labels).tolist())
  if not present <= {0, 1}:
    raise ValueError(f"ROC is for binary tasks with labels 0/1; got labels {sorted(present)}.")
  if len(present) < 2:
    raise ValueError(f"ROC needs both classes among the labels; only {sorted(present)} present.")
  fpr, tpr, _ = metrics.roc_curve(labels, positive_probs)
  auc = metrics.roc_auc_score(labels, positive_probs)

  fig, ax = plt.subplots(figsize=(6.5, 6.5))
  # clip_on=False: the curve runs along the axes' edges and would be half clipped there.
  ax.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"ROC (AUC = {auc:.3f})", clip_on=False, zorder=3)
  ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label="chance (AUC = 0.5)")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.set_aspect("equal")
  ax.set_xlabel("false positive rate", fontsize=12)
  ax.set_ylabel("true positive rate", fontsize=12)
  ax.set_title(title, fontsize=14)
  ax.tick_params(labelsize=10)
  ax.grid(True, alpha=0.3)
  # A useful classifier's curve hugs the top-left corner, leaving the bottom right free.
  ax.legend(loc="lower right", fontsize=11, framealpha=0.9)
  fig.tight_layout()
  return fig


def plot_roc(labels, positive_probs, out_path, title="ROC curve"):
  """Saves `roc_figure(labels, positive_probs, title)` as a PNG; returns `out_path`."""
  return save(roc_figure(labels, positive_probs, title=title), out_path)
