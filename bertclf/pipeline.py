"""The input pipeline: texts → int32 token ids on the host, then per-replica batches for `strategy.run`.

Two stages:
1. `tokenize`: a tf.data pipeline maps the TF Hub preprocessing model over batches of raw strings
   (parallel calls, on the host CPU) and keeps the result in host memory, compactly (`Tokenized`: 2 bytes a
   position). Later epochs and evaluations never tokenize again within a process, and with --token_cache later
   processes read it from disk (bertclf/token_cache.py).
2. `train_dataset_fn` / `eval_dataset_fn`: functions for `strategy.distribute_datasets_from_function` that
   gather those ids by index and build each batch's int32 features, so only int32 token tensors reach the
   replicas.

The training order is a pure function of (seed, step) (bertclf/order.py): epoch e visits a keyed permutation
of the examples, evaluated only at the positions a step needs, and step s is batch s % steps_per_epoch of epoch
s // steps_per_epoch. Resuming at step s therefore continues at the same epoch, position and shuffle order with
nothing but the step saved in the checkpoint. Each global batch is the same set of examples whatever the number
of replicas or workers: worker w takes its slice of the global batch and hands consecutive per-replica slices to
its replicas. With a token cache, each batch reads its rows of the ids from the entry's files (token_cache.RowFile)
and of the memory-mapped lengths and labels, so a process's own memory does not grow with the number of examples.
"""
import dataclasses
import os
import time

import numpy as np

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf

from bertclf import data as data_lib
from bertclf import errors
from bertclf import order as order_lib
from bertclf import splits
from bertclf import token_cache

FEATURES = ("input_word_ids", "input_mask", "input_type_ids")


def _single_text_mask(lengths, seq_length):
  """[N] lengths → [N, T] bool: what a single text's mask is, true on its first `length` positions."""
  return np.arange(seq_length)[None, :] < lengths[:, None]


def narrowest(values):
  """The smallest unsigned integer type that holds every value of a non-negative int array, else int32."""
  if values.size == 0:
    return np.int32
  return token_cache.narrowest_type(int(values.min()), int(values.max()))


def derived_feature(name, lengths, seq_length):
  """A feature that a single text of each length packs to (not stored): [N, T] int32."""
  if name == "input_mask":
    return _single_text_mask(lengths, seq_length).astype(np.int32)
  return np.zeros([len(lengths), seq_length], np.int32)


