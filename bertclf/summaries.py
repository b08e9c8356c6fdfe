"""TensorBoard: scalar writers per subfolder, and the run's configuration as text and as HParams."""
import os

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp


def writer(model_dir, name):
  return tf.summary.create_file_writer(os.path.join(model_dir, name))


def write_scalars(summary_writer, step, scalars):
  with summary_writer.as_default(step=step):
    for name, value in scalars.items():
      tf.summary.scalar(name, value)
  summary_writer.flush()


def write_config(summary_writer, config, hparams):
  """The whole config as a markdown table (Text tab) and the chosen hparams (HParams tab)."""
  rows = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(config.items()))
  with summary_writer.as_default(step=0):
    tf.summary.text("config", "| key | value |\n|---|---|\n" + rows)
    hp.hparams({k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()})
  summary_writer.flush()
