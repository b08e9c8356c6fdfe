"""Gradient accumulation (--grad_accum_steps=k): one update from k micro-batches, run one after another.

Each replica splits its batch [B] into k consecutive micro-batches [B/k] and runs the step variant on each in a
`tf.while_loop` with parallel_iterations=1, so only one micro-batch's activations are alive at a time: the
memory of batch B/k, the update of batch B. Exact, not approximate: every step variant returns its loss and
extras as shares of the GLOBAL batch mean (`StepContext.global_mean` divides by the global batch G whatever
the micro-batch size) and gradients of those, so the k shares add up to the full batch's, and the counts of
correct examples add up too. Under fp16 each micro-batch scales and unscales its own loss; an overflow in any
of them makes the sum non-finite and the LossScaleOptimizer skips the update, as for one big batch. Dropout
draws the same masks as for the whole batch (bertclf/swaps/dropout.py), so with dropout on the update is the same too.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf.swaps import dropout
from bertclf import errors
from bertclf.swaps import registry

registry.variant_flag(
    "grad_accum_steps", 1, "Split each replica's batch into this many micro-batches, run one after another, and "
    "make one update from their summed gradients: the update of --batch_size at the activation memory of "
    "--batch_size / grad_accum_steps. Any --step.", check=lambda v: v >= 1, message="--grad_accum_steps must be >= 1.")
registry.variant_rule(["grad_accum_steps", "batch_size"], lambda d: d["batch_size"] % d["grad_accum_steps"] == 0,
                      "--grad_accum_steps must divide --batch_size (and each replica's share of it).")


def accumulate(fn, extras=()):
  """A step variant that runs `fn(ctx, features, labels)` on k micro-batches (k from ctx.options) and sums."""

  def step(ctx, features, labels):
    k = ctx.options.get("grad_accum_steps", 1)
    if k == 1:
      return fn(ctx, features, labels)  # the variant itself, op for op
    micro_features, micro_labels = split(features, labels, k)  # {name: [k, B/k, T]}, [k, B/k]

    def body(i, loss, correct, grads, extra_values):
      # Micro-batch i's examples sit i·B/k rows further into the global batch: same dropout masks as k = 1.
      with dropout.rows_later(i * tf.shape(micro_labels)[1]):
        out_loss, out_correct, out_grads, out_extras = fn(
            ctx, {name: t[i] for name, t in micro_features.items()}, micro_labels[i])
      grads = [acc if g is None else acc + tf.convert_to_tensor(g)  # IndexedSlices → dense to accumulate
               for acc, g in zip(grads, out_grads)]
      extra_values = {name: extra_values[name] + out_extras[name] for name in extras}
      return i + 1, loss + out_loss, correct + out_correct, grads, extra_values

    zero = tf.constant(0.0)
    init = (tf.constant(0), zero, zero, [tf.zeros(v.shape, v.dtype) for v in ctx.variables],
            {name: zero for name in extras})
    _, loss, correct, grads, extra_values = tf.while_loop(
        lambda i, *_: i < k, body, init, parallel_iterations=1)  # one micro-batch at a time: the memory saving
    return loss, correct, grads, extra_values

  return step


def split(features, labels, k):
  """{name: [B, T]}, [B] → {name: [k, B/k, T]}, [k, B/k]: micro-batch j holds examples j·B/k .. (j+1)·B/k - 1."""
  batch = labels.shape[0]
  if batch is not None and batch % k:
    raise errors.UserError(f"--grad_accum_steps={k} must divide each replica's batch of {batch} examples "
                     "(--batch_size / replicas).")

  def reshape(t):
    dims = t.shape.as_list()  # [B, T]; T is None with --bucket_boundaries
    if batch is not None and dims[1:].count(None) <= 1:  # keeps the static micro-batch size
      return tf.reshape(t, [k, batch // k] + [-1 if d is None else d for d in dims[1:]])
    return tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], 0))

  return {name: reshape(t) for name, t in features.items()}, reshape(labels)