@dataclasses.dataclass
class Tokenized:
  """One split, tokenized, held compactly: word ids [N, T] in the narrowest integer type that holds them (uint16
  for vocabularies up to 65,536), real lengths [N] and labels [N].

  A single text packs to a mask of 1 on its first `length` positions and segment ids of 0; those two features
  are therefore rebuilt per batch from the lengths instead of being stored, so an example takes 2 bytes a
  position instead of 12 as three int32 arrays (256 bytes instead of 1,536 at --seq_length=128). A feature that
  is not of that form (another preprocessing model's packing) is kept whole in `stored`, in its narrowest type.
  """
  word_ids: np.ndarray  # [N, T] uint8 / uint16 / int32 (a token_cache.RowFile when read from the cache)
  lengths: np.ndarray  # [N] int32: real tokens, [CLS] and [SEP] included (through the mask's last 1)
  labels: np.ndarray  # [N] int32
  stored: dict = dataclasses.field(default_factory=dict)  # {"input_mask" / "input_type_ids": [N, T]}

  def __len__(self):
    return len(self.labels)

  @property
  def seq_length(self):
    return self.word_ids.shape[1]

  @classmethod
  def from_features(cls, features, labels):
    """From the preprocessing model's {feature: [N, T]} (any integer type)."""
    mask, types = features["input_mask"], features["input_type_ids"]
    real = mask != 0  # [N, T]
    # Positions up to the last real one: the mask's sum for a single text, and what buckets must keep.
    lengths = np.where(real.any(axis=1), mask.shape[1] - np.argmax(real[:, ::-1], axis=1), 0).astype(np.int32)
    stored = {}
    if not np.array_equal(mask, _single_text_mask(lengths, mask.shape[1]).astype(mask.dtype)):
      stored["input_mask"] = mask
    if types.any():
      stored["input_type_ids"] = types
    word_ids = features["input_word_ids"]
    return cls(word_ids.astype(narrowest(word_ids)), lengths, np.asarray(labels, np.int32),
               {k: v.astype(narrowest(v)) for k, v in stored.items()})

  @classmethod
  def concatenate(cls, parts, labels):
    """Tokenized chunks of one split, in order, as one (labels: [N] of the whole split). Empties the list
    `parts` as it copies them, so the split's ids are held about once, not twice."""
    stored = {}
    for name in sorted({k for p in parts for k in p.stored}):  # a feature stored by one chunk, stored for all
      stored[name] = np.concatenate([p.stored[name] if name in p.stored else p.derived(name) for p in parts])
      stored[name] = stored[name].astype(narrowest(stored[name]))
    lengths = np.concatenate([p.lengths for p in parts])
    # The widest chunk's type, as np.concatenate would promote to.
    word_ids = np.empty([len(lengths), parts[0].seq_length], np.result_type(*(p.word_ids for p in parts)))
    parts.reverse()
    start = 0
    while parts:
      chunk = parts.pop().word_ids
      word_ids[start:start + len(chunk)] = chunk
      start += len(chunk)
    return cls(word_ids, lengths, np.asarray(labels, np.int32), stored)

  def derived(self, name):
    """A feature that is not stored, as a single text gives it: [N, T] int32."""
    return derived_feature(name, np.asarray(self.lengths), self.seq_length)

  @property
  def features(self):
    """{feature: int32 [N, T]}, the preprocessing model's output, built whole (the pipeline builds it per batch)."""
    out = {"input_word_ids": self.word_ids.astype(np.int32)}
    for name in FEATURES[1:]:
      out[name] = self.stored[name].astype(np.int32) if name in self.stored else self.derived(name)
    return out

  def arrays(self):
    """What the token cache stores: {name: array} (labels are the split's, not stored)."""
    return {"word_ids": self.word_ids, "lengths": self.lengths, **self.stored}

  @classmethod
  def from_arrays(cls, arrays, labels):
    """From Tokenized.arrays (e.g. a token cache entry's); memory-mapped int32 lengths and labels stay mapped."""
    stored = {k: v for k, v in arrays.items() if k in FEATURES}
    return cls(arrays["word_ids"], _as_int32(arrays["lengths"]), _as_int32(labels), stored)


def _as_int32(array):
  """int32 [N]: the array itself when it is one (a memory-mapped one is not read), else a converted copy."""
  return array if getattr(array, "dtype", None) == np.int32 else np.asarray(array, np.int32)


def make_tokenize_fn(preprocess, seq_length):
  """[B] strings → dict of [B, seq_length] int32, via the Hub model's tokenize + bert_pack_inputs."""
  def tokenize(texts):
    tokens = preprocess.tokenize(texts)  # RaggedTensor [B, words, wordpieces]
    return preprocess.bert_pack_inputs([tokens], seq_length=seq_length)
  return tokenize


@dataclasses.dataclass
class Prepared:
  """A dataset as training uses it: the tokenized training and validation splits, the classes, where it came from,
  what loading it reported (bertclf.data's report lines) and the splits' record for splits.json."""
  train: Tokenized
  validation: Tokenized
  class_names: list
  source: str
  report: list
  fingerprints: dict


def load_and_tokenize(dataset, data_options, preprocess, seq_length, batch_size=256, cache=None, check=None):
  """bertclf.data.load_text_data(dataset, **data_options), then `tokenize` of its training and validation splits.
  `preprocess`: a function that returns the preprocessing model (called only to tokenize); `check`: called with
  the class names before tokenizing (raises on classes the run cannot train on). Logs the data report.

  With a token cache and a dataset read from files (CSV/TSV/JSONL), the cache's record of those files (same
  contents, same data flags) is read instead, and no text is parsed; after a miss the record is written
  (bertclf/token_cache.py).
  """
  start = time.time()
  files = data_lib.source_files(dataset, data_options.get("validation_file"), data_options.get("test_file"))
  options = {k: v for k, v in data_options.items() if k != "cache_dir"}  # where aclImdb goes: not a file dataset's
  record_key = cache.data_key(files, options) if cache is not None and files else None
  if record_key is None:
    return _parse_and_tokenize(dataset, data_options, preprocess, seq_length, batch_size, cache, check)
  prepared = _from_record(cache, record_key, check, start)
  if prepared is not None:
    return prepared
  # One process parses the files and writes the record; others that start on them at once wait and read it.
  with cache.building(record_key):
    prepared = _from_record(cache, record_key, check, start)  # written by the process this one waited for
    if prepared is not None:
      return prepared
    return _parse_and_tokenize(dataset, data_options, preprocess, seq_length, batch_size, cache, check, files,
                               record_key)


