"""Stochastic Weight Averaging (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and Better
Generalization", UAI): validation, the best checkpoint, the export and eval.py use the equal-weight average of
snapshots of the trained weights taken late in training; training itself is unchanged.
--weights_for_eval=swa --swa_start_fraction=f (or --swa_start_step=s) --swa_every=c.

With s the start (--swa_start_step, else floor(f · total steps)), a snapshot is taken after each step t with
t > s and (t − s) a multiple of c, i.e. after steps s+c, s+2c, ...; after n snapshots w_1 .. w_n the average is
  a_n = (w_1 + ... + w_n) / n,
kept by a_n = a_{n-1} + (w_n − a_{n-1})/n (β_n = 1/n: the first snapshot is copied). Until the first snapshot
the average holds nothing and validation scores the trained weights. A start that leaves no snapshot before the
run's last step is refused when training starts.

Learning rate (--swa_schedule), from the update after step s on; until then the run's --optimizer schedule:
  decay     the run's schedule throughout (official's linear decay to 0): the snapshots come from the decaying
            tail of training ("tail averaging"). The default.
  constant  --swa_learning_rate α2 (the paper's constant schedule).
  cyclic    within each cycle of c = --swa_every updates, linearly from --learning_rate α1 down to α2, so each
            snapshot follows an update at α2 (the paper's eq. 2: α(i) = (1 − t(i)) α1 + t(i) α2,
            t(i) = (((i − 1) mod c) + 1) / c, counting the updates i after s from 1).
The schedule is a pure function of the optimizer's update count, so a resumed run continues it exactly.

State: the averaging base's (bertclf/variants/averaging.py) under `eval_weights/swa_`; swa_updates counts the
snapshots. TensorBoard: `swa_snapshots` (train).
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras

from bertclf import errors
from bertclf.swaps import registry
from bertclf.variants import averaging

START_FRACTION = 0.75  # --swa_start_fraction's default: the last quarter of the run

registry.variant_flag(
    "swa_start_fraction", START_FRACTION, "--weights_for_eval=swa: start averaging after this fraction of the "
    "run's steps (bertclf/variants/swa.py).", requires=("weights_for_eval", "swa"), check=lambda v: 0.0 <= v < 1.0,
    message="--swa_start_fraction must be in [0, 1).")
registry.variant_flag(
    "swa_start_step", None, "--weights_for_eval=swa: start averaging after this step (instead of "
    "--swa_start_fraction); 0: from the first step.", requires=("weights_for_eval", "swa"), kind="integer",
    check=lambda v: v is None or v >= 0, message="--swa_start_step must be >= 0.")
registry.variant_flag(
    "swa_every", 1, "--weights_for_eval=swa: steps between snapshots of the weights.",
    requires=("weights_for_eval", "swa"), check=lambda v: v >= 1, message="--swa_every must be >= 1.")
registry.variant_flag(
    "swa_schedule", "decay", "--weights_for_eval=swa: the learning rate once averaging starts: decay (the run's "
    "schedule), constant (--swa_learning_rate) or cyclic (from --learning_rate down to --swa_learning_rate in each "
    "--swa_every cycle).", requires=("weights_for_eval", "swa"), kind="enum",
    enum_values=["decay", "constant", "cyclic"])
registry.variant_flag(
    "swa_learning_rate", 0.0, "--swa_schedule=constant|cyclic: the SWA learning rate (the constant one, or the "
    "cycles' lowest).", requires=("swa_schedule", ("constant", "cyclic")), check=lambda v: v >= 0.0,
    message="--swa_learning_rate must be >= 0.")
registry.variant_rule(
    ["swa_schedule", "swa_learning_rate"], lambda d: d["swa_schedule"] == "decay" or d["swa_learning_rate"] > 0,
    "--swa_schedule=constant or cyclic needs its rate: give --swa_learning_rate (e.g. half of --learning_rate).")
registry.variant_rule(
    ["swa_start_step", "swa_start_fraction"],
    lambda d: d["swa_start_step"] is None or d["swa_start_fraction"] == START_FRACTION,
    "--swa_start_step and --swa_start_fraction both set the start of SWA: give one of them.")


class StochasticWeightAveraging(averaging.WeightAverage):
  """The --weights_for_eval=swa entry. Create it under the strategy's scope from the variables that train."""

  NAME = "swa"
  DESCRIPTION = "SWA average"
  SCALARS = ("swa_snapshots",)

  def __init__(self, model, variables, options):
    super().__init__(model, variables, options)
    self.start_step = options.get("swa_start_step")
    self.start_fraction = float(options.get("swa_start_fraction", START_FRACTION))
    self.every = int(options.get("swa_every", 1))
    self.schedule = options.get("swa_schedule", "decay")
    self.swa_learning_rate = float(options.get("swa_learning_rate", 0.0))
    self.start = self.start_step or 0  # until begin() knows the run's length

  def begin(self, total_steps):
    self.start = self.start_step if self.start_step is not None else int(self.start_fraction * total_steps)
    first = self.start + self.every
    if first > total_steps:
      given = (f"--swa_start_step={self.start_step}" if self.start_step is not None else
               f"--swa_start_fraction={self.start_fraction:g} (step {self.start})")
      raise errors.UserError(f"--weights_for_eval=swa: {given} and --swa_every={self.every} put the first snapshot "
                             f"at step {first}, after the run's last step {total_steps}: nothing would be averaged. "
                             "Start earlier or train longer.")

  def learning_rate(self, schedule, learning_rate):
    """The run's schedule with --swa_schedule's tail (call after begin()); learning_rate: --learning_rate."""
    if self.schedule == "decay":
      return schedule
    return SWALearningRate(schedule, self.start, self.swa_learning_rate, learning_rate,
                           self.every if self.schedule == "cyclic" else 0)

  def _update(self, strategy, step):
    step = tf.cast(step, tf.int64)
    take = tf.logical_and(step > self.start, tf.equal((step - self.start) % self.every, 0))

    def snapshot():
      n = self.updates.assign_add(1)
      beta = tf.cast(1.0 / tf.cast(n, tf.float64), tf.float32)  # β_n = 1/n: the equal-weight mean
      return self._fold(strategy, beta)

    return tf.cond(take, snapshot, tf.no_op)

  def scalars(self):
    return {"swa_snapshots": tf.cast(self.updates.read_value(), tf.float32)}


class SWALearningRate(tf_keras.optimizers.schedules.LearningRateSchedule):
  """`base` for the updates before `start`, then `swa_rate` (cycle 0) or, with cycle c, per cycle of c updates
  linearly from `peak` down to `swa_rate` (see the module docstring). Called with the update's index from 0, as
  optimizers call their schedule; update index u is step u + 1, so u >= start is a step after the start."""

  def __init__(self, base, start, swa_rate, peak, cycle=0):
    super().__init__()
    self.base, self.start, self.swa_rate, self.peak, self.cycle = base, start, swa_rate, peak, cycle

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    if self.cycle:  # t in (0, 1]: 1 for the update that ends a cycle, which a snapshot follows
      t = (tf.math.floormod(step - self.start, self.cycle) + 1.0) / self.cycle
      tail = (1.0 - t) * self.peak + t * self.swa_rate
    else:
      tail = tf.constant(self.swa_rate, tf.float32)
    before = self.base(step) if callable(self.base) else self.base
    return tf.where(step >= self.start, tail, tf.cast(before, tf.float32))

  def get_config(self):
    return {"start": self.start, "swa_rate": self.swa_rate, "peak": self.peak, "cycle": self.cycle}
