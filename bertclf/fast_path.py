"""The 'auto' values of --encoder_impl, --dtype and --bucket_boundaries (their defaults), resolved once at start-up.

auto takes the fast path where it is safe: the native encoder when the SavedModel is a BERT encoder it can
rebuild (bertclf/native.py), bf16 or fp16 where the hardware does that math natively (bertclf/hardware.py), and
length buckets when they pad markedly less (flags.resolve_bucket_boundaries). A value given on the command line
wins. The resolved values go into the run's config.json, and a resumed run (or eval.py) takes them from there
rather than resolving again: on another machine, auto could choose differently, and the log says when it would.
"""
import dataclasses

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import flags

from bertclf import distribute
from bertclf import encoders
from bertclf import hardware

FLAGS = flags.FLAGS

AUTO_FLAGS = ("encoder_impl", "dtype", "bucket_boundaries")


def requested(saved):
  """{flag: (value, where it comes from)} for AUTO_FLAGS: the command line (or a flagfile) wins, then the run's
  config.json (a resumed run keeps what it resolved), then the flag's default (auto)."""
  out = {}
  for name in AUTO_FLAGS:
    if FLAGS[name].present or not saved or name not in saved:
      out[name] = (FLAGS[name].value, f"--{name}" if FLAGS[name].present else "auto")
    elif name == "bucket_boundaries" and saved[name] == ["auto"] and saved.get("train_bucket_lengths"):
      # A config.json that holds 'auto' itself: its run trained with the lengths it recorded (the last is T).
      out[name] = ([str(b) for b in saved["train_bucket_lengths"][:-1]], "config.json")
    else:
      out[name] = (saved[name], "config.json")
  return out


def devices(num_gpus=None, num_cpu_devices=1):
  """(CPU flags, GPU compute capabilities) of the devices the strategy trains on: no GPU when --num_gpus=0 or
  --num_cpu_devices splits the CPU, else the first --num_gpus visible ones (default all)."""
  gpus = [] if num_gpus == 0 or num_cpu_devices > 1 else hardware.gpu_capabilities(num_gpus)
  return hardware.cpu_flags(), gpus


@dataclasses.dataclass
class Resolved:
  """What --encoder_impl and --dtype came to, and why ({flag: reason})."""
  encoder_impl: str
  dtype: str
  reasons: dict


def load_encoder(handles, impl, dtype, machine, trainable=True, cls_only=False):
  """(encoder layer, Resolved): the encoder built for --encoder_impl, under the Keras policy of --dtype, which
  this sets (the head and optimizer are built after it under the same policy).

  impl, dtype: flag values, either may be 'auto'; machine: devices(). The precision depends on the implementation
  (the Hub layer gains nothing from mixed precision) and the native encoder must be built under its final policy,
  so the native encoder is tried under the dtype it would get; only when it cannot be rebuilt does the policy
  change, before the Hub layer is built. Nothing is built twice.
  """
  def precision(built):
    return (dtype, "given") if dtype != "auto" else hardware.choose_dtype(*machine, built)

  if impl != "hub":
    native_dtype, dtype_reason = precision("native")
    distribute.set_precision(native_dtype)
    encoder, why_not = encoders.load_native_encoder(handles, trainable, cls_only, required=impl == "native")
    if encoder is not None:
      return encoder, Resolved("native", native_dtype, {"encoder_impl": "BertEncoder rebuilt with the "
                                                        "SavedModel's weights", "dtype": dtype_reason})
    if impl == "native":
      encoders.warn_native_fallback(handles, why_not)
    impl_reason = f"{'fell back' if impl == 'native' else 'not rebuilt natively'}: {handles.encoder} {why_not}"
  else:
    impl_reason = "given"
  hub_dtype, dtype_reason = precision("hub")
  distribute.set_precision(hub_dtype)
  return encoders.load_hub_encoder(handles, trainable), Resolved("hub", hub_dtype, {"encoder_impl": impl_reason,
                                                                                     "dtype": dtype_reason})


def notes(resolved, bucket_reason, sources, saved):
  """{flag: why it has its value}, for config.json and the log line. sources: {flag: where its value came from},
  as requested() gives; a value from config.json keeps the reason recorded there, so a resumed run's record
  (history.jsonl) shows no change."""
  reasons = {"encoder_impl": resolved.reasons["encoder_impl"], "dtype": resolved.reasons["dtype"],
             "bucket_boundaries": bucket_reason}
  out = {}
  for name, reason in reasons.items():
    if sources[name] == "config.json":
      out[name] = (saved.get("fast_path") or {}).get(name, "from the run's config.json")
    elif sources[name] == "auto":
      out[name] = reason
    else:
      out[name] = sources[name] + ("" if reason == "given" else f"; {reason}")
  return out


def summary(resolved, buckets, why, sources, machine):
  """The one log line of the resolved choices, e.g. "fast path: encoder native (BertEncoder rebuilt ...), dtype bf16
  (CPU has amx_bf16), buckets 16 lengths (mean padded 35 of 64)". why: notes(); sources, machine: as requested()
  and devices() give. A value from config.json says so, and for the dtype, what this machine would choose
  instead if that differs."""
  def note(name):
    return f"from the run's config.json: {why[name]}" if sources[name] == "config.json" else why[name]

  dtype_note = note("dtype")
  if sources["dtype"] == "config.json":
    here, reason = hardware.choose_dtype(*machine, resolved.encoder_impl)
    if here != resolved.dtype:
      dtype_note += f"; this machine alone would choose {here}: {reason}"
  bucket_text = f"buckets {len(buckets) + 1} lengths" if buckets else "no buckets"
  return (f"fast path: encoder {resolved.encoder_impl} ({note('encoder_impl')}), dtype {resolved.dtype} "
          f"({dtype_note}), {bucket_text} ({note('bucket_boundaries')})")
