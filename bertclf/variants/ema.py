"""An exponential moving average of the weights (Polyak averaging), validated, kept as the best checkpoint and
exported instead of the trained weights: --weights_for_eval=ema --ema_decay=d.

After update n (n = 1, 2, ...) of the trained weights w_1 .. w_n the average is the bias-corrected EMA
  a_n = Σ_{i=1..n} (1-d)·d^(n-i)·w_i / (1 - d^n),
kept in that form by a_n = a_{n-1} + β_n·(w_n - a_{n-1}) with β_n = (1-d)/(1-d^n): β_1 = 1, so the average
starts at the first updated weights (as Adam corrects its moments), not at zero. Every step counts, also one
whose update fp16 loss scaling skipped (the weights then count once more as they are).

tf-models-official has an `ExponentialMovingAverage` optimizer; from it we use `maybe_merge_call` and its
per-device update (`strategy.extended.update` in cross-replica context: no communication), not the rest:
  * its averages start at zero without correction, so after n steps they are (1-d^n)·a_n, far from the weights
    early in training (test_official_average_starts_at_zero_and_its_swap_rounds);
  * its `apply_gradients` has no `experimental_aggregate_gradients`, which train.py passes as False because it
    all-reduces once itself; dropping it would all-reduce the gradients twice;
  * its swap computes a+b, a-b, a-b in place, which changes weights by rounding; here the trained weights are
    copied out and assigned back, bit for bit, on every replica's copy;
  * its swap runs `strategy.run` and so needs the cross-replica context; here a swap is eager host code.

State (in the checkpoint under `eval_weights/`): ema_average {variable name: a_n}, ema_updates n, and
ema_in_model, true in a checkpoint saved while the average was swapped into the model (the best checkpoint),
whose `model/` then holds the average and not the trained weights.
"""
import contextlib

from absl import logging
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from official.modeling.optimization import ema_optimizer
from tensorflow.python.trackable import trackable_utils  # the checkpoint's key escaping, for eval.py's reads

from bertclf import errors
from bertclf.swaps import registry

registry.variant_flag(
    "ema_decay", 0.999, "--weights_for_eval=ema: decay d of the bias-corrected moving average of the weights "
    "(bertclf/variants/ema.py); it spans about 1/(1-d) steps.", requires=("weights_for_eval", "ema"),
    check=lambda v: 0.0 <= v < 1.0, message="--ema_decay must be in [0, 1).")

PREFIX = "eval_weights/ema_"  # checkpoint keys of the state


def variable_key(variable):
  """The average's key: the variable's name without ':0' (unique in official's BERT and the heads)."""
  return variable.name.split(":")[0]


class _State(tf.Module):
  """What the checkpoint holds: averages keyed by variable name, the update count, the in-model marker."""

  def __init__(self, variables):
    super().__init__(name="eval_weights")
    self.ema_average = {variable_key(v): tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                                                     name="ema/" + variable_key(v)) for v in variables}
    self.ema_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
    self.ema_in_model = tf.Variable(False, trainable=False, name="ema_in_model")


