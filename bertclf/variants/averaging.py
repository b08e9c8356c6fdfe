"""The base of --weights_for_eval entries that keep an average of the trained weights (EMA, SWA).

A subclass sets NAME (its --weights_for_eval entry and the prefix of its state in checkpoints) and writes one
method, `_update(strategy, step)`, which folds the weights into the average with `self._fold(strategy, beta)`
(a ← a + β·(w − a) on every device's copy). The rest is here, the same for every average:

  create      `Entry(model, variables, options)` under the strategy's scope: one average per trained variable
              (frozen ones keep their values, so their average would be themselves), keyed by variable name;
  begin(total_steps)  the run's planned last step, before training (refuse settings that would do nothing);
  update(step)  in replica context after the optimizer's update; `step` is the number of the step just taken
              (1, 2, ...): calls `_update` in cross-replica context (each device updates its own copy);
  swapped()   a context manager (and decorator): inside, the model holds the average; on exit every replica's
              copy gets its trained value back from a copy taken on entry, bit for bit. Eager host code;
  assign_to_model()  the model keeps the average (the export);
  track(checkpoint, latest)  the state joins the checkpoint under `eval_weights/`, restored from `latest` when
              it holds it (a run switched on at a resume starts the average there, logged);
  scalars()   {name: scalar tensor} for TensorBoard, read in train_step after `update` (names in SCALARS);
  holds_state, load_into_model, average_in_model (class methods): eval.py's reads of a checkpoint file.

State (checkpoint keys `eval_weights/<NAME>_...`): <NAME>_average {variable name: a}, <NAME>_updates (how many
times the weights were folded in), <NAME>_in_model (true in a checkpoint saved while the average was swapped in:
the best checkpoint, whose `model/` then holds the average and not the trained weights).
"""
import contextlib

from absl import logging
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from official.modeling.optimization import ema_optimizer
from tensorflow.python.trackable import trackable_utils  # the checkpoint's key escaping, for eval.py's reads

from bertclf import errors


def variable_key(variable):
  """The average's key: the variable's name without ':0' (unique in official's BERT and the heads)."""
  return variable.name.split(":")[0]


