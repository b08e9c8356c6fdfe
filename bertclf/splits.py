"""Which examples a run trained on and chose its checkpoint by: `<model_dir>/splits.json`.

train.py writes it beside config.json. It holds, per split, a fingerprint of its (text, label) pairs and, for
the train and validation splits, the sorted 8-byte hashes of its texts (compared after stripping whitespace, as
--drop_duplicates compares) in `splits.<split>.npy` beside it (0.2 MB for IMDB's 25k; read memory-mapped, so a run
on millions of examples does not hold them in its own memory). With it:

  - a resumed run refuses data other than the run's (`check_same_data`), unless --resume_on_new_data;
  - eval.py refuses to score a split that shares examples with the run's training or validation split
    (`check_not_trained_on`), unless --allow_split_overlap: a --test_fraction given only at eval time takes its
    "test" examples off the data the run trained on, and a validation split chose the best checkpoint. The
    counts go into eval_<split>.json.

It also records `overlap`: how many validation/test examples share a text with the train (and validation) split,
as loaded (bertclf/data.py).
"""
import hashlib
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from bertclf import data
from bertclf import errors
from bertclf import run_config
from bertclf import token_cache

SPLITS_FILE = "splits.json"
_KEY_CHARS = 2 * data.HASH_BYTES  # hex characters per example hash (bertclf.data.text_hashes)
_CHUNK = 1 << 16  # lines hashed at a time


def _hex(keys):
  """[N] uint64 text hashes → their 16-hex-character digests, concatenated."""
  return np.asarray(keys, np.uint64).astype(">u8").tobytes().hex()


def split_record(split, with_examples):
  """{num_examples, fingerprint[, examples]} of a data.Split; the fingerprint ignores example order.

  fingerprint: SHA-256 of the sorted lines "<text hash>:<label>" joined by newlines; examples: the distinct text
  hashes, sorted and concatenated. Both are built from [N] arrays, a chunk of lines at a time."""
  keys, labels = split.hashes(), np.asarray(split.labels, np.int64)  # [N], [N]
  # Sort as the lines sort as strings: by hash, then by the label's decimal text.
  classes = np.unique(labels)
  by_text = {c: r for r, c in enumerate(sorted(classes.tolist(), key=str))}
  text_rank = np.array([by_text[c] for c in classes.tolist()], np.int64)[np.searchsorted(classes, labels)]
  order = np.lexsort((text_rank, keys))
  digest = hashlib.sha256()
  for start in range(0, len(order), _CHUNK):
    chunk = order[start:start + _CHUNK]
    hexes = _hex(keys[chunk])
    lines = "\n".join(f"{hexes[_KEY_CHARS * j:_KEY_CHARS * (j + 1)]}:{label}"
                      for j, label in enumerate(labels[chunk].tolist()))
    digest.update((("\n" if start else "") + lines).encode())
  record = {"num_examples": len(keys), "fingerprint": digest.hexdigest()}
  if with_examples:
    record["examples"] = np.unique(keys)  # [M] uint64, sorted; a file of its own when written (write)
  return record


def fingerprints(text_data):
  """The record of a data.TextData: its source, classes and each split (example hashes for train/validation)."""
  return {"source": text_data.source, "class_names": list(text_data.class_names),
          "splits": {name: split_record(getattr(text_data, name), name != "test")
                     for name in ("train", "validation", "test") if getattr(text_data, name) is not None},
          "overlap": text_data.overlap}


def _examples(record, name):
  """The recorded example hashes of a split: sorted [M] uint64 (memory-mapped when read from a file)."""
  examples = record["splits"].get(name, {}).get("examples", "")
  if isinstance(examples, str):  # the hex digests, concatenated, as JSON held them inline
    return np.frombuffer(bytes.fromhex(examples), ">u8").astype(np.uint64)
  return examples


def _examples_file(name):
  return f"splits.{name}.npy"


def to_files(record, folder):
  """The record as JSON holds it: each split's example hashes written to `folder`/splits.<split>.npy (through a
  temporary name, then renamed), and the JSON names the file."""
  out = {**record, "splits": {name: dict(split) for name, split in record["splits"].items()}}
  for name, split in out["splits"].items():
    if isinstance(split.get("examples"), np.ndarray):
      os.makedirs(folder, exist_ok=True)
      path = os.path.join(folder, _examples_file(name))
      examples = split["examples"]  # [M] uint64, perhaps memory-mapped from the token cache's record
      with open(path + ".tmp", "wb") as f:  # a memory-mapped record is read, not mapped
        token_cache.write_npy(f, "<u8", examples.shape, token_cache.chunks(examples))
      os.replace(path + ".tmp", path)
      split["examples"] = _examples_file(name)
  return out


