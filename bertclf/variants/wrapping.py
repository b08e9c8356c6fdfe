"""The base of --optimizer_wrapper entries: an optimizer that wraps another and takes its step count and rate."""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from tf_keras.src.optimizers.legacy import optimizer_v2


class Wrapper(optimizer_v2.OptimizerV2):
  """OptimizerV2 around `self._optimizer` (set by the subclass): `iterations` and `learning_rate` are the inner
  optimizer's, so the schedule, the step count in checkpoints and train.py's logged rate stay those of the
  optimizer being wrapped, however many wrappers sit around it."""

  @property
  def inner_optimizer(self):
    return self._optimizer

  @property
  def iterations(self):
    return self._optimizer.iterations

  @iterations.setter
  def iterations(self, variable):
    self._optimizer.iterations = variable

  @property
  def learning_rate(self):
    return self._optimizer.learning_rate
