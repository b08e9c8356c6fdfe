"""Where dropout's random numbers come from (--dropout_masks). A swap point.

During training every mask is a pure function of (--seed, step, layer, call, the example's row in the GLOBAL
batch, the element's position), like the data order. So:
  * replicas never share masks: replica r's examples sit at rows r·B .. (r+1)·B-1 of the global batch;
  * a resumed run draws exactly the masks the uninterrupted run drew (nothing random is carried in state);
  * an example's mask does not depend on how the global batch is split over replicas or micro-batches
    (--grad_accum_steps), so 1 and 2 replicas give the same update up to the order of float additions.
How: one counter-based Philox stream per (seed, step, layer, call); element e of global row g takes the random
bits at position g·(elements per example) + e of that stream, and a replica draws only its own rows' slice
(the Philox counter is moved to the slice's start), so it costs what a plain draw of its own batch costs.
train.py sets (seed, step, first row) around each replica's step with `masks_for_step`; outside it (a model
called directly with training=True) every call draws fresh masks from a stateful seed.

"16bit" (default) gives two elements a 16-bit uniform integer u from each 32-bit Philox output and keeps an
element where u >= round(rate * 65536): drop probability round(rate * 2^16) / 2^16 (0.1 → 0.100006), half the
random numbers of "32bit" (one 32-bit u per element, kept where u >= round(rate * 2^32)). With Keras's masks,
dropout is 30% of a bf16 forward + backward of MiniLM at 32 tokens on a 2-core Intel Xeon; 16-bit draws make a
whole step 1.05-1.11x faster, same accuracy over 5 seeds (docs/BENCHMARKS.md). Kept elements are scaled by
1/P(keep) in the compute dtype, as Keras does. "keras" leaves Keras's own stateful masks (one float uniform per
element; under bf16 they have 7 mantissa bits, so 0.1 becomes 13/128): kept for speed comparisons only, since its
replicas draw the same masks and a resume does not redraw the same ones.

MASKS maps --dropout_masks to `fn(model) -> number of Dropout layers it changed`. It reaches Keras Dropout
layers (the native encoder's and the head's); a TF Hub SavedModel's dropout is inside its graph and stays as is
(docs/TRAINING.md says what holds for it).
"""
import contextlib
import dataclasses
import numbers
import threading

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras
from tf_keras.src import backend  # RandomGenerator is not exported; Dropout layers call its .dropout()

_PHILOX = 1  # Philox4x32-10: 4 uint32 per counter value, the same numbers on CPU and GPU


@dataclasses.dataclass
class _Step:
  seed: tf.Tensor          # [2] int64: (--seed, step) folded with any recovery count
  first_row: tf.Tensor     # int64: this call's first example, as a row of the global batch
  calls: dict = dataclasses.field(default_factory=dict)  # layer id → masks drawn so far in this trace


_local = threading.local()  # MirroredStrategy traces each replica's step in its own thread


def _current():
  stack = getattr(_local, "stack", None)
  return stack[-1] if stack else None


@contextlib.contextmanager
def masks_for_step(seed, first_row):
  """Dropout layers called inside draw the masks of (seed, layer, call, global row, element).

  seed: [2] int64 for this step (`step_seed`); first_row: the global-batch row of the first example the model
  is called on. Enter it inside the traced per-replica step: call numbers count masks drawn in this trace, so a
  variant that runs the model twice (R-Drop, FGM) gets two independent masks per layer.
  """
  stack = _local.__dict__.setdefault("stack", [])
  stack.append(_Step(tf.cast(seed, tf.int64), tf.cast(first_row, tf.int64)))
  try:
    yield
  finally:
    stack.pop()


@contextlib.contextmanager
def rows_later(rows):
  """Inside: the model is called on examples `rows` further into the global batch (e.g. micro-batch i of
  --grad_accum_steps starts i·B/k rows after its replica's first row). No-op outside `masks_for_step`."""
  step = _current()
  if step is None:
    yield
    return
  saved = step.first_row
  step.first_row = saved + tf.cast(rows, tf.int64)
  try:
    yield
  finally:
    step.first_row = saved


def replica_first_row(per_replica_batch):
  """This replica's first example as a row of the global batch: replica r holds rows r·B .. (r+1)·B-1
  (bertclf/pipeline.py splits every global batch that way, across workers too)."""
  replica = tf.distribute.get_replica_context().replica_id_in_sync_group
  return tf.cast(replica, tf.int64) * tf.cast(per_replica_batch, tf.int64)


