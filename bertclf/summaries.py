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


def read_scalars(logdir):
  """{tag: [(step, value), ...]} of every scalar in the event files of one folder, sorted by step."""
  out = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "scalars" or value.HasField("simple_value"):
          number = value.simple_value if value.HasField("simple_value") else tf.make_ndarray(value.tensor)
          out.setdefault(value.tag, []).append((event.step, float(number)))
  return {tag: sorted(points) for tag, points in out.items()}


def read_tags(logdir):
  """Every summary tag (scalars, text, hparams) in the event files of one folder."""
  return {value.tag for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))
          for event in tf.compat.v1.train.summary_iterator(path) for value in event.summary.value}
