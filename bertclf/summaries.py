"""TensorBoard: scalar writers per subfolder, and the run's configuration as text and as HParams."""
import os

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
from tensorflow.core.util import event_pb2
from tensorboard.plugins.hparams import api as hp


class Writer:
  """A scalar writer for one folder. With skip_written, points at or before the last step already in the
  folder are not written again: a run resumed from an earlier checkpoint redraws the same values for those
  steps, and TensorBoard then shows one value per step."""

  def __init__(self, logdir, skip_written=False):
    self.tf_writer = tf.summary.create_file_writer(logdir)
    self.written_up_to = -1
    if skip_written:
      self.written_up_to = max((s for points in read_scalars(logdir).values() for s, _ in points), default=-1)

  def close(self):
    self.tf_writer.close()


def writer(model_dir, name, skip_written=False):
  return Writer(os.path.join(model_dir, name), skip_written)


def write_scalars(summary_writer, step, scalars):
  if step <= summary_writer.written_up_to:
    return
  with summary_writer.tf_writer.as_default(step=step):
    for name, value in scalars.items():
      tf.summary.scalar(name, value)
  summary_writer.tf_writer.flush()


def write_config(summary_writer, config, hparams):
  """The whole config as a markdown table (Text tab) and the chosen hparams (HParams tab)."""
  rows = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(config.items()))
  with summary_writer.tf_writer.as_default(step=0):
    tf.summary.text("config", "| key | value |\n|---|---|\n" + rows)
    hp.hparams({k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in hparams.items()})
  summary_writer.tf_writer.flush()


def _events(logdir):
  """Every Event in the event files of one folder (read with tf.data, which prints no deprecation warning)."""
  for path in sorted(tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    try:
      for record in tf.data.TFRecordDataset(path):
        yield event_pb2.Event.FromString(record.numpy())
    except tf.errors.DataLossError:  # a last record cut short by a kill during a write; TensorBoard skips it too
      continue


def read_scalars(logdir):
  """{tag: [(step, value), ...]} of every scalar in the event files of one folder, sorted by step."""
  out = {}
  for event in _events(logdir):
    for value in event.summary.value:
      if value.metadata.plugin_data.plugin_name == "scalars" or value.HasField("simple_value"):
        number = value.simple_value if value.HasField("simple_value") else tf.make_ndarray(value.tensor)
        out.setdefault(value.tag, []).append((event.step, float(number)))
  return {tag: sorted(points) for tag, points in out.items()}


def read_tags(logdir):
  """Every summary tag (scalars, text, hparams) in the event files of one folder."""
  return {value.tag for event in _events(logdir) for value in event.summary.value}
