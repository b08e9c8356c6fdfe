"""Losses: a swap point chosen by --loss.

Each entry knows how many logits it needs, its per-example loss (averaged over the GLOBAL batch by the step)
and how to turn logits into class probabilities [B, C] for metrics, eval and the export. Logits arrive float32.
"""
import dataclasses
from typing import Callable

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Loss:
  num_logits: Callable[[int], int]                        # num_classes → logits the head must produce
  per_example: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]  # (labels [B] int32, logits [B, L] f32) → [B]
  probabilities: Callable[[tf.Tensor], tf.Tensor]           # logits [B, L] → [B, C]
  check: Callable[[int], str | None] = lambda num_classes: None  # an error message, or None when it fits


def _softmax_ce(labels, logits):
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _sigmoid_ce(labels, logits):
  # One logit: the log-odds of class 1, as the tutorial's BinaryCrossentropy(from_logits=True).
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits[:, 0])


def _sigmoid_probs(logits):
  p1 = tf.sigmoid(logits[:, 0])       # [B]
  return tf.stack([1.0 - p1, p1], -1)  # [B, 2]


LOSSES = {
    "softmax_ce": Loss(num_logits=lambda c: c, per_example=_softmax_ce, probabilities=tf.nn.softmax),
    "sigmoid_ce": Loss(num_logits=lambda c: 1, per_example=_sigmoid_ce, probabilities=_sigmoid_probs,
                       check=lambda c: None if c == 2 else
                       f"--loss=sigmoid_ce is for 2 classes; the data has {c}. Use --loss=softmax_ce."),
}
