"""The optimizer: tf-models-official's AdamW (or LAMB) with linear warmup and linear decay. A swap point.

Weight decay skips LayerNorm and bias variables, as official's `create_optimizer` sets it up. Under fp16 the
optimizer is wrapped in a dynamic LossScaleOptimizer; the train step scales and unscales explicitly.

OPTIMIZERS maps --optimizer to `fn(learning_rate, train_steps, warmup_steps, model, options) -> optimizer`;
entries that give variables their own learning rates (adamw_llrd) read the model's variable names.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tf_keras

from official.nlp import optimization

from bertclf import llrd


def _official(optimizer_type):
  """official's `create_optimizer` of this type: one learning rate for every variable."""

  def create(learning_rate, train_steps, warmup_steps, model, options):
    del model, options
    return optimization.create_optimizer(init_lr=learning_rate, num_train_steps=train_steps,
                                         num_warmup_steps=warmup_steps, optimizer_type=optimizer_type)

  return create


OPTIMIZERS = {
    "adamw": _official("adamw"),
    "lamb": _official("lamb"),
    "adamw_llrd": llrd.create_optimizer,  # AdamW with layer-wise learning-rate decay (--layer_decay)
}

# Official's AdamW clips each replica's gradient before its implicit all-reduce. Our step all-reduces
# explicitly (to log the true global norm), so it clips the all-reduced gradient to this norm instead; with one
# replica the two are the same.
CLIP_NORM = 1.0


def create_optimizer(name, learning_rate, train_steps, warmup_steps, dtype, model=None, options=None):
  """The --optimizer entry with its schedule; `model` and `options` are for entries with per-variable rates."""
  opt = OPTIMIZERS[name](learning_rate, train_steps, warmup_steps, model, options or {})
  if dtype == "fp16":
    opt = tf_keras.mixed_precision.LossScaleOptimizer(opt, dynamic=True)
  return opt


def learning_rate(opt):
  """The learning rate at the optimizer's current step (works through the loss-scale wrapper)."""
  inner = getattr(opt, "inner_optimizer", opt)
  lr = inner.learning_rate
  return lr(inner.iterations) if callable(lr) else lr
