"""R-Drop (Liang et al. 2021, "R-Drop: Regularized Dropout for Neural Networks", arXiv:2106.14448). --step=rdrop.

Every example goes through the model twice, with two independent dropout masks, giving P1 and P2. The paper's
per-example loss (its Eq. 3) is
  CE(P1) + CE(P2) + α · ½ (KL(P1‖P2) + KL(P2‖P1)).
We minimise half of it, ½ (CE(P1) + CE(P2)) + (α/2) · ½ (KL(P1‖P2) + KL(P2‖P1)): the same optimum for the
paper's α (--rdrop_alpha), while the logged loss stays on the scale of one cross-entropy and compares with the
default step. (The authors' README snippet uses ½(CE1+CE2) + α·KLsym, i.e. an α twice the paper's.)
The two passes run as one forward pass over the batch concatenated with itself, as the authors' code does
for classification; BERT has no batch-dependent layers, so that equals two separate passes.
With dropout off (--dropout=0, --encoder_dropout=false) P1 = P2, the KL term is 0 and this is the default
step on both copies.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf.swaps import registry

registry.variant_flag(
    "rdrop_alpha", 0.0, "--step=rdrop: weight alpha of the symmetric KL between two dropout passes (Liang et al. "
    "2021, Eq. 3).", requires=("step", "rdrop"), check=lambda v: v >= 0.0, message="--rdrop_alpha must be >= 0.")

EXTRAS = ("rdrop_ce", "rdrop_kl")  # ½(CE1 + CE2) and ½(KL(P1‖P2) + KL(P2‖P1)), as global batch means


def rdrop_step(ctx, features, labels):
  """Two dropout passes, cross-entropy on both, α-weighted symmetric KL between their predictions."""
  twice = {name: tf.concat([t, t], 0) for name, t in features.items()}  # [2B, T]
  with tf.GradientTape() as tape:
    logits1, logits2 = tf.split(ctx.logits(twice), 2)  # [B, L] each: the two dropout masks
    total, ce, kl = objective(ctx.loss_def, labels, logits1, logits2, ctx.options.get("rdrop_alpha", 0.0))
    loss = ctx.global_mean(total)
    scaled_loss = ctx.scale(loss)
  extras = {"rdrop_ce": ctx.global_mean(ce), "rdrop_kl": ctx.global_mean(kl)}
  return loss, ctx.correct(logits1, labels), ctx.gradients(tape, scaled_loss), extras


def objective(loss_def, labels, logits1, logits2, alpha):
  """Per-example (loss, ce, kl), each [B]: loss = ce + (α/2)·kl with ce = ½(CE1 + CE2), kl = ½(KL12 + KL21)."""
  ce = 0.5 * (loss_def.per_example(labels, logits1) + loss_def.per_example(labels, logits2))
  kl = symmetric_kl(log_probabilities(loss_def, logits1), log_probabilities(loss_def, logits2))
  return ce + 0.5 * alpha * kl, ce, kl


def symmetric_kl(log_p, log_q):
  """[B, C] log-probabilities → [B]: ½ (KL(P‖Q) + KL(Q‖P)) = ½ Σ_c (p_c − q_c)(log p_c − log q_c)."""
  return 0.5 * tf.reduce_sum((tf.exp(log_p) - tf.exp(log_q)) * (log_p - log_q), -1)


def log_probabilities(loss_def, logits):
  """[B, L] logits → [B, C] class log-probabilities, from the loss entry (stable) or the log of its probabilities."""
  if loss_def.log_probabilities is not None:
    return loss_def.log_probabilities(logits)
  return tf.math.log(tf.maximum(loss_def.probabilities(logits), 1e-30))
