"""FGM adversarial training on the word embeddings (Miyato et al. 2017, "Adversarial Training Methods for
Semi-Supervised Text Classification", ICLR). --step=fgm with --fgm_epsilon=ε.

One step: the clean loss and its gradients; g, the gradient for the word-embedding table [V, H];
r = ε · g / ‖g‖₂ (the fast gradient method's L2-normalised step, ‖r‖ = ε); the loss again with the table moved
to table + r (the adversarial loss); the table restored bit for bit from a copy; gradients = clean +
adversarial. The loss this step reports and differentiates is clean + adversarial (λ = 1); both are logged.
Miyato et al. perturb each example's embedded sequence with a per-example norm; like most BERT fine-tuning
implementations we perturb the shared table with one norm per (replica) batch, which needs no hook inside the
encoder (a TF Hub SavedModel has none).

fp16: `ctx.gradients` unscales before g is normalised (the loss scale would otherwise cancel out, but an
overflow would not); a non-finite g gives r = 0, and the non-finite clean gradients make the optimizer skip
the step anyway.
Replicas: --step=fgm perturbs each replica's copy of the table along its own share of the gradient (and, with
--grad_accum_steps, each micro-batch along its own): no communication; with one replica and no accumulation it
is FGM on the whole batch. --step=fgm_global is exact FGM on the global batch: a synchronised step (see
bertclf/swaps/steps.py) that accumulates the clean pass over the micro-batches, all-reduces the table's
gradient [V, H] and moves every replica's copy by the same r, so the update does not depend on the number of
replicas or micro-batches. The returned gradients are summed by train.py's all-reduce as usual.
"""
import dataclasses

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf import errors
from bertclf.variants import grad_accum
from bertclf.variants import passes
from bertclf.swaps import registry

registry.variant_flag(
    "fgm_epsilon", 0.0, "--step=fgm: L2 norm of the adversarial perturbation of the word embedding table (Miyato "
    "et al. 2017).", requires=("step", ("fgm", "fgm_global")), check=lambda v: v >= 0.0,
    message="--fgm_epsilon must be >= 0.")

EXTRAS = ("fgm_clean_loss", "fgm_adv_loss")
TABLE = "word_embeddings/embeddings"


def fgm_step(ctx, features, labels):
  """Per replica: clean pass, perturb the word embeddings along this replica's gradient, adversarial pass,
  restore; sum gradients."""
  return _fgm(ctx, features, labels, passes.forward_backward, all_reduce=None)


def fgm_global_step(ctx, features, labels):
  """Synchronised: as fgm_step, with the table's gradient of the global batch (all-reduced here)."""
  return _fgm(ctx, features, labels, grad_accum.accumulate(passes.forward_backward), all_reduce=ctx.all_reduce)


def _fgm(ctx, features, labels, run, all_reduce):
  table = word_embeddings(ctx.model)
  index = next((i for i, v in enumerate(ctx.variables) if v is table), None)
  # A frozen table (--freeze) still gets perturbed: its gradient is taken here and not returned.
  clean_ctx = ctx if index is not None else dataclasses.replace(ctx, variables=list(ctx.variables) + [table])
  clean_loss, correct, clean_grads, _ = run(clean_ctx, features, labels)
  g = clean_grads[len(ctx.variables) if index is None else index]  # [V, H], dense or IndexedSlices
  if all_reduce is not None:
    g = all_reduce(tf.convert_to_tensor(g))  # the global batch's gradient: every replica gets the same r
  r = perturbation(g, ctx.options.get("fgm_epsilon", 0.0))  # [V, H]

  original = tf.identity(table)  # [V, H]: a copy, so the restore below is exact (w + r - r need not be w)
  with tf.control_dependencies([original]):
    perturbed = table.assign_add(r)
  with tf.control_dependencies([perturbed]):
    adv_loss, _, adv_grads, _ = run(ctx, features, labels)
  with tf.control_dependencies(tf.nest.flatten(adv_grads, expand_composites=True)):
    restored = table.assign(original)
  with tf.control_dependencies([restored]):
    grads = [_add(c, a) for c, a in zip(clean_grads[:len(ctx.variables)], adv_grads)]
    loss = tf.identity(clean_loss + adv_loss)
  extras = {"fgm_clean_loss": clean_loss, "fgm_adv_loss": adv_loss}
  return loss, correct, grads, extras


def perturbation(grad, epsilon):
  """r = ε · g / ‖g‖₂ for a (dense or IndexedSlices) gradient of the table; zeros when ‖g‖ is 0 or not finite."""
  g = tf.convert_to_tensor(grad)  # [V, H]; an IndexedSlices gradient (rows looked up) becomes dense
  norm = tf.norm(g)
  ok = tf.logical_and(norm > 0.0, tf.math.is_finite(norm))
  return tf.where(ok, epsilon * g / tf.where(ok, norm, 1.0), tf.zeros_like(g))


def word_embeddings(model):
  """The model's word-embedding table (official BertEncoder's name)."""
  found = [v for v in model.variables if TABLE in v.name]
  if len(found) != 1:
    raise errors.UserError(f"--step=fgm and fgm_global perturb the variable named '{TABLE}'; the model has "
                           f"{len(found)} such variables (an encoder that is not official's BERT?).")
  return found[0]


def _add(a, b):
  if a is None or b is None:
    return b if a is None else a
  if isinstance(a, tf.IndexedSlices) and isinstance(b, tf.IndexedSlices):  # the table: stay sparse
    return tf.IndexedSlices(tf.concat([a.values, b.values], 0), tf.concat([a.indices, b.indices], 0),
                            a.dense_shape)
  return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)
