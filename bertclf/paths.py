"""Checks of path flags before anything slow runs, each error naming the flag and the fix.

Without them a model dir that is a file, on a read-only or full disk, or an unwritable --predict_output is
found by TensorFlow minutes later (after the encoder loaded and the data was tokenized), as an error that
names no flag. Paths on remote filesystems (gs://, ...) are left to TensorFlow.
"""
import os
import shutil
import tempfile

from bertclf import errors

# Below this much free space a run cannot write a checkpoint of even a small BERT with its optimizer state
# (BERT-base: ~1.3 GB; Small BERT L-4 H-512: ~0.35 GB).
MIN_FREE_BYTES = 200 << 20


def _remote(path):
  return "://" in path


def _existing_ancestor(path):
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def check_writable_dir(flag, path, min_free_bytes=MIN_FREE_BYTES):
  """`path` is a folder (created if missing) that this process can write, with min_free_bytes free."""
  if _remote(path):
    return
  path = os.path.expanduser(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise errors.UserError(f"{flag}={path} is a file, not a folder. Pass a folder (it is created if missing).")
  blocker = _existing_ancestor(path)
  if not os.path.isdir(blocker):
    raise errors.UserError(f"{flag}={path}: {blocker} is a file, so the folder cannot be created. Pass another "
                           "folder.")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as err:
    raise errors.UserError(f"{flag}={path}: cannot write there ({err.strerror}). Pass a folder on a writable "
                           "disk.") from None
  free = shutil.disk_usage(path).free
  if free < min_free_bytes:
    raise errors.UserError(f"{flag}={path}: only {free >> 20} MB free on its disk; checkpoints need at least "
                           f"{min_free_bytes >> 20} MB. Free some space or pass a folder on another disk.")


def check_writable_file(flag, path):
  """`path` can be created or overwritten as a file: checked before a model is loaded to write into it."""
  if not path or _remote(path):
    return
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    raise errors.UserError(f"{flag}={path} is a folder; pass a file name (e.g. {os.path.join(path, 'out.jsonl')}).")
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise errors.UserError(f"{flag}={path}: the folder {folder} does not exist. Create it or pass another path.")
  existed = os.path.exists(path)
  try:
    with open(path, "a", encoding="utf-8"):
      pass
  except OSError as err:
    raise errors.UserError(f"{flag}={path}: cannot write this file ({err.strerror}). Pass a writable path.") from None
  if not existed:
    os.remove(path)