def _from_record(cache, record_key, check, start):
  """The dataset as the cache's record `record_key` and its token entries hold it, or None if any is missing."""
  prepared = _read_record(cache, record_key)
  if prepared is None:
    return None
  logging.info("Data record hit: %s as loaded and tokenized before (%d training, %d validation examples), "
               "from %s in %.1fs.", prepared.source, len(prepared.train), len(prepared.validation),
               os.path.join(cache.root, record_key), time.time() - start)
  _log_report(prepared.report)
  if check is not None:
    check(prepared.class_names)
  return prepared


def _read_record(cache, record_key):
  """Prepared from record `record_key` and its token entries (labels and text hashes memory-mapped, ids read by
  rows), or None if any is missing."""
  found = cache.load_data(record_key)
  if found is None:
    return None
  record, arrays = found  # every array memory-mapped
  labels = {name: arrays[f"{name}_labels"] for name in ("train", "validation")}
  entries = {name: cache.load(record["splits"][name]["entry"], len(labels[name])) for name in ("train", "validation")}
  if any(a is None for a in entries.values()):
    return None
  train, validation = (Tokenized.from_arrays(entries[name], labels[name]) for name in ("train", "validation"))
  fingerprints = record["fingerprints"]
  fingerprints = {**fingerprints, "splits": {
      name: {**split, **({"examples": arrays[f"{name}_examples"]} if f"{name}_examples" in arrays else {})}
      for name, split in fingerprints["splits"].items()}}
  return Prepared(train, validation, record["class_names"], record["source"], record["report"], fingerprints)


def _parse_and_tokenize(dataset, data_options, preprocess, seq_length, batch_size, cache, check, files=None,
                        record_key=None):
  """Loads the dataset's texts, tokenizes its training and validation splits and writes the record (record_key)."""
  text_data = data_lib.load_text_data(dataset, **data_options)
  _log_report(text_data.report)
  if check is not None:
    check(text_data.class_names)
  keys = {name: cache.key(getattr(text_data, name)) if cache is not None else None for name in ("train", "validation")}
  train = tokenize(text_data.train, preprocess(), seq_length, batch_size, cache, "training", keys["train"])
  validation = tokenize(text_data.validation, preprocess(), seq_length, batch_size, cache, "validation",
                        keys["validation"])
  prepared = Prepared(train, validation, text_data.class_names, text_data.source, text_data.report,
                      splits.fingerprints(text_data))
  if record_key:
    # The splits' example hashes ([M] uint64 each) go into arrays of their own, read back memory-mapped.
    split_records = prepared.fingerprints["splits"]
    fingerprints = {**prepared.fingerprints, "splits": {
        name: {k: v for k, v in split.items() if k != "examples"} for name, split in split_records.items()}}
    arrays = {f"{name}_examples": split["examples"] for name, split in split_records.items() if "examples" in split}
    arrays.update(train_labels=train.labels, validation_labels=validation.labels)
    record = {"source": prepared.source, "class_names": prepared.class_names, "report": prepared.report,
              "fingerprints": fingerprints, "files": files,
              "splits": {name: {"entry": keys[name], "num_examples": len(part)}
                         for name, part in (("train", train), ("validation", validation))}}
    logging.info("Data record written: %s.", cache.store_data(record_key, record, arrays))
    # Train from the record as a later run reads it: labels and text hashes memory-mapped, not held [N] in memory.
    return _read_record(cache, record_key) or prepared
  return prepared


def _log_report(lines):
  for line in lines:
    logging.info("data: %s", line)


