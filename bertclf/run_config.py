"""What a run used, written into its model dir, and the check that a resumed run uses the same model.

`<model_dir>/config.json` holds the flags, the resolved handles, the classes and the replica count, so a run can
be repeated (or evaluated) from its own folder.
"""
import json
import os

import tensorflow as tf

from bertclf import errors

CONFIG_FILE = "config.json"
# Changing any of these makes the saved weights meaningless or unloadable for the new run.
MUST_MATCH = ("encoder_handle", "encoder_impl", "class_names", "seq_length", "head", "loss")


def read(model_dir):
  return read_json(os.path.join(model_dir, CONFIG_FILE))


def read_json(path):
  """A JSON file of the model dir, or None when there is none."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def check_compatible(saved, config, what):
  """Raises ValueError listing every MUST_MATCH key where `saved` and `config` differ."""
  diffs = [f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}" for k in MUST_MATCH
           if k in saved and saved.get(k) != config.get(k)]
  if diffs:
    raise errors.UserError(f"{what} was written by a run with a different model ({'; '.join(diffs)}). Use a "
                           "new --model_dir, or pass the flags that run used (see its config.json).")


def write(model_dir, config):
  write_atomically(os.path.join(model_dir, CONFIG_FILE), json.dumps(config, indent=2, sort_keys=True, default=str))


def write_atomically(path, text):
  """Writes a file of the model dir so that a kill at any moment leaves the old file or the new one, never half
  of one: a temporary file, then a rename over the old."""
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path + ".tmp", "w") as f:
    f.write(text)
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
