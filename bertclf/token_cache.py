"""A persistent cache of tokenized splits, shared by runs, eval.py, sweeps and workers (--token_cache).

Tokenizing is the slow part of a start on large data (the preprocessing model runs over every text), and every run
of a sweep, every worker and every eval.py would otherwise redo it. A tokenized split is stored under
`<--token_cache>/<key>/`, where the key is a SHA-256 over:
  * the split itself: every text and label, in order (so any change of file, split rule, seed, duplicate dropping
    or class list gives another key: what was split off is what is hashed); for texts that stay in a UTF-8
    CSV/TSV/JSONL file until tokenized (bertclf.data.FileTexts), the file's content as parsed, the column and each
    row's byte range stand for the texts, so the key does not read them again,
  * the preprocessing model: a tfhub.dev handle as given (published versions do not change), a local SavedModel
    by the contents of its files,
  * --seq_length and this file's FORMAT.
An entry holds the split as `bertclf.pipeline.Tokenized` keeps it in memory, one `.npy` array each: word ids
[N, T] in the narrowest integer type that holds them (uint16 for vocabularies up to 65,536), lengths [N], and
the mask or segment ids [N, T] only when they are not what a single text packs to. About 2 bytes a position.

For a dataset read from files (CSV/TSV/JSONL: --dataset, --validation_file, --test_file), a record under
`<--token_cache>/data-<key>/` holds what loading them gave: the classes, the data report, the splits' fingerprints
(splits.json; their text hashes as .npy arrays), each split's labels and the name of its token entry. Its key
hashes the files' paths and contents (read in 1 MB chunks), the data flags, the preprocessing model and
--seq_length. A later run on the same files reads the record and the entries and never parses a text: its start
does not grow with the number of rows beyond hashing the files. aclImdb and folders of .txt files are read each
time (their texts' hash is the key, as above).

Entries' [N, T] arrays are read a batch's rows at a time with pread (RowFile), and their lengths and a record's
labels and text hashes memory-mapped: a process holds them only in the page cache, shared with every other
process on the host that reads the same entry, and its own memory does not grow with the number of examples.

Several processes may need the same missing entry or record at once (two workers, two sweep runs, eval.py beside
training): the first to create `<key>.lock` builds it and the others wait for it and read it (`building`). A lock whose
holder died is taken over: its pid is gone on this host, or, for a holder on another host sharing the folder, it
has not been refreshed for STALE_SECONDS (a thread of the holder refreshes it). A writer writes a folder of
its own and renames it into place, so a reader never sees a half-written entry, and if two writers still race (a
lock taken over from a slow holder), the rename onto an entry that exists fails and the loser drops its copy.
Entries are never changed after that, except that one that cannot be read is replaced; delete the folder to
reclaim space.
"""
import contextlib
import hashlib
import json
import mmap
import os
import shutil
import socket
import tempfile
import threading
import time

import numpy as np

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging

from bertclf import errors

FORMAT = 3
OFF = "off"
# A build lock not refreshed for this long is a builder's that died on another host (its process cannot be checked).
STALE_SECONDS = 120.0


def _update_with_file(digest, path):
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)


def _update_with_tree(digest, root):
  """Hashes every file under root (relative path, size, contents), in a fixed order."""
  for folder, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(files):
      path = os.path.join(folder, name)
      digest.update(os.path.relpath(path, root).encode() + b"\0" + str(os.path.getsize(path)).encode() + b"\0")
      _update_with_file(digest, path)


def _load_array(path, mapped):
  """An .npy array, memory-mapped (read-only) when `mapped`."""
  return np.load(path, mmap_mode="r" if mapped else None)


