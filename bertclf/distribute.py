"""The tf.distribute strategy, from flags, through tf-models-official's `distribute_utils`.

One addition: `--num_cpu_devices=N` splits the host CPU into N logical devices and mirrors over them, so the
multi-replica code path (per-replica batches, all-reduce, global-batch loss averaging) runs on a laptop.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf
import tf_keras

from bertclf import errors
from bertclf import hardware

from official.common import distribute_utils

POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def split_cpu(num_devices):
  """Splits the physical CPU into `num_devices` logical devices. Must run before TensorFlow initializes."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current and len(current) == num_devices:
    return
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def set_inter_op_threads(requested, num_gpus):
  """Sets how many ops TensorFlow runs at once (hardware.choose_inter_op_threads), before TensorFlow initializes.
  Where it already has (a second run in one process), it keeps what it has and says so."""
  threads, reason = hardware.choose_inter_op_threads(requested, num_gpus, hardware.onednn_enabled())
  if tf.config.threading.get_inter_op_parallelism_threads() != threads:
    try:
      tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow is initialized: its pools exist
      logging.warning("Inter-op threads stay %d (TensorFlow is already initialized), not %d (%s).",
                      tf.config.threading.get_inter_op_parallelism_threads(), threads, reason)
      return
  logging.info("Inter-op threads: %s (%s).", threads or "TensorFlow's choice", reason)


def get_strategy(name, num_gpus=None, num_cpu_devices=1, inter_op_threads=None):
  """Returns the strategy. name: default | one_device | mirrored | multi_worker_mirrored.
  inter_op_threads: --inter_op_threads (None: set_inter_op_threads chooses)."""
  visible = len(tf.config.list_physical_devices("GPU"))
  if num_gpus is None:
    num_gpus = visible
  set_inter_op_threads(inter_op_threads, min(num_gpus, visible))
  if num_cpu_devices > 1:
    if name not in ("mirrored", "multi_worker_mirrored"):
      raise errors.UserError(f"--num_cpu_devices={num_cpu_devices} needs --strategy=mirrored (got {name}).")
    split_cpu(num_cpu_devices)
    if name == "mirrored":
      devices = [f"/cpu:{i}" for i in range(num_cpu_devices)]
      return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  strategy = distribute_utils.get_distribution_strategy(
      distribution_strategy={"default": "off"}.get(name, name), num_gpus=num_gpus)
  logging.info("Strategy %s with %d replica(s).", type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def set_precision(dtype):
  """Sets the global Keras mixed-precision policy for --dtype (before the model is built)."""
  tf_keras.mixed_precision.set_global_policy(POLICIES[dtype])


def fixed_rows(grads, length, seq_length):
  """Embedding-gradient slices padded to the row count of a full-length batch, so that a bucketed run's all-reduce
  moves the same shapes every step. Dense gradients pass through.

  An embedding table's gradient is IndexedSlices with one row per looked-up token: [k * b * length, H] for a
  [b, length] batch (k forward passes: FGM, R-Drop, SAM). Across workers, MultiWorkerMirroredStrategy all-gathers
  those rows with collectives compiled once into the training loop, and TensorFlow's collectives refuse a shape that
  differs from the one an instance first ran with ("Shape mismatch in the collective instance"). Padded to
  k * b * seq_length rows (zero rows at index 0: adding zero changes nothing), every step has the shapes of an
  unbucketed step, and the all-gather stays sparse (only looked-up rows cross the network).
  length: this step's padded length (scalar int32); seq_length: --seq_length (the longest bucket).
  """
  def pad(g):
    if not isinstance(g, tf.IndexedSlices):
      return g
    n = tf.shape(g.indices)[0]
    rows = (n + length - 1) // length * seq_length  # k * b * seq_length for n = k * b * length
    extra = rows - n
    values = tf.pad(g.values, tf.stack([[0, extra]] + [[0, 0]] * (g.values.shape.rank - 1)))
    indices = tf.pad(g.indices, [[0, extra]])  # index 0 with a zero row: a no-op when summed
    return tf.IndexedSlices(values, indices, g.dense_shape)
  return [pad(g) for g in grads]
