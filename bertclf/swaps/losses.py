"""Losses: a swap point chosen by --loss.

Each entry knows how many logits it needs, its per-example loss (averaged over the GLOBAL batch by the step)
and how to turn logits into class probabilities [B, C] for metrics, eval and the export. Logits arrive float32.
An entry with settings (label smoothing) names the keyword arguments its per_example takes from the variant
options (flags.step_options); the train step binds them (`bind`, via StepContext), while evaluation scores the
plain per_example (for softmax_ce_smoothed: the unsmoothed cross-entropy, comparable across runs).
"""
import dataclasses
import functools
from typing import Callable

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf.swaps import registry

registry.variant_flag(
    "label_smoothing", 0.0, "--loss=softmax_ce_smoothed: train against (1-e)*one_hot + e/num_classes.",
    requires=("loss", "softmax_ce_smoothed"), check=lambda v: 0.0 <= v < 1.0,
    message="--label_smoothing must be in [0, 1).")


@dataclasses.dataclass(frozen=True)
class Loss:
  num_logits: Callable[[int], int]                        # num_classes → logits the head must produce
  per_example: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (labels [B] int32, logits [B, L] f32) → [B]
  probabilities: Callable[[tf.Tensor], tf.Tensor]           # logits [B, L] → [B, C]
  check: Callable[[int], str | None] = lambda num_classes: None  # an error message, or None when it fits
  log_probabilities: Callable[[tf.Tensor], tf.Tensor] | None = None  # logits [B, L] → [B, C], stable
  settings: Callable[[dict], dict] = lambda options: {}  # variant options → per_example keyword arguments


def bind(loss_def, options):
  """The entry with its settings from `options` bound into per_example (itself when it has none)."""
  kwargs = loss_def.settings(options or {})
  if not kwargs:
    return loss_def
  return dataclasses.replace(loss_def, per_example=functools.partial(loss_def.per_example, **kwargs))


def _softmax_ce(labels, logits):
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _softmax_ce_smoothed(labels, logits, label_smoothing=0.0):
  """Cross-entropy against (1 − ε)·one_hot + ε/C (Szegedy et al. 2016, "Rethinking the Inception
  Architecture", §7): (1 − ε)·(−log p_y) + ε·mean_c(−log p_c)."""
  log_p = tf.nn.log_softmax(logits)  # [B, C]
  nll = -tf.gather(log_p, labels, axis=1, batch_dims=1)  # [B]
  return (1.0 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_p, -1)


def _sigmoid_ce(labels, logits):
  # One logit: the log-odds of class 1, as the tutorial's BinaryCrossentropy(from_logits=True).
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits[:, 0])


def _sigmoid_probs(logits):
  p1 = tf.sigmoid(logits[:, 0])       # [B]
  return tf.stack([1.0 - p1, p1], -1)  # [B, 2]


def _sigmoid_log_probs(logits):
  return tf.stack([tf.math.log_sigmoid(-logits[:, 0]), tf.math.log_sigmoid(logits[:, 0])], -1)  # [B, 2]


LOSSES = {
    "softmax_ce": Loss(num_logits=lambda c: c, per_example=_softmax_ce, probabilities=tf.nn.softmax,
                       log_probabilities=tf.nn.log_softmax),
    "sigmoid_ce": Loss(num_logits=lambda c: 1, per_example=_sigmoid_ce, probabilities=_sigmoid_probs,
                       check=lambda c: None if c == 2 else
                       f"--loss=sigmoid_ce is for 2 classes; the data has {c}. Use --loss=softmax_ce.",
                       log_probabilities=_sigmoid_log_probs),
    # --label_smoothing=ε; without it (and in evaluation) the plain softmax cross-entropy.
    "softmax_ce_smoothed": Loss(num_logits=lambda c: c, per_example=_softmax_ce_smoothed,
                                probabilities=tf.nn.softmax, log_probabilities=tf.nn.log_softmax,
                                settings=lambda o: {"label_smoothing": o.get("label_smoothing", 0.0)}),
}