class ExponentialMovingAverage:
  """The --weights_for_eval=ema entry. Create it under the strategy's scope; `variables` are the ones that train
  (frozen ones keep their values, so their average would be themselves)."""

  def __init__(self, model, variables, options):
    del model
    self.decay = float(options.get("ema_decay", 0.999))
    keys = [variable_key(v) for v in variables]
    if len(set(keys)) != len(keys):
      raise errors.UserError("--weights_for_eval=ema keys its averages by variable name, and the model has "
                             f"duplicate names: {sorted({k for k in keys if keys.count(k) > 1})}.")
    self.variables = list(variables)
    self.state = _State(self.variables)
    self.averages = [self.state.ema_average[k] for k in keys]

  # ---------------------------------------------------------------- training: one update per step
  def update(self):
    """Folds the current weights into the average. Call in replica context, after the optimizer's update (a
    tf.function runs the assignments in program order)."""
    ema_optimizer.maybe_merge_call(self._update, tf.distribute.get_strategy())

  def _update(self, strategy):
    n = self.state.ema_updates.assign_add(1)
    # β_n in float64: 1 - d^n has few significant bits in float32 when d is close to 1.
    d = tf.constant(self.decay, tf.float64)
    beta = tf.cast((1.0 - d) / (1.0 - tf.pow(d, tf.cast(n, tf.float64))), tf.float32)
    updates = []
    for average, variable in zip(self.averages, self.variables):
      updates.append(strategy.extended.update(  # each device's copy from the same device's weights
          average, lambda a, w: a.assign_add(tf.cast(beta, a.dtype) * (w - a)), args=(variable,), group=False))
    return tf.group(updates)

  # ---------------------------------------------------------------- host: the swap
  @contextlib.contextmanager
  def swapped(self):
    """Inside, the model's variables hold the average (before any update: the trained weights). On exit every
    replica's copy gets its trained value back from a copy taken on entry: bit for bit. Eager host code."""
    if int(self.state.ema_updates.numpy()) == 0:
      yield
      return
    saved = [[tf.identity(c) for c in _components(v)] for v in self.variables]  # copies, on each device
    self._assign_average()
    self.state.ema_in_model.assign(True)
    try:
      yield
    finally:
      for v, copies in zip(self.variables, saved):
        for c, copy in zip(_components(v), copies):
          c.assign(copy)
      self.state.ema_in_model.assign(False)

  def assign_to_model(self):
    """The model keeps the average from here on (for the export at the end of training)."""
    if int(self.state.ema_updates.numpy()):
      self._assign_average()
      logging.info("The model holds the moving average of %d updates (--weights_for_eval=ema).",
                   int(self.state.ema_updates.numpy()))

  def _assign_average(self):
    for v, a in zip(self.variables, self.averages):
      for c, ca in zip(_components(v), _components(a)):
        c.assign(ca)

  # ---------------------------------------------------------------- checkpoints
  def track(self, checkpoint, latest):
    """Adds the state to `checkpoint` (as `eval_weights`) after train.py restored `latest`, and restores it from
    there; a checkpoint without it (the run trained with another --weights_for_eval so far) starts the average."""
    if latest and holds_state(latest):
      tf.train.Checkpoint(eval_weights=self.state).restore(latest).expect_partial() \
          .assert_existing_objects_matched()
      logging.info("--weights_for_eval=ema: restored the average of %d updates from %s.",
                   int(self.state.ema_updates.numpy()), latest)
    elif latest:
      logging.warning("--weights_for_eval=ema: %s holds no moving average (the run trained without it so far); "
                      "the average starts from the weights of the next step and joins the checkpoints from "
                      "the next save.", latest)
    checkpoint.eval_weights = self.state


def holds_state(path):
  return any(k.startswith(PREFIX) for k in tf.train.load_checkpoint(path).get_variable_to_shape_map())


def load_into_model(model, path):
  """eval.py: the averages of checkpoint `path` into `model`'s variables of the same names. Returns how many."""
  reader = tf.train.load_checkpoint(path)
  count = 0
  for v in model.variables:
    key = f"{PREFIX}average/{trackable_utils.escape_local_name(variable_key(v))}/.ATTRIBUTES/VARIABLE_VALUE"
    if reader.has_tensor(key):
      v.assign(reader.get_tensor(key))
      count += 1
  return count


def average_in_model(path):
  """True when checkpoint `path` was saved with the average swapped into `model/` (the best checkpoint)."""
  reader = tf.train.load_checkpoint(path)
  key = f"{PREFIX}in_model/.ATTRIBUTES/VARIABLE_VALUE"
  return reader.has_tensor(key) and bool(reader.get_tensor(key))


def _components(variable):
  """A distributed variable's per-device copies on this host; a plain variable itself."""
  return getattr(variable, "values", None) or (variable,)
