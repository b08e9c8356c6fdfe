"""What the machine does fast, and the precision --dtype=auto picks from it.

`choose_dtype` is a pure function of a description of the devices (CPU feature flags, GPU compute capabilities),
so tests can hand it any machine; `cpu_flags` and `gpu_capabilities` read this one.
"""
import platform

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

# CPU features with native bf16 matrix math: AVX512_BF16 (dot products of bf16 pairs) and AMX (bf16 tiles).
# Without them TensorFlow emulates bf16 on the CPU, slower than fp32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Tensor cores: bf16 from compute capability 8.0 (A100, A10, L4, H100), fp16 only on 7.x (V100, T4).
BF16_GPU, FP16_GPU = (8, 0), (7, 0)


def cpu_flags(path="/proc/cpuinfo"):
  """The CPU's feature flags (frozenset of str) from the first `flags` line of /proc/cpuinfo; empty where there
  is no such file (macOS, Windows), which --dtype=auto reads as a CPU without bf16."""
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.split(":", 1)[1].split())
  except OSError:
    pass
  return frozenset()


def cpu_name(path="/proc/cpuinfo"):
  """The CPU's model name from /proc/cpuinfo; platform.processor() where there is no such file."""
  try:
    with open(path, encoding="utf-8") as f:
      return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    return platform.processor()


def gpu_capabilities(num_gpus=None):
  """[(major, minor)] compute capability of the first num_gpus visible GPUs (None: all); (0, 0) for a GPU whose
  capability TensorFlow does not report, which --dtype=auto then treats as an old one."""
  gpus = tf.config.list_physical_devices("GPU")[:num_gpus]
  return [tuple(tf.config.experimental.get_device_details(g).get("compute_capability") or (0, 0)) for g in gpus]


def choose_dtype(cpu_flags, gpu_capabilities, encoder_impl):  # pylint: disable=redefined-outer-name
  """--dtype=auto: (dtype, reason) for training on these devices with this --encoder_impl (hub or native).

  bf16 where the hardware does bf16 matrix math natively, fp16 (with loss scaling) on GPUs that have fp16 tensor
  cores only, fp32 elsewhere. The training runs on the GPUs when there are any, so their capability decides, the
  lowest of them: every replica runs the same policy. The Hub layer computes in float32 inside its SavedModel
  whatever the policy, so mixed precision would reach only the head there: fp32.
  """
  if encoder_impl == "hub":
    return "fp32", "the TF Hub encoder computes in float32 inside its SavedModel"
  if gpu_capabilities:
    major, minor = lowest = min(tuple(c) for c in gpu_capabilities)
    which = "GPU" if len(gpu_capabilities) == 1 else f"lowest of {len(gpu_capabilities)} GPUs"
    if lowest >= BF16_GPU:
      return "bf16", f"{which}: compute capability {major}.{minor}, bf16 tensor cores"
    if lowest >= FP16_GPU:
      return "fp16", f"{which}: compute capability {major}.{minor}, fp16 tensor cores but no bf16"
    return "fp32", f"{which}: compute capability {major}.{minor}, no fp16/bf16 tensor cores"
  found = [name for name in BF16_CPU_FLAGS if name in cpu_flags]
  if found:
    return "bf16", f"CPU has {found[0]}"
  return "fp32", "CPU without avx512_bf16 or amx_bf16: bf16 would be emulated"


def onednn_enabled():
  """Whether TensorFlow runs its CPU kernels through oneDNN in this process (TF_ENABLE_ONEDNN_OPTS, on by default on
  x86 Linux builds); False where the build does not say."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return False


def choose_inter_op_threads(requested, num_gpus, onednn):
  """--inter_op_threads: (threads, reason), threads = how many ops TensorFlow runs at once (0: its own choice).

  A CPU-only run with oneDNN on runs one op at a time. TensorFlow 2.20 (oneDNN v3.7) can crash when two oneDNN
  matmuls (attention's einsums) run at once on AVX-512 CPUs without AMX: both crashes caught under a guard
  allocator had two einsum matmuls in flight in the shared intra-op pool, and oneDNN's copy kernel storing one
  block past a live scratch block (docs/TRAINING.md "Native crashes"). With one op at a time, each matmul still uses
  every intra-op thread; on GPUs (the kernels are not oneDNN's) or with oneDNN off, TensorFlow chooses.
  requested: the flag's value (None: choose); num_gpus: GPUs the run trains on; onednn: onednn_enabled().
  """
  if requested is not None:
    return requested, "--inter_op_threads"
  if num_gpus:
    return 0, "GPU run"
  if not onednn:
    return 0, "oneDNN is off (TF_ENABLE_ONEDNN_OPTS=0, or a build without it)"
  return 1, "CPU run with oneDNN: two oneDNN matmuls at once can crash (docs/TRAINING.md, Native crashes)"
