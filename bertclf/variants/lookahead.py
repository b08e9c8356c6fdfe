"""Lookahead (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS):
--optimizer_wrapper=lookahead --lookahead_steps=k --lookahead_alpha=α, around any --optimizer entry.

The --optimizer entry moves the weights (the "fast" weights) as usual; every k of its updates the slow weights
φ (a copy of the weights when training starts) move α of the way to them, and the fast weights restart there:
  φ ← φ + α·(w − φ);  w ← φ.
So after k updates from w_0 the weights are w_0 + α·(w_k − w_0), where w_k is where the plain optimizer got.

Order with fp16: LossScaleOptimizer(Lookahead(optimizer)). The loss-scale wrapper stays outermost, so
train.py's fp16 code (`ctx.scaled`, `optimizer.loss_scale`) is unchanged; an update it skips for non-finite
gradients never reaches Lookahead, so k counts the updates made (the wrapper keeps its own count; the
optimizer's `iterations` also counts skipped steps). `apply_gradients` takes and passes on
`experimental_aggregate_gradients` (train.py all-reduces once, itself, and passes False).
Replicas: the sync runs in cross-replica context, each device's copy from the same device's values.
State: the slow weights are this optimizer's slots ("slow") and its update count is a weight: both in the
checkpoint under the optimizer; the wrapped optimizer's state sits below it.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf.swaps import registry
from bertclf.variants import wrapping

registry.variant_flag(
    "lookahead_steps", 5, "--optimizer_wrapper=lookahead: k, updates between slow-weight steps (Zhang et al. 2019; "
    "bertclf/variants/lookahead.py).", requires=("optimizer_wrapper", "lookahead"), check=lambda v: v >= 1,
    message="--lookahead_steps must be >= 1.")
registry.variant_flag(
    "lookahead_alpha", 0.5, "--optimizer_wrapper=lookahead: alpha, the slow weights' step toward the fast ones.",
    requires=("optimizer_wrapper", "lookahead"), check=lambda v: 0.0 < v <= 1.0,
    message="--lookahead_alpha must be in (0, 1].")


class Lookahead(wrapping.Wrapper):
  """Wraps a Keras (legacy) optimizer; the learning rate and `iterations` are the wrapped optimizer's."""

  _HAS_AGGREGATE_GRAD = True

  def __init__(self, optimizer, sync_period=5, slow_step_size=0.5, name="Lookahead"):
    super().__init__(name)
    self._optimizer = optimizer
    self._track_trackable(optimizer, "inner_optimizer")
    self.sync_period, self.slow_step_size = int(sync_period), float(slow_step_size)
    self.updates = self.add_weight("lookahead_updates", shape=[], dtype=tf.int64, initializer="zeros",
                                   trainable=False, aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

  def _create_slots(self, var_list):
    for var in var_list:  # φ starts at the weights as they are before the first update
      self.add_slot(var, "slow", initializer=lambda shape, dtype, var=var: tf.identity(var.read_value()))

  def _create_all_weights(self, var_list):
    self._optimizer._create_all_weights(var_list)  # pylint: disable=protected-access
    self._create_slots(var_list)

  def apply_gradients(self, grads_and_vars, name=None, experimental_aggregate_gradients=True):
    """The wrapped optimizer's update, then (every k-th time) the slow-weight step. Replica context."""
    grads_and_vars = list(grads_and_vars)
    variables = [v for _, v in grads_and_vars]
    with tf.init_scope():
      self._create_slots(variables)
    update = self._optimizer.apply_gradients(grads_and_vars, name=name,
                                             experimental_aggregate_gradients=experimental_aggregate_gradients)
    with tf.control_dependencies([update]):
      # The variables in a closure, not as merge_call arguments: those would be regrouped per replica.
      return tf.distribute.get_replica_context().merge_call(lambda strategy: self._sync(strategy, variables))

  def _sync(self, strategy, variables):
    n = self.updates.assign_add(1)

    def step_back():
      def fn(w, slow):  # one device's copies
        new = slow + tf.cast(self.slow_step_size, slow.dtype) * (w - slow)
        return tf.group(slow.assign(new), w.assign(new))
      return tf.group([strategy.extended.update(v, fn, args=(self.get_slot(v, "slow"),), group=True)
                       for v in variables])

    return tf.cond(tf.equal(n % self.sync_period, 0), step_back, tf.no_op)

  def get_config(self):
    return {"name": self._name, "sync_period": self.sync_period, "slow_step_size": self.slow_step_size}


def wrap(optimizer, options, model=None):
  """The --optimizer_wrapper=lookahead entry."""
  del model
  return Lookahead(optimizer, options.get("lookahead_steps", 5), options.get("lookahead_alpha", 0.5))
