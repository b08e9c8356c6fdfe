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

A step may write to variables only to restore them before it returns (FGM, SAM: each replica moves its own copy
of the weights, then assigns back a copy taken before); it must not create variables (state belongs to the
model, the optimizer or a --weights_for_eval entry, which the checkpoint holds).

Per-replica steps (synchronised=False) are compiled as a nested tf.function (with --jit_compile, by XLA) inside
the replica function, where no all-reduce can run, and --grad_accum_steps wraps the whole step. A synchronised
step (synchronised=True) is traced into the replica function itself: it may call `ctx.all_reduce(...)` to take
the global view (SAM's and FGM's global forms), and accumulates micro-batches itself, per pass, between its
all-reduces (`grad_accum.accumulate(passes.forward_backward)`); --jit_compile is refused for it (flags.py).
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
from bertclf.variants import sam


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

  def all_reduce(self, values):
    """Sum over the replicas of a tensor or a list of tensors (IndexedSlices too): the same result on every
    replica. Synchronised steps only: a per-replica step runs in a nested tf.function, where TensorFlow refuses
    to synchronise (`merge_call` called while defining a new graph)."""
    return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

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
  synchronised: bool = False  # fn may all-reduce (ctx.all_reduce); it handles --grad_accum_steps itself


def _entry(fn, extras=()):
  """A per-replica table entry; it runs on micro-batches when --grad_accum_steps > 1."""
  return Step(grad_accum.accumulate(fn, extras), extras)


def _synchronised(fn, extras=()):
  """A synchronised table entry: fn sees the global batch through ctx.all_reduce and accumulates itself."""
  return Step(fn, extras, synchronised=True)


def compiled(step_def, jit_compile=False):
  """train.py's decorator of the function that runs the step on one replica's batch: a tf.function (XLA with
  jit_compile) for a per-replica step; for a synchronised step the function itself, traced into the replica
  function so that its all-reduces can run."""
  if step_def.synchronised:
    return lambda fn: fn
  return tf.function(jit_compile=jit_compile)


STEPS = {
    "default": _entry(default_step),
    "rdrop": _entry(rdrop.rdrop_step, rdrop.EXTRAS),  # R-Drop: --rdrop_alpha (bertclf/variants/rdrop.py)
    "fgm": _entry(fgm.fgm_step, fgm.EXTRAS),  # FGM on the word embeddings: --fgm_epsilon (bertclf/variants/fgm.py)
    "fgm_global": _synchronised(fgm.fgm_global_step, fgm.EXTRAS),  # FGM on the global batch's gradient
    "sam": _entry(sam.sam_step, sam.EXTRAS),  # SAM per replica: --sam_rho (bertclf/variants/sam.py)
    "sam_global": _synchronised(sam.sam_global_step, sam.EXTRAS),  # SAM on the global batch's gradient
}