class _State(tf.Module):
  """What the checkpoint holds: averages keyed by variable name, the update count, the in-model marker."""

  def __init__(self, name, variables):
    super().__init__(name="eval_weights")
    setattr(self, f"{name}_average", {variable_key(v): tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                                                                   name=f"{name}/" + variable_key(v))
                                      for v in variables})
    setattr(self, f"{name}_updates", tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_updates"))
    setattr(self, f"{name}_in_model", tf.Variable(False, trainable=False, name=f"{name}_in_model"))


class WeightAverage:
  """Base of an averaging --weights_for_eval entry (see the module docstring). Build it under the strategy's
  scope from the variables that train."""

  NAME = None              # --weights_for_eval=NAME; checkpoint keys eval_weights/NAME_*
  DESCRIPTION = "average"  # in log lines: "moving average", "SWA average"
  SCALARS = ()             # names of scalars() for TensorBoard

  def __init__(self, model, variables, options):
    del model, options
    keys = [variable_key(v) for v in variables]
    if len(set(keys)) != len(keys):
      raise errors.UserError(f"--weights_for_eval={self.NAME} keys its averages by variable name, and the model has "
                             f"duplicate names: {sorted({k for k in keys if keys.count(k) > 1})}.")
    self.variables = list(variables)
    self.state = _State(self.NAME, self.variables)
    average = getattr(self.state, f"{self.NAME}_average")
    self.averages = [average[k] for k in keys]
    self.updates = getattr(self.state, f"{self.NAME}_updates")
    self.in_model = getattr(self.state, f"{self.NAME}_in_model")

  # ---------------------------------------------------------------- training
  def begin(self, total_steps):
    """The run will end after step `total_steps`. Raise errors.UserError for settings that would do nothing."""
    del total_steps

  def learning_rate(self, schedule, learning_rate):
    """The optimizer's learning-rate schedule as this entry wants it (after begin()): unchanged here."""
    del learning_rate
    return schedule

  def update(self, step=None):
    """Folds the current weights in, as `_update` decides. Call in replica context, after the optimizer's update
    (a tf.function runs the assignments in program order); `step`: the step just taken, 1-based."""
    # `step` in a closure, not as a merge_call argument (that would regroup it per replica); it is the same on all.
    ema_optimizer.maybe_merge_call(lambda strategy: self._update(strategy, step), tf.distribute.get_strategy())

  def _update(self, strategy, step):
    """Cross-replica context: fold the weights in with `self._fold(strategy, beta)` (and count `self.updates`)."""
    raise NotImplementedError

  def _fold(self, strategy, beta):
    """a ← a + β·(w − a) for every average, each device's copy from the same device's weights (no communication).
    beta: a float32 scalar tensor."""
    updates = []
    for average, variable in zip(self.averages, self.variables):
      updates.append(strategy.extended.update(
          average, lambda a, w: a.assign_add(tf.cast(beta, a.dtype) * (w - a)), args=(variable,), group=False))
    return tf.group(updates)

  def scalars(self):
    """{name: scalar tensor} logged to TensorBoard under these names; read in replica context after update()."""
    return {}

  # ---------------------------------------------------------------- host: the swap
  @contextlib.contextmanager
  def swapped(self):
    """Inside, the model's variables hold the average (before any update: the trained weights). On exit every
    replica's copy gets its trained value back from a copy taken on entry: bit for bit. Eager host code."""
    if int(self.updates.numpy()) == 0:
      yield
      return
    saved = [[tf.identity(c) for c in _components(v)] for v in self.variables]  # copies, on each device
    self._assign_average()
    self.in_model.assign(True)
    try:
      yield
    finally:
      for v, copies in zip(self.variables, saved):
        for c, copy in zip(_components(v), copies):
          c.assign(copy)
      self.in_model.assign(False)

  def assign_to_model(self):
    """The model keeps the average from here on (for the export at the end of training)."""
    if int(self.updates.numpy()):
      self._assign_average()
      logging.info("The model holds the %s of %d updates (--weights_for_eval=%s).", self.DESCRIPTION,
                   int(self.updates.numpy()), self.NAME)

  def _assign_average(self):
    for v, a in zip(self.variables, self.averages):
      for c, ca in zip(_components(v), _components(a)):
        c.assign(ca)

  # ---------------------------------------------------------------- checkpoints
  def track(self, checkpoint, latest):
    """Adds the state to `checkpoint` (as `eval_weights`) after train.py restored `latest`, and restores it from
    there; a checkpoint without it (the run trained with another --weights_for_eval so far) starts the average."""
    if latest and self.holds_state(latest):
      tf.train.Checkpoint(eval_weights=self.state).restore(latest).expect_partial() \
          .assert_existing_objects_matched()
      logging.info("--weights_for_eval=%s: restored the %s of %d updates from %s.", self.NAME, self.DESCRIPTION,
                   int(self.updates.numpy()), latest)
    elif latest:
      logging.warning("--weights_for_eval=%s: %s holds no %s (the run trained without it so far); the average "
                      "starts from the weights of the next step and joins the checkpoints from the next save.",
                      self.NAME, latest, self.DESCRIPTION)
    checkpoint.eval_weights = self.state

  # ---------------------------------------------------------------- eval.py: reads of a checkpoint file
  @classmethod
  def prefix(cls):
    return f"eval_weights/{cls.NAME}_"

  @classmethod
  def holds_state(cls, path):
    return any(k.startswith(cls.prefix()) for k in tf.train.load_checkpoint(path).get_variable_to_shape_map())

  @classmethod
  def load_into_model(cls, model, path):
    """The averages of checkpoint `path` into `model`'s variables of the same names. Returns how many."""
    reader = tf.train.load_checkpoint(path)
    count = 0
    for v in model.variables:
      key = f"{cls.prefix()}average/{trackable_utils.escape_local_name(variable_key(v))}/.ATTRIBUTES/VARIABLE_VALUE"
      if reader.has_tensor(key):
        v.assign(reader.get_tensor(key))
        count += 1
    return count

  @classmethod
  def average_in_model(cls, path):
    """True when checkpoint `path` was saved with the average swapped into `model/` (the best checkpoint)."""
    reader = tf.train.load_checkpoint(path)
    key = f"{cls.prefix()}in_model/.ATTRIBUTES/VARIABLE_VALUE"
    return reader.has_tensor(key) and bool(reader.get_tensor(key))

  @classmethod
  def updates_in(cls, path):
    """How many times the weights were folded into the average of checkpoint `path`."""
    return int(tf.train.load_checkpoint(path).get_tensor(f"{cls.prefix()}updates/.ATTRIBUTES/VARIABLE_VALUE"))


def _components(variable):
  """A distributed variable's per-device copies on this host; a plain variable itself."""
  return getattr(variable, "values", None) or (variable,)