def step_seed(seed, step, recoveries=0):
  """[2] int64 seed of one training step's masks: a pure function of (--seed, step, recoveries)."""
  base = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
  return tf.random.experimental.stateless_fold_in(base, tf.cast(recoveries, tf.int64))


class StatelessMasks(backend.RandomGenerator):
  """A Keras Dropout layer's random source (layer._random_generator): `bits` random bits per element, drawn as
  described in the module docstring."""

  def __init__(self, layer_id, bits=16):
    super().__init__(seed=None, rng_type=self.RNG_LEGACY_STATEFUL)
    self.layer_id = layer_id
    self.bits = bits

  def dropout(self, inputs, rate, noise_shape=None):
    if noise_shape is not None or not isinstance(rate, numbers.Real):  # not used by official's layers
      return super().dropout(inputs, rate, noise_shape)
    levels = 1 << self.bits
    threshold = min(round(rate * levels), levels - 1)
    keep_scale = levels / (levels - threshold)  # 1 / P(keep)
    u = self._uniform_ints(inputs)  # [N] uint16 or uint32, N = inputs' size
    keep = tf.reshape(u, tf.shape(inputs)) >= tf.constant(threshold, u.dtype)
    mask = tf.where(keep, tf.constant(keep_scale, inputs.dtype), tf.constant(0, inputs.dtype))  # like inputs
    return inputs * mask  # the gradient is mask * upstream: the same mask, nothing else kept

  def _uniform_ints(self, inputs):
    """[N] uniform integers of `bits` bits for inputs' N elements, row-major."""
    n = tf.size(inputs, out_type=tf.int64)
    step = _current()
    if step is None:  # outside training's step: fresh masks each call, from a stateful op
      seed = tf.random.uniform([2], maxval=tf.int64.max, dtype=tf.int64, seed=self.make_legacy_seed())
      start = tf.constant(0, tf.int64)
    else:
      call = step.calls.get(self.layer_id, 0)
      step.calls[self.layer_id] = call + 1
      seed = tf.random.experimental.stateless_fold_in(
          tf.random.experimental.stateless_fold_in(step.seed, self.layer_id), call)
      per_row = n // tf.cast(tf.maximum(tf.shape(inputs, out_type=tf.int64)[0], 1), tf.int64)
      start = step.first_row * per_row  # this call's first element in the global batch's stream
    per_word = 32 // self.bits  # draws per uint32
    first_counter = start // (4 * per_word)  # Philox gives 4 uint32 per counter value
    skip = start - first_counter * 4 * per_word  # draws before ours in that first block
    words = (skip + n + per_word - 1) // per_word
    key, _ = tf.raw_ops.StatelessRandomGetKeyCounter(seed=seed)  # the stream: a function of the seed alone
    counter = tf.cast(tf.stack([first_counter, tf.constant(0, tf.int64)]), tf.uint64)
    u = tf.raw_ops.StatelessRandomUniformFullIntV2(shape=tf.reshape(words, [1]), key=key, counter=counter,
                                                   alg=_PHILOX, dtype=tf.uint32)  # [words]
    if self.bits == 16:
      u = tf.reshape(tf.bitcast(u, tf.uint16), [-1])  # [2 * words]: two draws per uint32
    return u[skip:skip + n]  # [N]


def use_stateless_masks(model, bits):
  """Gives every Keras Dropout layer inside `model` StatelessMasks; returns how many it changed."""
  layers = [m for m in model.submodules if isinstance(m, tf_keras.layers.Dropout)]
  for layer_id, layer in enumerate(layers):  # the model's layer order: the same in every run of the model
    # Set past Keras's attribute tracking, as BaseRandomLayer sets the original: the generator holds no state
    # and stays out of checkpoints, so checkpoints are the same with any setting.
    object.__setattr__(layer, "_random_generator", StatelessMasks(layer_id, bits))
  return len(layers)


MASKS = {
    "16bit": lambda model: use_stateless_masks(model, 16),
    "32bit": lambda model: use_stateless_masks(model, 32),
    "keras": lambda model: 0,  # Keras's own stateful masks: speed comparisons only (see above)
}
