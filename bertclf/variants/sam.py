"""Sharpness-Aware Minimization (Foret et al. 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization", ICLR): --step=sam_global (the whole global batch) or --step=sam (each replica), --sam_rho=ρ.

One step: the loss and gradient g at the weights w; e = ρ·g/‖g‖₂ (‖·‖ over all training variables together);
the gradient again at w + e; the weights restored bit for bit from a copy. The update uses the second gradient;
the reported loss is the first (the loss at w), and `sam_perturbed_loss` (the loss at w + e) is logged.

sam_global: g is the gradient of the global batch: a synchronised step (see bertclf/swaps/steps.py) that
all-reduces g before perturbing, so every replica moves its copy by the same e and the update does not depend
on the number of replicas or on --grad_accum_steps (each pass is accumulated over the micro-batches first).
sam: each replica perturbs along its own share of g, each micro-batch along its own (the paper's m-sharpness
with m = the micro-batch): no communication, and the same as sam_global on one replica without accumulation.

fp16: gradients are unscaled before the norm; a non-finite g gives e = 0 (that step is a plain step at w, and
its gradient, computed the same way, overflows too, so loss scaling skips it).
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf.variants import grad_accum
from bertclf.variants import passes
from bertclf.swaps import registry

registry.variant_flag(
    "sam_rho", 0.05, "--step=sam or sam_global: L2 norm rho of SAM's perturbation of the weights (Foret et al. "
    "2021; bertclf/variants/sam.py).", requires=("step", ("sam", "sam_global")), check=lambda v: v >= 0.0,
    message="--sam_rho must be >= 0.")

EXTRAS = ("sam_perturbed_loss",)


def sam_step(ctx, features, labels):
  """Per replica: perturb along this replica's (micro-batch's) gradient."""
  return _sam(ctx, features, labels, passes.forward_backward, all_reduce=None)


def sam_global_step(ctx, features, labels):
  """Synchronised: perturb along the global batch's gradient (all-reduced here), each pass accumulated."""
  return _sam(ctx, features, labels, grad_accum.accumulate(passes.forward_backward), all_reduce=ctx.all_reduce)


def _sam(ctx, features, labels, run, all_reduce):
  loss, correct, grads, _ = run(ctx, features, labels)  # at w
  g = [tf.zeros(v.shape, v.dtype) if x is None else tf.convert_to_tensor(x) for x, v in zip(grads, ctx.variables)]
  if all_reduce is not None:
    g = all_reduce(g)  # shares of the global mean → the global batch's gradient, the same on every replica
  e = perturbation(g, ctx.options.get("sam_rho", 0.0))  # like ctx.variables

  originals = [tf.identity(v) for v in ctx.variables]  # copies, so the restore is exact (w + e - e need not be w)
  with tf.control_dependencies(originals):
    moved = [v.assign_add(d) for v, d in zip(ctx.variables, e)]  # this replica's copy of each variable
  with tf.control_dependencies(moved):
    perturbed_loss, _, perturbed_grads, _ = run(ctx, features, labels)  # at w + e
  with tf.control_dependencies(tf.nest.flatten(perturbed_grads, expand_composites=True)):
    restored = [v.assign(o) for v, o in zip(ctx.variables, originals)]
  with tf.control_dependencies(restored):
    loss = tf.identity(loss)
    perturbed_grads = [None if x is None else tf.identity(tf.convert_to_tensor(x)) for x in perturbed_grads]
  return loss, correct, perturbed_grads, {"sam_perturbed_loss": perturbed_loss}


def perturbation(grads, rho):
  """e = ρ·g/‖g‖₂ with the norm over all of `grads` (dense tensors); zeros when ‖g‖ is 0 or not finite."""
  norm = tf.linalg.global_norm(grads)
  ok = tf.logical_and(norm > 0.0, tf.math.is_finite(norm))
  scale = tf.where(ok, rho / tf.where(ok, norm, 1.0), 0.0)
  return [tf.where(ok, g * tf.cast(scale, g.dtype), tf.zeros_like(g)) for g in grads]
