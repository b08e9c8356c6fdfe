"""The tf.distribute strategy, from flags, through tf-models-official's `distribute_utils`.

One addition: `--num_cpu_devices=N` splits the host CPU into N logical devices and mirrors over them, so the
multi-replica code path (per-replica batches, all-reduce, global-batch loss averaging) runs on a laptop.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf
import tf_keras

from bertclf import errors

from official.common import distribute_utils

POLICIES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def split_cpu(num_devices):
  """Splits the physical CPU into `num_devices` logical devices. Must run before TensorFlow initializes."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current and len(current) == num_devices:
    return
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)


def get_strategy(name, num_gpus=None, num_cpu_devices=1):
  """Returns the strategy. name: default | one_device | mirrored | multi_worker_mirrored."""
  if num_cpu_devices > 1:
    if name not in ("mirrored", "multi_worker_mirrored"):
      raise errors.UserError(f"--num_cpu_devices={num_cpu_devices} needs --strategy=mirrored (got {name}).")
    split_cpu(num_cpu_devices)
    if name == "mirrored":
      devices = [f"/cpu:{i}" for i in range(num_cpu_devices)]
      return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  if num_gpus is None:
    num_gpus = len(tf.config.list_physical_devices("GPU"))
  strategy = distribute_utils.get_distribution_strategy(
      distribution_strategy={"default": "off"}.get(name, name), num_gpus=num_gpus)
  logging.info("Strategy %s with %d replica(s).", type(strategy).__name__, strategy.num_replicas_in_sync)
  return strategy


def set_precision(dtype):
  """Sets the global Keras mixed-precision policy for --dtype (before the model is built)."""
  tf_keras.mixed_precision.set_global_policy(POLICIES[dtype])
