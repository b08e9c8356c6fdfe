"""bertclf: fine-tune BERT-family encoders for text classification with an explicit TF2 loop.

Keras 2 (`tf_keras`) is the Keras of this codebase: tensorflow_hub and tf-models-official's optimizer are built
on it. This is the one place that choice is made; it must run before TensorFlow is first imported, so every
entry point imports `bertclf` first (`import bertclf` is enough).
"""
import os
import sys

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
  # TF reads the variable once, at import; too late to change it now, so say so instead of failing later.
  print("bertclf: TensorFlow was imported before bertclf; set TF_USE_LEGACY_KERAS=1 or import bertclf first.",
        file=sys.stderr)
os.environ["TF_USE_LEGACY_KERAS"] = "1"

# A readable console: TensorFlow's C++ INFO and WARNING lines (oneDNN notices, "rebuild TensorFlow" hints) would
# bury bertclf's own progress lines. Without an NVIDIA driver, TensorFlow's CUDA probe also logs "failed call to
# cuInit" at ERROR level on every start, so there only FATAL lines are kept; TensorFlow's errors still reach the
# user as Python exceptions. Set TF_CPP_MIN_LOG_LEVEL yourself to see everything (0).
_has_nvidia_driver = os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidia0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if _has_nvidia_driver else "3")

# One handler for Python log records: absl's (the format of train.py's and eval.py's lines). TensorFlow gives its
# 'tensorflow' logger a handler of its own when it is imported while the root logger has none, and absl.app.run
# adds absl's to the root later: every TensorFlow message was printed twice. With absl's in place first,
# TensorFlow adds none.
from absl import logging as _absl_logging  # pylint: disable=g-import-not-at-top,wrong-import-position

_absl_logging.use_absl_handler()
