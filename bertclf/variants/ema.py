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
whose `model/` then holds the average and not the trained weights. The swap, the checkpoint and eval.py's reads
are the averaging base's (bertclf/variants/averaging.py); this module is the decay.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf.swaps import registry
from bertclf.variants import averaging

registry.variant_flag(
    "ema_decay", 0.999, "--weights_for_eval=ema: decay d of the bias-corrected moving average of the weights "
    "(bertclf/variants/ema.py); it spans about 1/(1-d) steps.", requires=("weights_for_eval", "ema"),
    check=lambda v: 0.0 <= v < 1.0, message="--ema_decay must be in [0, 1).")

PREFIX = "eval_weights/ema_"  # checkpoint keys of the state
variable_key = averaging.variable_key


class ExponentialMovingAverage(averaging.WeightAverage):
  """The --weights_for_eval=ema entry. Create it under the strategy's scope; `variables` are the ones that train
  (frozen ones keep their values, so their average would be themselves)."""

  NAME = "ema"
  DESCRIPTION = "moving average"

  def __init__(self, model, variables, options):
    super().__init__(model, variables, options)
    self.decay = float(options.get("ema_decay", 0.999))

  def _update(self, strategy, step):
    del step  # every step counts, skipped fp16 updates too: the count is the average's own
    n = self.updates.assign_add(1)
    # β_n in float64: 1 - d^n has few significant bits in float32 when d is close to 1.
    d = tf.constant(self.decay, tf.float64)
    beta = tf.cast((1.0 - d) / (1.0 - tf.pow(d, tf.cast(n, tf.float64))), tf.float32)
    return self._fold(strategy, beta)


holds_state = ExponentialMovingAverage.holds_state
load_into_model = ExponentialMovingAverage.load_into_model
average_in_model = ExponentialMovingAverage.average_in_model
