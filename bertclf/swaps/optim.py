"""The optimizer: tf-models-official's AdamW (or LAMB) with official BERT's learning-rate schedule. A swap point.

The schedule, as official builds it (`WarmUp` around a `PolynomialDecay` to 0 that starts at step 0): the update
of step s (counted from 0) uses lr·s/W while s < W warmup steps, then lr·(1 - s/N) over N total steps. So the
first update uses 0, the rate falls from lr·(W-1)/W to lr·(1 - W/N) where warmup ends (about 10% lower with the
default --warmup_fraction=0.1), the nominal peak lr is never applied, and the last update uses lr/N. E.g. lr 1,
W 2, N 10: 0, 0.5, 0.8, 0.7, ..., 0.1. `applied_learning_rate` gives the rate of the last update, for logging.

Weight decay skips LayerNorm and bias variables, as official's `create_optimizer` sets it up.

OPTIMIZERS maps --optimizer to `fn(learning_rate, train_steps, warmup_steps, model, options) -> optimizer`;
entries that give variables their own learning rates (adamw_llrd) read the model's variable names.
WRAPPERS maps --optimizer_wrapper to `fn(optimizer, options, model) -> optimizer`: an optimizer around the entry's
that changes how its updates are applied (Lookahead's slow weights, AGC's unit-wise clipping). Several chain in
the order given, the first innermost: --optimizer_wrapper=a,b builds
  LossScaleOptimizer(WRAPPERS[b](WRAPPERS[a](OPTIMIZERS[--optimizer](...))))   (fp16)
            WRAPPERS[b](WRAPPERS[a](OPTIMIZERS[--optimizer](...)))             (fp32, bf16)
so a sees the gradients last, just before the --optimizer entry. The loss-scale wrapper is outermost, so the train
step scales and unscales explicitly the same way with any wrapper, and a step it skips (non-finite gradients)
reaches neither the wrapper nor the optimizer. A wrapper takes `experimental_aggregate_gradients` and passes it on
(train.py all-reduces once and passes False), and exposes the wrapped optimizer as `inner_optimizer`, its
`learning_rate` and `iterations`. A wrapper with values worth plotting declares their names in `SCALARS` and
returns them from `scalars()` (read in train_step after the update, the same on every replica); train.py logs them
to TensorBoard. Averages of the weights that only
change what is evaluated (EMA, SWA) are not wrappers: see bertclf/swaps/eval_weights.py.

The global gradient norm clipping (--clip_norm) is train.py's, on the all-reduced gradient before the update.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras

from official.nlp import optimization

from bertclf.variants import agc
from bertclf.variants import llrd
from bertclf.variants import lookahead


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

WRAPPERS = {
    "none": lambda optimizer, options, model: optimizer,
    "lookahead": lookahead.wrap,  # Lookahead: --lookahead_steps, --lookahead_alpha (bertclf/variants/lookahead.py)
    "agc": agc.wrap,  # unit-wise adaptive gradient clipping: --agc_clip, --agc_eps (bertclf/variants/agc.py)
}

# --clip_norm's default. Official's AdamW clips each replica's gradient to 1.0 before its implicit all-reduce. Our
# step all-reduces explicitly (to log the true global norm), so it clips the all-reduced gradient instead; with
# one replica the two are the same.
CLIP_NORM = 1.0


def wrapper_names(value):
  """--optimizer_wrapper as a list of entries, innermost first ('none' and '' are no wrapper); a list or a
  comma-separated string."""
  names = value.split(",") if isinstance(value, str) else list(value)
  return [n for n in names if n not in ("none", "")]


def densify(grads):
  """IndexedSlices gradients (the embedding tables') → dense tensors; the others pass through.

  An embedding gradient arrives as one slice per looked-up token, so a token that occurs n times in the batch
  ([CLS], [PAD], "the") has n slices. Applying them sums the duplicates, but `tf.linalg.global_norm` and
  `tf.clip_by_global_norm` square the slices one by one: the norm they see is not the gradient's (5% off on
  the tiny test model; tests/variants/test_variants_train.py checks it against --grad_accum_steps, which sums
  densely). Dense, the logged norm and the clipping are exact. The update is the same (official's AdamW is
  Keras's non-lazy Adam: it moves every row of the table each step anyway) and not measurably slower: one fused
  pass over the table instead of the sparse path's several (docs/BENCHMARKS.md, "Why the defaults are what they
  are"). Call it after the all-reduce, which then still moves only the looked-up rows between devices.
  """
  return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def create_optimizer(name, learning_rate, train_steps, warmup_steps, dtype, model=None, options=None, schedule=None):
  """The --optimizer entry with its schedule, inside the --optimizer_wrapper entries (options["optimizer_wrapper"],
  the first listed innermost), inside fp16's loss scaling; `model` and `options` are for entries with per-variable
  rates and settings. schedule: fn(the entry's learning-rate schedule) -> the one it uses (the --weights_for_eval
  entry's, e.g. SWA's constant tail)."""
  options = options or {}
  opt = OPTIMIZERS[name](learning_rate, train_steps, warmup_steps, model, options)
  if schedule is not None:
    opt.learning_rate = schedule(opt.learning_rate)
  for wrapper in wrapper_names(options.get("optimizer_wrapper", "none")):  # the first listed innermost
    opt = WRAPPERS[wrapper](opt, options, model)
  if dtype == "fp16":
    opt = tf_keras.mixed_precision.LossScaleOptimizer(opt, dynamic=True)
  return opt


def build(opt, variables):
  """Creates the optimizer's variables now (step counter, hyperparameters, slots, the wrappers' state), under the
  strategy's scope, as its first apply_gradients would. A tf.function whose first call creates variables is traced
  a second time, so without this the train loop (the costliest trace of a run) would be traced twice."""
  # The legacy optimizers' build; wrappers chain it.
  opt._create_all_weights(variables)  # pylint: disable=protected-access


def learning_rate(opt):
  """The learning rate the optimizer's NEXT update will use (works through the loss-scale and WRAPPERS entries)."""
  inner = getattr(opt, "inner_optimizer", opt)
  lr = inner.learning_rate
  return lr(inner.iterations) if callable(lr) else lr


def applied_learning_rate(opt):
  """The learning rate the optimizer's last update used: what a log line written after a step should show.

  `iterations` counts the steps, so the last one ran at iterations - 1. (Under fp16 the loss-scale wrapper
  counts a step it skips too, so after a skipped step the value is the rate that step would have used.)
  """
  inner = getattr(opt, "inner_optimizer", opt)
  lr = inner.learning_rate
  return lr(tf.maximum(inner.iterations - 1, 0)) if callable(lr) else lr


def _chain(opt):
  """The optimizer and every optimizer it wraps, outermost first."""
  while opt is not None:
    yield opt
    opt = getattr(opt, "inner_optimizer", None)


def scalar_names(opt):
  """Names of the scalars the wrappers in `opt` log (their SCALARS), outermost first."""
  return tuple(name for o in _chain(opt) for name in getattr(o, "SCALARS", ()))


def scalars(opt):
  """{name: scalar tensor} of every wrapper in `opt` with `scalars()`; call in replica context after the update."""
  return {k: v for o in _chain(opt) if hasattr(o, "scalars") for k, v in o.scalars().items()}