class RowFile:
  """A read-only [N, ...] .npy array of a cache entry whose rows are read on demand with pread.

  A memory-mapped file would serve rows as fast, but every page a read touches (and the kernel maps whole folios
  around it) then counts in the process's resident memory, so after a few hundred random batches most of the
  entry does: RSS would grow with the number of examples although the pages are the shared page cache. Rows
  read with pread land in a new array and the file's pages stay in the page cache only (about 3 us a row).
  `array[rows]` reads those rows; `np.asarray(array)` reads it whole.
  """

  def __init__(self, path):
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
      self.shape, fortran_order, self.dtype = read_header(f)
      self.offset = f.tell()
    if fortran_order or not self.shape:
      raise ValueError(f"{path}: not a C-ordered array of rows")
    self.path, self.ndim = path, len(self.shape)
    self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
    self._fd = os.open(path, os.O_RDONLY)

  def __len__(self):
    return self.shape[0]

  def __del__(self):
    if getattr(self, "_fd", None) is not None:
      os.close(self._fd)

  def __getitem__(self, rows):
    """rows: a slice (step 1) or integer indices → a new array of those rows."""
    if isinstance(rows, slice):
      start, stop, step = rows.indices(len(self))
      if step != 1:
        raise IndexError("RowFile slices take every row")
      return _read_rows(self.path, self.offset, self.dtype, self.shape[1:], start, max(stop - start, 0))
    rows = np.asarray(rows, np.int64)
    out = np.empty(rows.shape + self.shape[1:], self.dtype)
    buf = memoryview(out.reshape(-1).view(np.uint8))
    n = len(self)
    for j, i in enumerate(rows.reshape(-1).tolist()):
      if not -n <= i < n:
        raise IndexError(f"row {i} of {n}")
      got = os.preadv(self._fd, [buf[j * self.row_bytes:(j + 1) * self.row_bytes]],
                      self.offset + (i % n) * self.row_bytes)
      if got != self.row_bytes:
        raise OSError(f"{self.path}: short read at row {i}")
    return out

  def __array__(self, dtype=None, copy=None):
    out = self[:]
    return out if dtype is None else out.astype(dtype)

  def astype(self, dtype):
    return np.asarray(self, dtype)


def _read_rows(path, offset, dtype, row_shape, start, count):
  """Rows start .. start + count of the C-ordered array of `row_shape` rows stored at byte `offset` of `path`,
  read with a plain file read."""
  per_row = int(np.prod(row_shape, dtype=np.int64))
  out = np.fromfile(path, dtype, count * per_row, offset=offset + start * per_row * dtype.itemsize)
  if out.size != count * per_row:
    raise OSError(f"{path}: ends before row {start + count} of the rows it should hold")
  return out.reshape((count,) + tuple(row_shape))


