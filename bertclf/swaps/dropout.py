"""Where dropout's random numbers come from (--dropout_masks). A swap point.

Keras's Dropout (tf.nn.dropout) draws one uniform float per element, each from one 32-bit Philox output, then
compares, scales and selects; that was 30% of a bf16 forward + backward of MiniLM at 32 tokens on 2 CPU cores
(docs/BENCHMARKS.md, section 2b). "16bit" draws the same Bernoulli masks from half the random numbers: each 32-bit
output gives two elements a 16-bit uniform integer u, and an element is kept where u >= round(rate * 65536). So the
drop probability is round(rate * 2^16) / 2^16 (0.1 → 0.100006), and kept elements are scaled by the inverse of the
keep probability in the compute dtype, as Keras does. (Under bf16, Keras's own masks compare bf16 uniforms, which
have 7 mantissa bits, with the rate: 0.1 becomes 13/128 = 0.1016.)

MASKS maps --dropout_masks to `fn(model) -> number of Dropout layers it changed`. It reaches Keras Dropout
layers (the native encoder's and the head's); a TF Hub SavedModel's dropout is inside its graph and stays as is.
"""
import numbers

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras
from tf_keras.src import backend  # RandomGenerator is not exported; Dropout layers call its .dropout()


class SixteenBitMasks(backend.RandomGenerator):
  """A Keras Dropout layer's random source (layer._random_generator) that draws 16 bits per element."""

  def __init__(self):
    super().__init__(seed=None, rng_type=self.RNG_LEGACY_STATEFUL)

  def dropout(self, inputs, rate, noise_shape=None):
    if noise_shape is not None or not isinstance(rate, numbers.Real):  # not used by official's layers
      return super().dropout(inputs, rate, noise_shape)
    threshold = min(round(rate * 65536), 65535)
    keep_scale = 65536.0 / (65536 - threshold)  # 1 / P(keep)
    n = tf.size(inputs)
    # A fresh seed each call from a stateful op (as tf.nn.dropout's own draw; follows tf.random.set_seed).
    seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64, seed=self.make_legacy_seed())
    bits = tf.random.stateless_uniform([(n + 1) // 2], seed, minval=None, maxval=None, dtype=tf.uint32)
    bits = tf.reshape(tf.bitcast(bits, tf.uint16), [-1])  # [2 * ceil(N / 2)]: two 16-bit draws per output
    if not (inputs.shape.is_fully_defined() and inputs.shape.num_elements() % 2 == 0):
      bits = bits[:n]  # [N]
    keep = tf.reshape(bits, tf.shape(inputs)) >= threshold
    mask = tf.where(keep, tf.constant(keep_scale, inputs.dtype), tf.constant(0, inputs.dtype))  # like inputs
    return inputs * mask  # the gradient is mask * upstream: the same mask, nothing else kept


def use_16bit_masks(model):
  """Gives every Keras Dropout layer inside `model` SixteenBitMasks; returns how many it changed."""
  layers = [m for m in model.submodules if isinstance(m, tf_keras.layers.Dropout)]
  for layer in layers:
    # Set past Keras's attribute tracking, as BaseRandomLayer sets the original: the generator holds no state
    # and stays out of checkpoints, so checkpoints are the same with either setting.
    object.__setattr__(layer, "_random_generator", SixteenBitMasks())
  return len(layers)


MASKS = {
    "keras": lambda model: 0,  # Keras's own: one 32-bit uniform float per element
    "16bit": use_16bit_masks,
}