def tokenize(split, preprocess, seq_length, batch_size=256, cache=None, name="split", key=None):
  """Tokenizes a `bertclf.data.Split` in tf.data on the host and returns it as a `Tokenized`.

  With a `bertclf.token_cache.TokenCache`, a split tokenized before by the same preprocessing model to the same
  length is read from it instead, and a new one is written to it; `name` is the split's name in the log lines.
  Each batch is made compact as it arrives, so the int32 output of the model is never held for the whole split;
  with a cache it is written to the new entry as it arrives, and the split is then read from the entry
  memory-mapped, so its ids are never all in this process's memory. `key`: the split's cache key when the caller
  has it already.
  """
  start = time.time()
  labels = np.asarray(split.labels, np.int32)
  if cache is None:
    return _tokenize(split, preprocess, seq_length, batch_size, _MemorySink(seq_length), labels, name, start)
  if key is None:
    key = cache.key(split)
  out = _from_entry(cache, key, labels, name, start)
  if out is not None:
    return out
  # One process tokenizes a missing entry; others that need it at the same time (workers, sweep runs) wait for it.
  with cache.building(key):
    out = _from_entry(cache, key, labels, name, start)  # written by the process this one waited for
    if out is not None:
      return out
    sink = _EntrySink(cache.writer(key), seq_length)
    out = _tokenize(split, preprocess, seq_length, batch_size, sink, labels, name, start)
  logging.info("Token cache miss for the %s split: wrote %s.", name, sink.folder)
  return out


def _from_entry(cache, key, labels, name, start):
  """The split as cache entry `key` holds it, or None when there is none."""
  arrays = cache.load(key, len(labels))
  if arrays is None:
    return None
  out = Tokenized.from_arrays(arrays, labels)
  logging.info("Token cache hit for the %s split: %d examples from %s in %.1fs.", name, len(out),
               os.path.join(cache.root, key), time.time() - start)
  return out