def write_npy(f, dtype, shape, parts):
  """Writes an .npy of `dtype` and `shape` to the open file f from `parts`, arrays whose elements follow each other
  in C order (converted to dtype), a part at a time: never the whole array in memory or mapped."""
  np.lib.format.write_array_header_1_0(
      f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
  for part in parts:
    f.write(np.ascontiguousarray(part, dtype))  # a contiguous array is a buffer: no copy


def chunks(array, rows=1 << 20):
  """array[i:i + rows] for i = 0, rows, 2 rows, ...: a whole scan of an [N, ...] array. An array memory-mapped from
  an .npy (np.load(mmap_mode="r")) is read with plain file reads, so the scan leaves its pages in the page cache and
  out of this process's resident memory, as RowFile does; others are sliced."""
  from_file = isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.flags.c_contiguous
  for start in range(0, len(array), rows):
    if from_file:
      yield _read_rows(array.filename, array.offset, array.dtype, array.shape[1:], start,
                       min(rows, len(array) - start))
    else:
      yield array[start:start + rows]


def preprocess_identity(handle):
  """What names a preprocessing model's tokenization: a hash of a local SavedModel's files, or a remote handle."""
  if os.path.isdir(handle):
    digest = hashlib.sha256(b"local preprocessing SavedModel\0")
    _update_with_tree(digest, handle)
    return "sha256:" + digest.hexdigest()
  return "handle:" + handle


class TokenCache:
  """Tokenized splits under `root`, for one preprocessing model and sequence length."""

  def __init__(self, root, preprocess_handle, seq_length):
    self.root = os.path.abspath(os.path.expanduser(root))
    self.seq_length = seq_length
    self.preprocess_handle = preprocess_handle
    self._identity = None  # hashed on first use: a run with nothing to look up hashes nothing

  @classmethod
  def from_flag(cls, value, preprocess_handle, seq_length):
    """None for --token_cache=off (or empty), else the cache at that folder."""
    if not value or value == OFF:
      return None
    return cls(value, preprocess_handle, seq_length)

  def key(self, split):
    """The entry name of a `bertclf.data.Split` tokenized by this cache's model to its seq_length."""
    digest = hashlib.sha256(f"bertclf token cache {FORMAT}\0{self._preprocess()}\0{self.seq_length}\0".encode())
    digest.update(f"{len(split.texts)}\0".encode())
    if hasattr(split.texts, "identity"):  # texts read from a file when needed (bertclf.data.FileTexts)
      digest.update(b"file\0" + split.texts.identity())
    else:
      for text in split.texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    digest.update(np.ascontiguousarray(split.labels, np.int64).tobytes())
    return digest.hexdigest()[:40]

  def load(self, key, num_examples):
    """{name: array} of an entry (Tokenized.arrays: [N, T] arrays as RowFile, lengths memory-mapped), or None when
    there is none (or it is not what the key promises)."""
    folder = os.path.join(self.root, key)
    try:
      with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
      # [N, T] arrays are read by rows (RowFile); the [N] lengths memory-mapped (a step reads a pool of them).
      arrays = {name: _load_array(os.path.join(folder, f"{name}.npy"), mapped=True) if name == "lengths"
                else RowFile(os.path.join(folder, f"{name}.npy")) for name in meta["arrays"]}
    except FileNotFoundError:
      return None
    except (OSError, ValueError, KeyError) as e:
      logging.warning("Token cache entry %s cannot be read (%s): tokenizing again.", folder, e)
      return None
    shapes = {name: v.shape for name, v in arrays.items()}
    expected = {name: (num_examples,) if name == "lengths" else (num_examples, self.seq_length) for name in arrays}
    if meta.get("format") != FORMAT or shapes != expected or "word_ids" not in arrays or "lengths" not in arrays:
      logging.warning("Token cache entry %s holds %s, not word ids [%d, %d] and lengths [%d]: tokenizing again.",
                      folder, shapes, num_examples, self.seq_length, num_examples)
      return None
    return arrays

  def store(self, key, arrays):
    """Writes an entry of {name: array} (Tokenized.arrays) whole, through an `EntryWriter`; returns its folder."""
    writer = self.writer(key)
    for name, values in arrays.items():
      if name != "lengths":
        writer.append(name, values)
    return writer.finish(arrays["lengths"])

  def writer(self, key):
    """An `EntryWriter` for entry `key`: a split written as it is tokenized, never held whole."""
    return EntryWriter(self, key)

  @contextlib.contextmanager
  def building(self, key, poll_seconds=0.25):
    """Lets one process at a time build entry or record `key`: yields True in the process that holds `<key>.lock`
    (a thread refreshes the lock's time while it is held), or False once another process's folder `key` has
    appeared (read it). A lock whose holder died (its pid gone on this host; on another host, not refreshed for
    STALE_SECONDS) is taken over; a holder that stops without writing `key` hands the build to the next process."""
    lock = os.path.join(self.root, f"{key}.lock")
    try:
      os.makedirs(self.root, exist_ok=True)
    except OSError as e:  # e.g. the path is a file
      raise self._cannot_write(e) from e
    waited = False
    while True:
      try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        if os.path.isdir(os.path.join(self.root, key)):
          yield False
          return
        holder = _lock_holder(lock)
        if holder is not None and _is_stale(lock, holder):
          logging.warning("Token cache: %s was left by %s, which stopped; building it here.", lock,
                          holder.get("owner", "a process"))
          with contextlib.suppress(FileNotFoundError):
            os.remove(lock)
          continue
        if not waited:
          logging.info("Token cache: %s is building %s; waiting for it instead of building it too.",
                       (holder or {}).get("owner", "another process"), os.path.join(self.root, key))
          waited = True
        time.sleep(poll_seconds)
        continue
      except OSError as e:
        raise self._cannot_write(e) from e
      with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                   "owner": f"process {os.getpid()} on {socket.gethostname()}"}, f)
      held = threading.Event()
      refresher = threading.Thread(target=_refresh, args=(lock, held), daemon=True)
      refresher.start()
      try:
        yield True
      finally:
        held.set()
        refresher.join()
        with contextlib.suppress(FileNotFoundError):
          os.remove(lock)
      return

  def data_key(self, files, data_options):
    """The record name of a dataset read from `files` (bertclf.data.source_files) with `data_options` (the data
    flags, bertclf.flags.data_kwargs): their paths, sizes and contents, the options, the model and length."""
    digest = hashlib.sha256(f"bertclf data record {FORMAT}\0{self._preprocess()}\0{self.seq_length}\0".encode())
    digest.update(json.dumps(data_options, sort_keys=True, default=str).encode() + b"\0")
    for path in files:
      digest.update(path.encode("utf-8", "surrogateescape") + b"\0" + str(os.path.getsize(path)).encode() + b"\0")
      _update_with_file(digest, path)
    return "data-" + digest.hexdigest()[:40]

  def load_data(self, key):
    """(record, {name: array, memory-mapped}) stored by store_data, or None."""
    folder = os.path.join(self.root, key)
    try:
      with open(os.path.join(folder, "meta.json")) as f:
        record = json.load(f)
      arrays = {name: _load_array(os.path.join(folder, f"{name}.npy"), mapped=True) for name in record["arrays"]}
    except FileNotFoundError:
      return None
    except (OSError, ValueError, KeyError) as e:
      logging.warning("Data record %s cannot be read (%s): reading the data again.", folder, e)
      return None
    return (record, arrays) if record.get("format") == FORMAT else None

  def store_data(self, key, record, arrays):
    """Writes a dataset record: `record` (JSON: classes, report, fingerprints, {split: {entry, num_examples}})
    and {name: array} (each split's labels and example hashes), one .npy each; returns its folder."""
    return self._write(key, arrays, dict(record, format=FORMAT, arrays=sorted(arrays)))

  def _preprocess(self):
    if self._identity is None:
      self._identity = preprocess_identity(self.preprocess_handle)
    return self._identity

  def _write(self, key, arrays, meta):
    """A folder `key` of {name}.npy arrays and meta.json, written under a temporary name and renamed into place."""
    tmp = self.temporary_folder(key)
    try:
      for name, values in arrays.items():
        np.save(os.path.join(tmp, f"{name}.npy"), values)
      return self.publish(tmp, key, meta)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)

  def temporary_folder(self, key):
    """A new folder in the cache, named after entry `key`, for one writer."""
    try:
      os.makedirs(self.root, exist_ok=True)
      return tempfile.mkdtemp(prefix=f".{key}.", dir=self.root)
    except OSError as e:
      raise self._cannot_write(e) from e

  def _cannot_write(self, e):
    return errors.UserError(f"--token_cache={self.root}: cannot write there ({e.strerror}); give a writable "
                            "folder or --token_cache=off.")

  def discard_unreadable(self, key, num_examples):
    """Removes entry `key` if it exists but cannot be read as `num_examples` rows (so a new one can replace it)."""
    folder = os.path.join(self.root, key)
    if os.path.isdir(folder) and self.load(key, num_examples) is None:
      aside = tempfile.mkdtemp(prefix=f".{key}.unreadable.", dir=self.root)
      with contextlib.suppress(OSError):
        os.rename(folder, os.path.join(aside, key))
      shutil.rmtree(aside, ignore_errors=True)

  def publish(self, tmp, key, meta):
    """Writes meta.json into the temporary folder `tmp` and renames it to `key`; returns the entry's folder."""
    folder = os.path.join(self.root, key)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
      json.dump(meta, f)
    try:
      os.rename(tmp, folder)
    except OSError:  # another process renamed its copy into place first: the same content, keep that one
      if not os.path.isdir(folder):
        raise
    return folder