def from_files(record, folder):
  """A record read from JSON (to_files) with each split's example hashes memory-mapped from its file."""
  if record is None:
    return None
  out = {**record, "splits": {name: dict(split) for name, split in record["splits"].items()}}
  for split in out["splits"].values():
    examples = split.get("examples")
    if isinstance(examples, str) and examples.endswith(".npy"):
      split["examples"] = np.load(os.path.join(folder, os.path.basename(examples)), mmap_mode="r")
  return out


def read(model_dir):
  return from_files(run_config.read_json(os.path.join(model_dir, SPLITS_FILE)), model_dir)


def write(model_dir, record):
  run_config.write_atomically(os.path.join(model_dir, SPLITS_FILE), json.dumps(to_files(record, model_dir), indent=1))


def _is_in(keys, sorted_keys):
  """[N] bool: which of `keys` are in the sorted array `sorted_keys` (a binary search each, so a memory-mapped
  array is read only where the searches land)."""
  keys = np.asarray(keys, np.uint64)
  if not len(sorted_keys):
    return np.zeros(len(keys), bool)
  at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
  return np.asarray(sorted_keys[at]) == keys


def _describe(record, name):
  split = record["splits"].get(name)
  return f"{split['num_examples']} examples, fingerprint {split['fingerprint'][:12]}" if split else "none"


def check_same_data(model_dir, record, allow_new_data=False):
  """The record to write for this run. Refuses (UserError) to resume checkpoints trained on other train or
  validation examples, unless allow_new_data: then the returned record also lists the examples of the
  earlier data, so eval.py still refuses to score any example these weights were trained on."""
  saved = read(model_dir)
  if saved is None or not tf.train.latest_checkpoint(model_dir):
    return record
  changed = [name for name in ("train", "validation")
             if saved["splits"].get(name, {}).get("fingerprint") != record["splits"].get(name, {}).get("fingerprint")]
  if not changed:
    return record
  if not allow_new_data:
    diffs = "; ".join(f"{name}: saved {_describe(saved, name)}, now {_describe(record, name)}" for name in changed)
    raise errors.UserError(
        f"--model_dir={model_dir} holds checkpoints trained on other data (saved source {saved['source']}, now "
        f"{record['source']}; {diffs}). Use a new --model_dir, pass the data flags that run used (its config.json), "
        "or pass --resume_on_new_data to continue training these weights on this data.")
  logging.warning("--resume_on_new_data: continuing the checkpoints in %s on other data (%s, was %s).", model_dir,
                  record["source"], saved["source"])
  merged = {**record, "splits": {name: dict(split) for name, split in record["splits"].items()}}
  for name in ("train", "validation"):
    keys = np.union1d(_examples(saved, name), _examples(record, name))
    merged["splits"].setdefault(name, {})["examples"] = keys
  merged["earlier_sources"] = saved.get("earlier_sources", []) + [saved["source"]]
  return merged


def check_not_trained_on(model_dir, name, split, advice, allow=False):
  """How many examples of `split` (--split=name) are in the run's recorded training and validation splits:
  {"train": n, "validation": m}, or None (after a warning) when the run has no record.

  Refuses (UserError) a split that shares examples with the run's training split or, for a test split, its
  validation split, unless `allow` (--allow_split_overlap; then a warning). The train split, and the run's own
  recorded split of that name, pass as they are (loading the run's data already applied the data rules), with a
  warning if they share examples. advice: what the user can score instead.
  """
  saved = read(model_dir)
  if saved is None:
    logging.warning("%s has no %s, so it cannot be checked that the %s split holds no example the run trained on.",
                    model_dir, SPLITS_FILE, name)
    return None
  keys = split.hashes()
  seen = {other: _is_in(keys, _examples(saved, other)) for other in ("train", "validation")}  # [N] bool each
  counts = {other: int(hit.sum()) for other, hit in seen.items()}
  against = {"train": (), "validation": ("train",), "test": ("train", "validation")}[name]
  shared = {other: counts[other] for other in against if counts[other]}
  if not shared:
    return counts
  total = int(np.logical_or.reduce([seen[other] for other in against]).sum())
  listed = ", ".join(f"{n} in its {other} split" for other, n in shared.items())
  chose = ", which chose the best checkpoint" if shared.get("validation") else ""
  what = (f"--split={name}: {total} of its {len(keys)} examples are ones the run trained on or selected by "
          f"({listed}{chose}; recorded in {os.path.join(model_dir, SPLITS_FILE)})")
  recorded = saved["splits"].get(name, {}).get("fingerprint") == split_record(split, False)["fingerprint"]
  if recorded or allow:
    logging.warning("%s; scored anyway (%s), the counts go into eval_%s.json.", what,
                    "--allow_split_overlap" if allow and not recorded else "the run's own split", name)
    return counts
  raise errors.UserError(f"{what}; scoring them would overstate how the model does on unseen text. {advice} To "
                         "score them knowingly, pass --allow_split_overlap.")
