"""Train-step variants: how one replica turns its batch into a loss and gradients. A swap point (--step).

A variant is a function `fn(ctx, features, labels) -> (loss, correct, grads, extras)`:
  loss     this replica's share of the GLOBAL batch mean loss (what it differentiates; summed over replicas),
  correct  number of correctly classified examples in this replica's batch,
  grads    gradients of `loss` for `ctx.variables` (not yet all-reduced; fp16 already unscaled),
  extras   {name: scalar}: extra loss terms, as this replica's share of a global mean (summed over replicas),
           logged to TensorBoard under their names. Declare the names in `Step.extras`.
train.py all-reduces, clips and applies the gradients; variants only change what happens before that.
Every table entry also honours --grad_accum_steps (bertclf/variants/grad_accum.py): with k > 1 the variant runs on k
micro-batches of the replica's batch and the results add up; with k = 1 it runs as written.
"""
import dataclasses
from typing import Any, Callable

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras

from bertclf.variants import fgm
from bertclf.variants import grad_accum
from bertclf.swaps import losses
from bertclf.variants import rdrop


@dataclasses.dataclass
class StepContext:
  model: tf_keras.Model
  loss_def: Any                  # a bertclf.swaps.losses.Loss
  optimizer: Any
  global_batch_size: int
  variables: list                # the variables that train
  options: dict = dataclasses.field(default_factory=dict)  # variant settings from flags

  def __post_init__(self):
    # The loss as trained: its settings (e.g. --label_smoothing) bound from the options.
    self.loss_def = losses.bind(self.loss_def, self.options)

  @property
  def scaled(self):
    """fp16: the optimizer is a LossScaleOptimizer and the step must scale/unscale explicitly."""
    return isinstance(self.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)

  def global_mean(self, per_example):
    """[B] → scalar: sum over this replica / GLOBAL batch, so the all-reduce SUM is the global mean."""
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

  def logits(self, features, training=True):
    return tf.cast(self.model(features, training=training), tf.float32)  # [B, L]; losses run in float32

  def correct(self, logits, labels):
    predicted = tf.argmax(self.loss_def.probabilities(logits), -1, output_type=tf.int32)  # [B]
    return tf.reduce_sum(tf.cast(predicted == labels, tf.float32))

  def scale(self, loss):
    """fp16: the loss times the dynamic loss scale, so small gradients survive in float16. Call inside the tape."""
    return self.optimizer.get_scaled_loss(loss) if self.scaled else loss

  def gradients(self, tape, scaled_loss, variables=None):
    """Gradients of a `scale`d loss for the training variables (or `variables`), unscaled again (official
    base_task's way)."""
    grads = tape.gradient(scaled_loss, self.variables if variables is None else variables)
    return self.optimizer.get_unscaled_gradients(grads) if self.scaled else grads


def default_step(ctx, features, labels):
  """Forward, loss averaged over the global batch, backward."""
  with tf.GradientTape() as tape:
    logits = ctx.logits(features)  # [B, L]
    loss = ctx.global_mean(ctx.loss_def.per_example(labels, logits))
    scaled_loss = ctx.scale(loss)
  return loss, ctx.correct(logits, labels), ctx.gradients(tape, scaled_loss), {}


@dataclasses.dataclass(frozen=True)
class Step:
  fn: Callable
  extras: tuple = ()  # names of the extra scalars fn returns


def _entry(fn, extras=()):
  """A table entry; it runs on micro-batches when --grad_accum_steps > 1."""
  return Step(grad_accum.accumulate(fn, extras), extras)


STEPS = {
    "default": _entry(default_step),
    "rdrop": _entry(rdrop.rdrop_step, rdrop.EXTRAS),  # R-Drop: --rdrop_alpha (bertclf/variants/rdrop.py)
    "fgm": _entry(fgm.fgm_step, fgm.EXTRAS),  # FGM on the word embeddings: --fgm_epsilon (bertclf/variants/fgm.py)
}