def _lock_holder(lock):
  """The lock's {"host", "pid", "owner"}, or None while its holder is still writing it."""
  try:
    with open(lock) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except ValueError:
    return {} if time.time() - _mtime(lock) > STALE_SECONDS else None


def _mtime(path):
  try:
    return os.path.getmtime(path)
  except FileNotFoundError:
    return time.time()


def _is_stale(lock, holder):
  if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
    try:
      os.kill(holder["pid"], 0)
    except ProcessLookupError:
      return True
    except PermissionError:
      pass  # alive, another user's
    return False
  return time.time() - _mtime(lock) > STALE_SECONDS


def _refresh(lock, released):
  """Touches the lock every STALE_SECONDS / 4 until `released` is set: its holder is alive for other hosts."""
  while not released.wait(STALE_SECONDS / 4):
    with contextlib.suppress(OSError):
      os.utime(lock)


def narrowest_type(low, high):
  """The smallest unsigned integer type that holds every value in [low, high], else int32 (also for no values)."""
  if low is None or low < 0:
    return np.int32
  return np.uint8 if high < 1 << 8 else np.uint16 if high < 1 << 16 else np.int32


def _convert_raw(raw, path, dtype, rows, seq_length, block_bytes):
  """Writes the [rows, seq_length] int32 ids of file `raw` (if any) as an .npy of `dtype` at `path`, then removes
  `raw`. Plain reads and writes of about `block_bytes` of ids at a time: pages written through a memory map would
  count in this process's resident memory, for the whole entry; pages written to a file stay in the page cache."""
  block = max(1, block_bytes // (4 * seq_length))  # rows
  with open(path, "wb") as out:
    write_npy(out, dtype, (rows, seq_length),
              (_read_rows(raw, 0, np.dtype(np.int32), (seq_length,), start, min(block, rows - start))
               for start in range(0, rows, block)))
  if os.path.exists(raw):
    os.remove(raw)


class EntryWriter:
  """Writes a cache entry a chunk of rows at a time, so a split's ids are never all in memory.

  Each [n, T] array is appended as int32 to a raw file in the entry's temporary folder; `finish` converts it, a
  block of rows at a time, to an .npy of the narrowest type that holds every value, adds the lengths and renames
  the folder into place. `abort` (or a failure) removes it."""

  _BLOCK_BYTES = 1 << 23  # int32 ids converted at a time: 8 MB

  def __init__(self, cache, key):
    self.cache, self.key = cache, key
    self.tmp = cache.temporary_folder(key)
    self._arrays = {}  # name -> [rows, lowest value, highest value]

  def has(self, name):
    return name in self._arrays

  def append(self, name, values):
    """values: [n, seq_length] integers, the next n rows of array `name`."""
    values = np.ascontiguousarray(values, np.int32)
    rows, low, high = self._arrays.get(name, (0, None, None))
    if values.size:
      low = int(values.min()) if low is None else min(low, int(values.min()))
      high = int(values.max()) if high is None else max(high, int(values.max()))
    with open(os.path.join(self.tmp, f"{name}.raw"), "ab") as f:
      f.write(values.tobytes())
    self._arrays[name] = [rows + len(values), low, high]

  def finish(self, lengths):
    """lengths: [N] of the whole split. Returns the entry's folder."""
    try:
      self._arrays.setdefault("word_ids", [0, None, None])
      seq_length = self.cache.seq_length
      for name, (rows, low, high) in self._arrays.items():
        if rows != len(lengths):
          raise ValueError(f"token cache entry {self.key}: {rows} rows of {name} for {len(lengths)} examples")
        raw = os.path.join(self.tmp, f"{name}.raw")
        _convert_raw(raw, os.path.join(self.tmp, f"{name}.npy"), narrowest_type(low, high), rows, seq_length,
                     self._BLOCK_BYTES)
      np.save(os.path.join(self.tmp, "lengths.npy"), np.asarray(lengths, np.int32))
      meta = {"format": FORMAT, "arrays": sorted([*self._arrays, "lengths"]), "num_examples": len(lengths),
              "seq_length": seq_length, "preprocess": self.cache.preprocess_handle, "written": time.time()}
      self.cache.discard_unreadable(self.key, len(lengths))
      return self.cache.publish(self.tmp, self.key, meta)
    finally:
      self.abort()

  def abort(self):
    shutil.rmtree(self.tmp, ignore_errors=True)
