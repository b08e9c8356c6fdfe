"""One forward and backward pass, the building block of variants that run the model more than once (SAM, FGM)."""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf


def forward_backward(ctx, features, labels):
  """The plain step on this batch: (loss share of the global mean, correct count, unscaled gradients for
  ctx.variables, {}). Wrap it in grad_accum.accumulate to run it on --grad_accum_steps micro-batches."""
  with tf.GradientTape() as tape:
    logits = ctx.logits(features)  # [B, L]
    loss = ctx.global_mean(ctx.loss_def.per_example(labels, logits))
    scaled_loss = ctx.scale(loss)
  return loss, ctx.correct(logits, labels), ctx.gradients(tape, scaled_loss), {}