def _tokenize(split, preprocess, seq_length, batch_size, sink, labels, name, start):
  """Runs the preprocessing model over the split's texts into `sink` (_MemorySink or _EntrySink)."""
  tokenize_fn = make_tokenize_fn(preprocess, seq_length)
  # Batches of strings from the Python list, one at a time: the split is never copied whole into a string tensor.
  # tf.data keeps the generator's function alive after the loop (in its traced functions), so the generator reads
  # the texts through a holder emptied afterwards; otherwise the list would stay in memory for the whole run.
  holder, failed = [split.texts], []

  def batches():
    try:
      for i in range(0, len(holder[0]), batch_size):
        yield holder[0][i:i + batch_size]
    except errors.UserError as e:  # e.g. a file changed while read (data.FileTexts); tf.data would wrap it
      failed.append(e)
      raise

  ds = tf.data.Dataset.from_generator(batches, output_signature=tf.TensorSpec([None], tf.string))
  ds = ds.map(tokenize_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  try:
    with tf.device("/cpu:0"):
      for batch in ds:
        sink.add(Tokenized.from_features({k: batch[k].numpy() for k in FEATURES}, labels[:0]))
    out = sink.finish(labels)
  except tf.errors.OpError:
    if failed:
      raise failed[0] from None  # the user's error, as one line
    raise
  finally:
    holder.clear()
    sink.abort()
  counts = length_counts(out.lengths, seq_length)  # [T + 1]
  truncated = int(counts[seq_length])
  logging.info("Tokenized %d texts of the %s split in %.1fs: mean %.1f tokens, %d (%.1f%%) filled all %d positions "
               "(maybe truncated).", len(out), name, time.time() - start,
               (counts * np.arange(seq_length + 1)).sum() / len(out) if len(out) else 0,
               truncated, 100.0 * truncated / max(len(out), 1), seq_length)
  return out


class _MemorySink:
  """Tokenized chunks kept in memory and joined into one `Tokenized` at the end."""

  def __init__(self, seq_length):
    self.parts, self.seq_length = [], seq_length

  def add(self, part):
    self.parts.append(part)

  def finish(self, labels):
    if not self.parts:
      empty = np.zeros([0, self.seq_length], np.int32)
      self.parts.append(Tokenized.from_features(dict.fromkeys(FEATURES, empty), labels[:0]))
    return Tokenized.concatenate(self.parts, labels)

  def abort(self):
    self.parts.clear()


class _EntrySink:
  """Tokenized chunks written to a token cache entry as they arrive (`token_cache.EntryWriter`), then read back
  by rows, as a later run would: the split's ids are never all in this process's memory, only in the shared
  page cache. A feature first stored by a later chunk is written for the earlier ones as a single text gives it."""

  def __init__(self, writer, seq_length):
    self.writer, self.seq_length, self.lengths, self.folder = writer, seq_length, [], None

  def add(self, part):
    self.lengths.append(part.lengths)
    self.writer.append("word_ids", part.word_ids)
    for name in FEATURES[1:]:
      if name not in part.stored and not self.writer.has(name):
        continue  # a single text's packing so far: rebuilt from the lengths
      if not self.writer.has(name):
        for earlier in self.lengths[:-1]:
          self.writer.append(name, derived_feature(name, earlier, self.seq_length))
      self.writer.append(name, part.stored[name] if name in part.stored else part.derived(name))

  def finish(self, labels):
    lengths = np.concatenate(self.lengths) if self.lengths else np.zeros([0], np.int32)
    self.folder = self.writer.finish(lengths)
    arrays = self.writer.cache.load(self.writer.key, len(lengths))
    if arrays is None:
      raise RuntimeError(f"token cache entry {self.folder} written but not readable")
    return Tokenized.from_arrays(arrays, labels)

  def abort(self):
    self.writer.abort()


def _gather_fn(data, bucketed):
  """A per-replica batch {idx [b], weights [b], length} → ({feature: [b, length] int32}, labels [b], weights [b]).

  `length` is the padded length of this step's global batch: its bucket (--bucket_boundaries). Without
  bucketing the features keep their static [b, T] shape. The mask and segment ids are built from the lengths
  unless the data stores them (Tokenized).
  """
  word_ids = _rows_fn(data.word_ids)
  lengths = _rows_fn(data.lengths)  # idx [b] → [b]
  stored = {k: _rows_fn(v) for k, v in data.stored.items()}
  labels = _rows_fn(data.labels)
  seq_length = data.seq_length

  def gather(batch):
    idx = batch["idx"]  # [b]
    length = batch["length"] if bucketed else seq_length
    ids = {"input_word_ids": tf.cast(word_ids(idx)[:, :length], tf.int32)}  # [b, L]
    ids.update({k: tf.cast(rows(idx)[:, :length], tf.int32) for k, rows in stored.items()})
    if "input_mask" not in ids:  # a single text's: 1 on its first `length` positions
      ids["input_mask"] = tf.cast(tf.range(length)[None, :] < tf.cast(lengths(idx), tf.int32)[:, None], tf.int32)
    if "input_type_ids" not in ids:  # one segment
      ids["input_type_ids"] = tf.zeros_like(ids["input_word_ids"])
    return ids, tf.cast(labels(idx), tf.int32), batch["weights"]
  return gather


def _is_mapped(array):
  """Whether an array's memory is a memory-mapped file (a token cache entry), directly or as a view of one."""
  while array is not None:
    if isinstance(array, np.memmap):
      return True
    array = array.base if isinstance(array, np.ndarray) else None
  return False


def _rows_fn(array):
  """idx [b] → array[idx], [b, ...] in the array's type. An array in memory becomes one constant tensor; a token
  cache entry's (token_cache.RowFile, or memory-mapped) is read per batch, so the process never holds it whole."""
  if not (isinstance(array, token_cache.RowFile) or _is_mapped(array)):
    values = tf.constant(array)  # [N, ...]
    return lambda idx: tf.gather(values, idx)
  row_shape = array.shape[1:]

  def rows(idx):
    out = tf.numpy_function(lambda i: np.asarray(array[i]), [idx], tf.as_dtype(array.dtype), stateful=False)
    return tf.ensure_shape(out, idx.shape.concatenate(row_shape))  # [b, ...]
  return rows


def _padded_length_fn(data, bucket_boundaries):
  """global batch indices [G] → the length its batch is padded to: the smallest bucket boundary that holds
  its longest example, or the full sequence length T without bucketing."""
  seq_length = data.seq_length
  if not bucket_boundaries:  # every batch keeps T: no per-batch work
    return lambda idx: tf.constant(seq_length, tf.int32)
  bounds = tf.constant(sorted({b for b in bucket_boundaries if b < seq_length} | {seq_length}), tf.int32)
  lengths = _rows_fn(data.lengths)

  def padded_length(idx):
    longest = tf.cast(tf.reduce_max(lengths(idx)), tf.int32)
    return bounds[tf.argmax(tf.cast(bounds >= longest, tf.int32))]  # first boundary >= longest
  return padded_length


def length_counts(lengths, seq_length, chunk=1 << 20):
  """[seq_length + 1] int64: how many of `lengths` [N] are 0, 1, ..., seq_length (longer ones count as
  seq_length). Read a chunk at a time (token_cache.chunks), so a memory-mapped [N] is neither copied whole nor
  left in resident memory."""
  counts = np.zeros(seq_length + 1, np.int64)
  for part in token_cache.chunks(lengths, chunk):
    counts += np.bincount(np.minimum(np.asarray(part, np.int64), seq_length), minlength=seq_length + 1)
  return counts


def fewest_padding_boundaries(lengths, num_buckets, seq_length):
  """The bucket boundaries that pad `lengths` least: at most num_buckets - 1 of them below seq_length (the last
  bucket is seq_length itself), what --bucket_boundaries=auto uses.

  Exact for the padding of each example to the smallest boundary that holds it, Σ (boundary − length), by
  dynamic programming over the distinct lengths (an optimal boundary is always a length that occurs). Batches
  from length-sorted pools pad to their longest example's bucket, a little more than this counts.
  lengths: [N] real tokens per example (Tokenized.lengths). Returns increasing ints.
  """
  all_counts = length_counts(lengths, seq_length)  # [T + 1]
  cands = np.append(np.flatnonzero(all_counts[:seq_length]), seq_length)  # [M] possible boundaries, then T
  counts = all_counts[cands]  # [M] examples of each candidate length
  n = np.concatenate([[0], np.cumsum(counts)])  # [M + 1] examples up to candidate i (0: none)
  total = np.concatenate([[0], np.cumsum(counts * cands)])  # [M + 1] their summed lengths
  # pad[j, i]: examples with lengths in (cands[j-1], cands[i-1]] padded to cands[i-1]; j < i, 0 = no lower bound.
  j, i = np.meshgrid(np.arange(len(cands) + 1), np.arange(len(cands) + 1), indexing="ij")
  pad = np.where(j < i, np.append(0, cands)[i] * (n[i] - n[j]) - (total[i] - total[j]), np.inf)
  best = [np.where(np.arange(len(cands) + 1) == 0, 0.0, np.inf)]  # best[k][i]: least padding, k buckets
  choice = [None]  # choice[k][i]: the j that gave best[k][i]
  for _ in range(min(num_buckets, len(cands))):
    cost = best[-1][:, None] + pad  # [M + 1, M + 1]
    choice.append(np.argmin(cost, axis=0))
    best.append(cost.min(axis=0))
  k = int(np.argmin([b[-1] for b in best]))  # the fewest buckets that reach the least padding
  bounds, i = [], len(cands)
  while k:
    bounds.append(int(cands[i - 1]))
    i, k = int(choice[k][i]), k - 1
  return sorted(b for b in bounds if b < seq_length)


def mean_padded_length(lengths, bucket_boundaries, seq_length):
  """Mean length [N] examples of these token lengths are padded to when each goes to the smallest bucket that
  holds it (seq_length without buckets): the count fewest_padding_boundaries minimises, divided by N."""
  if not len(lengths):
    return float(seq_length)
  counts = length_counts(lengths, seq_length)  # [T + 1]
  bounds = np.array(sorted({b for b in bucket_boundaries if b < seq_length} | {seq_length}))
  padded_to = bounds[np.searchsorted(bounds, np.arange(seq_length + 1))]  # [T + 1] first boundary >= each length
  return float((counts * padded_to).sum() / counts.sum())


def _split_for_replicas(global_batches, input_context, global_batch_size):
  """Global batches {idx [G], weights [G], length} → this pipeline's per-replica batches, in replica order.

  Worker w takes slice w of the global batch and gives consecutive [b] slices to its replicas; every replica of
  a step gets the same padded length, so all replicas run the same shapes.
  """
  pipelines = input_context.num_input_pipelines
  replicas_here = input_context.num_replicas_in_sync // pipelines
  b = input_context.get_per_replica_batch_size(global_batch_size)
  share = global_batch_size // pipelines
  pid = input_context.input_pipeline_id

  def split(batch):  # [G] → [replicas_here, b]
    mine = lambda t: tf.reshape(t[pid * share:(pid + 1) * share], [replicas_here, b])
    return {"idx": mine(batch["idx"]), "weights": mine(batch["weights"]),
            "length": tf.fill([replicas_here], batch["length"])}
  return global_batches.map(split).unbatch()


steps_per_epoch = order_lib.steps_per_epoch


def train_dataset_fn(data, global_batch_size, seed, start_step=0, bucket_boundaries=None, pool_batches=50):
  """dataset_fn for `distribute_datasets_from_function`: endless training batches from global step start_step.

  Global batch s is `order.TrainOrder(...).batch(s)`: a pure function of (seed, s), so resume stays exact and
  every worker computes the same batch. With bucket_boundaries, batches are drawn from length-sorted pools of
  `pool_batches` global batches and each is padded only to its bucket (bertclf/order.py).
  """
  n = len(data)
  G = global_batch_size  # pylint: disable=invalid-name
  if steps_per_epoch(n, G) == 0:
    raise errors.UserError(f"The training split has {n} examples, fewer than one global batch "
                     f"(--batch_size={G}); lower --batch_size.")
  order = order_lib.TrainOrder(data.lengths, G, seed, data.seq_length, bucket_boundaries, pool_batches)

  def global_batch(step):  # → {idx [G], weights [G], length}
    idx, length = tf.numpy_function(order.batch, [step], (tf.int32, tf.int32), stateful=False)
    return {"idx": tf.ensure_shape(idx, [G]), "weights": tf.ones([G], tf.float32),
            "length": tf.ensure_shape(length, [])}

  def dataset_fn(input_context):
    # One step at a time, in order (TrainOrder keeps the current epoch's permutations; not thread-safe).
    batches = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max).map(global_batch)
    ds = _split_for_replicas(batches, input_context, G)
    ds = ds.map(_gather_fn(data, order.bucketed), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
  return dataset_fn


def eval_order(data, bucket_boundaries=None):
  """The order evaluation visits examples in: by length when bucketing (batches of similar lengths pad
  little), else the data's order. A permutation [N]: position i holds example order[i]."""
  if bucket_boundaries:
    return np.argsort(data.lengths, kind="stable").astype(np.int32)
  return np.arange(len(data), dtype=np.int32)


def eval_dataset_fn(data, global_batch_size, bucket_boundaries=None):
  """dataset_fn for evaluation: every example exactly once, in `eval_order`.

  The last partial global batch is padded with weight-0 copies of example 0, so every replica sees full,
  same-shape batches and metrics weighted by `weights` count each real example once. With bucket_boundaries
  the examples go by length and each batch is padded only to its bucket.
  """
  n = len(data)
  num_batches = -(-n // global_batch_size)
  idx = np.zeros(num_batches * global_batch_size, np.int32)
  idx[:n] = eval_order(data, bucket_boundaries)
  weights = (np.arange(len(idx)) < n).astype(np.float32)
  padded_length = _padded_length_fn(data, bucket_boundaries)

  def dataset_fn(input_context):
    batches = tf.data.Dataset.from_tensor_slices(
        {"idx": idx.reshape(num_batches, -1), "weights": weights.reshape(num_batches, -1)})
    batches = batches.map(lambda b: dict(b, length=padded_length(b["idx"])))
    ds = _split_for_replicas(batches, input_context, global_batch_size)
    ds = ds.map(_gather_fn(data, bool(bucket_boundaries)))
    return ds.prefetch(tf.data.AUTOTUNE)
  return dataset_fn, num_batches
