"""--token_cache: the key covers what tokenization depends on, entries read back exactly and appear atomically, and
train.py/eval.py runs that share a cache tokenize once and train the same weights."""
import concurrent.futures
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from bertclf import data
from bertclf import encoders
from bertclf import errors
from bertclf import pipeline
from bertclf import token_cache
from harness import _weights
from harness import assert_same_tensors
from harness import plain
from harness import run_eval
from harness import run_train


def _split(texts, labels=None):
  return data.Split(list(texts), np.asarray(labels if labels is not None else [0] * len(texts), np.int32))


@pytest.fixture(scope="module")
def preprocess_dir(tiny_hub):
  return encoders.resolve(tiny_hub).preprocess


def test_key_changes_with_every_input_of_tokenization(tmp_path, preprocess_dir):
  cache = token_cache.TokenCache(tmp_path, preprocess_dir, 16)
  base = cache.key(_split(["a film", "a book"], [0, 1]))
  assert cache.key(_split(["a film", "a book"], [0, 1])) == base  # a pure function of its inputs
  others = [
      cache.key(_split(["a film", "a book!"], [0, 1])),  # one text
      cache.key(_split(["a book", "a film"], [1, 0])),  # the order
      cache.key(_split(["a film", "a book"], [1, 1])),  # one label
      cache.key(_split(["a filma", " book"], [0, 1])),  # text boundaries, same characters
      token_cache.TokenCache(tmp_path, preprocess_dir, 24).key(_split(["a film", "a book"], [0, 1])),  # length
  ]
  copy = shutil.copytree(preprocess_dir, tmp_path / "pre")  # the same model elsewhere: the same key
  assert token_cache.TokenCache(tmp_path, str(copy), 16).key(_split(["a film", "a book"], [0, 1])) == base
  vocab = next(p for p in (copy / "assets").iterdir() if p.name.endswith(".txt"))
  vocab.write_text(vocab.read_text() + "extra\n")  # another vocabulary: another tokenization
  others.append(token_cache.TokenCache(tmp_path, str(copy), 16).key(_split(["a film", "a book"], [0, 1])))
  assert len(set(others + [base])) == len(others) + 1, others


def test_entries_read_back_exactly_and_appear_whole(tmp_path, preprocess_dir):
  cache = token_cache.TokenCache(tmp_path / "cache", preprocess_dir, 4)
  features = {"input_word_ids": np.array([[101, 70000, 5, 0], [101, 7, 102, 0]], np.int32),  # 70000: int32 kept
              "input_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 0]], np.int32),
              "input_type_ids": np.zeros([2, 4], np.int32)}
  small = pipeline.Tokenized.from_features(dict(features, input_word_ids=features["input_word_ids"] % 30000), [0, 1])
  assert cache.load("k", 2) is None  # nothing there yet
  with concurrent.futures.ThreadPoolExecutor(4) as pool:  # four writers of the same entry at once
    folders = list(pool.map(lambda _: cache.store("k", small.arrays()), range(4)))
  assert len(set(folders)) == 1 and os.listdir(tmp_path / "cache") == ["k"]  # no temporary folder left
  got = pipeline.Tokenized.from_arrays(cache.load("k", 2), [0, 1])
  assert_same_tensors(got.features, small.features, what="read back")
  # Word ids in 2 bytes a position, lengths; the mask and segment ids are rebuilt from the lengths.
  assert sorted(os.listdir(folders[0])) == ["lengths.npy", "meta.json", "word_ids.npy"]
  assert np.load(os.path.join(folders[0], "word_ids.npy")).dtype == np.uint16
  cache.store("wide", pipeline.Tokenized.from_features(features, [0, 1]).arrays())
  assert_same_tensors(pipeline.Tokenized.from_arrays(cache.load("wide", 2), [0, 1]).features, features,
                      what="int32 ids read back")
  assert cache.load("k", 3) is None  # not what the key promises (3 examples): tokenized again, with a warning


def _rss_file_mb():
  with open("/proc/self/status") as f:
    return int(next(line for line in f if line.startswith("RssFile:")).split()[1]) / 1024


def test_row_file_reads_exact_rows_without_growing_resident_memory(tmp_path):
  """RowFile gives the rows numpy gives, for indices and slices, and reading 2,000 random rows of a 64 MB entry
  leaves the process's resident file pages where they were; a memory map of the same file (the control, so the
  measurement can tell) makes them grow by tens of MB."""
  rng = np.random.RandomState(0)
  small = rng.randint(0, 60000, size=[50, 7]).astype(np.uint16)
  np.save(tmp_path / "small.npy", small)
  rows = token_cache.RowFile(str(tmp_path / "small.npy"))
  assert (rows.shape, rows.dtype, len(rows)) == (small.shape, small.dtype, 50)
  for idx in ([3, 0, 49, 3], np.array([[1, 2], [48, -1]]), slice(10, 20), slice(45, 60), slice(None)):
    np.testing.assert_array_equal(rows[idx], small[idx], err_msg=str(idx))
  np.testing.assert_array_equal(np.asarray(rows, np.int32), small.astype(np.int32))
  with pytest.raises(IndexError):
    rows[[50]]
  big = np.lib.format.open_memmap(str(tmp_path / "big.npy"), "w+", np.uint16, (500_000, 64))  # 64 MB
  big[:] = 7
  big.flush()
  del big  # written: its pages are in the page cache, as a fresh entry's are
  picks = np.random.RandomState(1).randint(0, 500_000, size=[100, 20])
  before = _rss_file_mb()
  rows = token_cache.RowFile(str(tmp_path / "big.npy"))
  assert all((rows[idx] == 7).all() for idx in picks)
  grew_rows = _rss_file_mb() - before
  mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
  before = _rss_file_mb()
  assert all((np.asarray(mapped[idx]) == 7).all() for idx in picks)
  grew_mapped = _rss_file_mb() - before
  assert grew_rows < 2 and grew_mapped > 8, (grew_rows, grew_mapped)


def test_chunks_scan_a_mapped_array_exactly_without_growing_resident_memory(tmp_path):
  """token_cache.chunks gives the rows of an array in order, for a memory-mapped .npy (read from the file), a view
  of one and an array in memory; scanning a 64 MB mapped array leaves resident file pages where they were, where
  slicing the mapping itself (the control) adds tens of MB."""
  values = np.random.RandomState(0).randint(0, 1 << 62, size=[8_000_000], dtype=np.int64).astype(np.uint64)
  np.save(tmp_path / "hashes.npy", values)  # 64 MB
  mapped = np.load(tmp_path / "hashes.npy", mmap_mode="r")
  before = _rss_file_mb()
  scanned = np.concatenate(list(token_cache.chunks(mapped, 1 << 20)))
  grew_chunks = _rss_file_mb() - before
  np.testing.assert_array_equal(scanned, values)
  before = _rss_file_mb()
  total = sum(int(np.asarray(mapped[i:i + (1 << 20)]).sum() & 1) for i in range(0, len(mapped), 1 << 20))
  grew_sliced = _rss_file_mb() - before
  assert grew_chunks < 2 and grew_sliced > 8, (grew_chunks, grew_sliced, total)
  rows = np.arange(70, dtype=np.int32).reshape(35, 2)
  np.save(tmp_path / "rows.npy", rows)
  for array, want in ((np.load(tmp_path / "rows.npy", mmap_mode="r"), rows),
                      (np.load(tmp_path / "rows.npy", mmap_mode="r")[5:], rows[5:]), (rows, rows),
                      (rows.tolist(), rows)):
    got = list(token_cache.chunks(array, 8))
    assert [len(c) for c in got] == [8] * (len(want) // 8) + [len(want) % 8]
    np.testing.assert_array_equal(np.concatenate(got), want)


def _peak_rss_mb():
  with open("/proc/self/status") as f:
    return int(next(line for line in f if line.startswith("VmHWM:")).split()[1]) / 1024


def test_writing_an_entry_does_not_grow_resident_memory_with_its_size(tmp_path, preprocess_dir, monkeypatch):
  """An EntryWriter given 500,000 rows of 64 ids (128 MB as int32, 64 MB as the uint16 entry) a chunk at a time
  writes and publishes the entry with the process's peak resident memory within a few MB of where it was (its
  conversion block, 1 MB here, and the appended chunks), and the entry reads back exactly."""
  monkeypatch.setattr(token_cache.EntryWriter, "_BLOCK_BYTES", 1 << 20)
  cache = token_cache.TokenCache(tmp_path, preprocess_dir, 64)
  writer = cache.writer("big")
  rows, chunk = 500_000, 10_000

  def ids(start):  # [chunk, 64]: a different value at every position
    return ((np.arange(start, start + chunk)[:, None] * 64 + np.arange(64)[None, :]) % 60000).astype(np.int32)
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from the current resident memory
  before = _peak_rss_mb()
  for start in range(0, rows, chunk):
    writer.append("word_ids", ids(start))
  folder = writer.finish(np.full([rows], 64, np.int32))
  grew = _peak_rss_mb() - before
  assert grew < 10, f"peak RSS grew {grew:.0f} MB writing a 64 MB entry"
  written = np.load(os.path.join(folder, "word_ids.npy"), mmap_mode="r")
  assert written.dtype == np.uint16 and written.shape == (rows, 64)
  for start in (0, 250_000, rows - chunk):
    np.testing.assert_array_equal(written[start:start + chunk], ids(start))


def test_tokenize_reads_the_cache_instead_of_the_model(tmp_path, tiny_hub):
  handles = encoders.resolve(tiny_hub)
  preprocess = encoders.load_preprocess(handles)
  split = _split(["a great film", "dull", "the best film of the year, by far"], [1, 0, 1])
  cache = token_cache.TokenCache(tmp_path, handles.preprocess, 8)
  first = pipeline.tokenize(split, preprocess, 8, cache=cache)
  assert isinstance(first.word_ids, token_cache.RowFile)  # after a miss too, the ids are read back from the entry
  again = pipeline.tokenize(split, None, 8, cache=cache)  # no model at all: only the cache can answer
  assert_same_tensors(again.features, first.features, what="cached vs tokenized")
  assert_same_tensors(first.features, pipeline.tokenize(split, preprocess, 8).features, what="with vs without cache")
  np.testing.assert_array_equal(again.labels, [1, 0, 1])


@pytest.mark.slow
def test_runs_and_eval_share_the_cache_and_train_the_same_weights(tmp_path, tiny_hub, toy_imdb, caplog):
  cache_dir = str(tmp_path / "tokens")
  caplog.clear()
  first = run_train(tmp_path / "first", tiny_hub, toy_imdb, train_steps=4, token_cache=cache_dir, verbosity=0)
  misses = [m for m in caplog.messages if m.startswith("Token cache miss")]
  assert len(misses) == 2 and len(os.listdir(cache_dir)) == 2, caplog.messages  # training and validation
  caplog.clear()
  second = run_train(tmp_path / "second", tiny_hub, toy_imdb, train_steps=4, token_cache=cache_dir, verbosity=0)
  assert [m.split(":")[0] for m in caplog.messages if m.startswith("Token cache")] == [
      "Token cache hit for the training split", "Token cache hit for the validation split"], caplog.messages
  assert not any(m.startswith("Tokenized") for m in caplog.messages)
  assert_same_tensors(_weights(os.path.join(second, "ckpt-4")), _weights(os.path.join(first, "ckpt-4")),
                      what="a run from the cache vs the run that wrote it")
  for expected in ("miss", "hit"):  # eval.py takes the run's --token_cache from its config.json
    caplog.clear()
    run_eval(model_dir=second, plots="false", eval_checkpoint="latest", verbosity=0)
    assert any(m.startswith(f"Token cache {expected} for the test split") for m in caplog.messages), caplog.messages
  assert len(os.listdir(cache_dir)) == 3


def _options(**overrides):
  """bertclf.data.load_text_data's keyword arguments as train.py passes them (bertclf.flags.data_kwargs)."""
  return dict(dict(cache_dir="~/.cache/bertclf", validation_file=None, test_file=None, text_column="text",
                   label_column="label", class_names=None, encoding="utf-8", encoding_errors="strict",
                   validation_fraction=0.25, test_fraction=0.0, drop_duplicates=False, allow_split_overlap=False,
                   seed=42, tsv_quoting=False), **overrides)


def test_a_csv_dataset_is_read_back_from_its_record_without_parsing_a_text(tmp_path, tiny_hub, toy_imdb,
                                                                             monkeypatch):
  handles = encoders.resolve(tiny_hub)
  model = encoders.load_preprocess(handles)
  csv_path = tmp_path / "reviews.csv"
  csv_path.write_text("text,label\n" + "".join(f"review number {i} {'good' if i % 3 else 'bad'},{i % 2}\n"
                                               for i in range(40)))
  cache = token_cache.TokenCache(tmp_path / "cache", handles.preprocess, 16)
  real_load = data.load_text_data
  parsed = []
  monkeypatch.setattr(data, "load_text_data", lambda *a, **k: parsed.append(a[0]) or real_load(*a, **k))

  def load(path=csv_path, **overrides):
    return pipeline.load_and_tokenize(str(path), _options(**overrides), lambda: model, 16, cache=cache)

  want = pipeline.load_and_tokenize(str(csv_path), _options(), lambda: model, 16)  # no cache: all in memory
  parsed.clear()
  first = load()
  assert parsed == [str(csv_path)] and any(p.name.startswith("data-") for p in (tmp_path / "cache").iterdir())
  again = pipeline.load_and_tokenize(str(csv_path), _options(), lambda: None, 16, cache=cache)  # no model needed
  assert parsed == [str(csv_path)], "the second load parsed the CSV"
  # The run that writes the record (first) trains from it as a later one (again) does: the same arrays, the
  # [N, T] ids read by rows, the labels, lengths and text hashes memory-mapped, none held [N] in memory.
  for got in (first, again):
    for name in ("train", "validation"):
      assert isinstance(getattr(got, name).word_ids, token_cache.RowFile)
      assert_same_tensors(getattr(got, name).features, getattr(want, name).features, what=f"{name} vs parsed")
      np.testing.assert_array_equal(getattr(got, name).labels, getattr(want, name).labels, err_msg=name)
    assert (got.class_names, got.source, got.report, plain(got.fingerprints)) == \
        (want.class_names, want.source, want.report, plain(want.fingerprints))
    assert isinstance(got.fingerprints["splits"]["train"]["examples"], np.memmap)
    assert isinstance(got.train.labels, np.memmap) and isinstance(got.train.lengths, np.memmap)
  # Whatever loading depends on is in the key: another data flag, another byte of the file; a record whose token
  # entry is gone is read again; a folder is read each time.
  load(validation_fraction=0.5)
  assert len(parsed) == 2
  csv_path.write_text(csv_path.read_text() + "one more review,1\n")
  changed = load()
  assert len(parsed) == 3 and len(changed.train) + len(changed.validation) == 41
  options = {k: v for k, v in _options().items() if k != "cache_dir"}
  record, _ = cache.load_data(cache.data_key([str(csv_path)], options))
  shutil.rmtree(tmp_path / "cache" / record["splits"]["train"]["entry"])
  assert len(load().train) == len(changed.train) and len(parsed) == 4
  parsed.clear()
  pipeline.load_and_tokenize(toy_imdb, _options(), lambda: model, 16, cache=cache)
  pipeline.load_and_tokenize(toy_imdb, _options(), lambda: model, 16, cache=cache)
  assert parsed == [toy_imdb] * 2


def test_texts_read_from_a_file_are_keyed_by_the_file_and_tokenized_the_same(tmp_path, tiny_hub):
  """Splits whose texts stay in a UTF-8 CSV (bertclf.data.FileTexts) are keyed by the file's content and the rows'
  byte ranges, without reading the texts: the same file gives the same key, one changed character another; and
  tokenizing them gives what tokenizing the same texts held in memory gives."""
  handles = encoders.resolve(tiny_hub)
  cache = token_cache.TokenCache(tmp_path / "cache", handles.preprocess, 12)
  rows = "".join(f'"review {i}, a ""great"" film\nor not",{i % 2}\n' for i in range(30))
  path = tmp_path / "a.csv"
  path.write_text("text,label\n" + rows, encoding="utf-8")
  load = lambda **kw: data.load_text_data(str(path), validation_fraction=0.2, **kw)  # noqa: E731
  got = load()
  assert isinstance(got.train.texts, data.FileTexts)
  key = cache.key(got.train)
  assert cache.key(load().train) == key and cache.key(got.validation) != key
  held = load(encoding="latin-1").train  # the same texts as a list (ASCII file)
  assert isinstance(held.texts, list) and held.texts == got.train.texts
  preprocess = encoders.load_preprocess(handles)
  assert_same_tensors(pipeline.tokenize(got.train, preprocess, 12).features,
                      pipeline.tokenize(held, preprocess, 12).features, what="file vs list")
  path.write_text("text,label\n" + rows.replace("review 3,", "review 3;"), encoding="utf-8")
  assert cache.key(load().train) != key


class _CharPreprocess:
  """A stand-in preprocessing model: word ids are a text's character codes, and a text that starts with "s" gets
  segment ids of 1 from position 2 on (a packing that is not a single text's, so it is stored)."""

  def tokenize(self, texts):
    return tf.strings.unicode_decode(texts, "UTF-8")  # [B, chars] ragged

  def bert_pack_inputs(self, tokens, seq_length):
    ids = tokens[0][:, :seq_length].to_tensor(shape=[None, seq_length])  # [B, T]
    mask = tf.cast(ids != 0, tf.int32)
    second = tf.cast(ids[:, :1] == ord("s"), tf.int32) * tf.cast(tf.range(seq_length) >= 2, tf.int32)[None]
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": second * mask}


def test_an_entry_is_written_chunk_by_chunk_as_tokenizing_in_memory_gives_it(tmp_path):
  """With a cache, each tokenized batch goes to the entry on disk as it arrives; what is read back equals the split
  tokenized in memory: the same features, the narrowest type over all chunks (a wide id only in a late chunk), and
  segment ids first seen in a late chunk written for the earlier ones too. No temporary folder is left."""
  texts = [f"text {i} " + "x" * (i % 7) for i in range(40)]
  texts[26] = "second segment"  # 4th chunk of 8: the first with stored segment ids
  texts[33] = "wide \u0101"  # 5th chunk: an id above 255
  split = _split(texts, [i % 2 for i in range(40)])
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  held = pipeline.tokenize(split, _CharPreprocess(), 10, batch_size=8)
  streamed = pipeline.tokenize(split, _CharPreprocess(), 10, batch_size=8, cache=cache, key="k")
  assert isinstance(streamed.word_ids, token_cache.RowFile)
  assert sorted(streamed.stored) == sorted(held.stored) == ["input_type_ids"]
  assert streamed.word_ids.dtype == held.word_ids.dtype == np.uint16
  assert {k: v.dtype for k, v in streamed.stored.items()} == {k: v.dtype for k, v in held.stored.items()}
  assert_same_tensors(streamed.features, held.features, what="streamed to the cache vs in memory")
  assert held.features["input_type_ids"][26, 2:].any() and not held.features["input_type_ids"][:26].any()
  assert os.listdir(tmp_path) == ["k"]


class _FailingTexts(list):
  """A split's texts that fail on the third batch read (as a file changed during the run does)."""

  def __getitem__(self, i):
    if isinstance(i, slice) and i.start >= 16:
      raise data.DataError("texts.csv: changed while this run was reading it")
    return super().__getitem__(i)


def test_a_failed_tokenization_leaves_no_entry_and_no_temporary_folder(tmp_path):
  split = data.Split(_FailingTexts(f"text {i}" for i in range(40)), np.zeros(40, np.int32))
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  with pytest.raises(data.DataError, match="changed while this run was reading it"):  # as raised, not wrapped
    pipeline.tokenize(split, _CharPreprocess(), 10, batch_size=8, cache=cache, key="k")
  assert os.listdir(tmp_path) == []


class _Background:
  """Runs fn(*args, **kwargs) in a daemon thread: `result(timeout)` fails a test that would wait forever (a lock
  never released) instead of hanging the suite."""

  def __init__(self, fn, *args, **kwargs):
    self._box = {}

    def run():
      try:
        self._box["value"] = fn(*args, **kwargs)
      except BaseException as e:  # pylint: disable=broad-except  (re-raised by result)
        self._box["error"] = e
    self._thread = threading.Thread(target=run, daemon=True)
    self._thread.start()

  def done(self):
    return not self._thread.is_alive()

  def result(self, timeout):
    self._thread.join(timeout)
    assert not self._thread.is_alive(), f"still waiting after {timeout} s"
    if "error" in self._box:
      raise self._box["error"]
    return self._box["value"]


def test_a_process_that_needs_an_entry_being_built_waits_for_it(tmp_path, caplog):
  """While another process holds an entry's build lock, tokenize waits and reads that process's entry instead of
  tokenizing too (it is given no model here: only the entry can answer)."""
  caplog.set_level(logging.INFO, logger="absl")
  split = _split([f"text {i}" for i in range(20)], [i % 2 for i in range(20)])
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  built = pipeline.tokenize(split, _CharPreprocess(), 10, batch_size=8)
  with cache.building("k") as builder:
    assert builder
    waiting = _Background(pipeline.tokenize, split, None, 10, cache=cache, key="k")
    time.sleep(1.5)
    assert not waiting.done()  # the lock's holder (this process) is alive
    cache.store("k", built.arrays())
    got = waiting.result(timeout=30)
  assert_same_tensors(got.features, built.features, what="waited for vs built")
  assert f"is building {tmp_path / 'k'}; waiting for it" in caplog.text
  assert sorted(os.listdir(tmp_path)) == ["k"]  # the lock is gone


@pytest.mark.parametrize("holder", ["dead_process", "empty_and_old", "another_host_silent"])
def test_a_build_lock_whose_holder_stopped_is_taken_over(tmp_path, caplog, holder):
  split = _split([f"text {i}" for i in range(20)])
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  lock = tmp_path / "k.lock"
  if holder == "dead_process":
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "owner": f"process {dead.pid}"}))
  else:
    lock.write_text("" if holder == "empty_and_old" else json.dumps({"host": "elsewhere", "pid": 1}))
    old = time.time() - token_cache.STALE_SECONDS - 1
    os.utime(lock, (old, old))
  got = _Background(pipeline.tokenize, split, _CharPreprocess(), 10, batch_size=8, cache=cache,
                    key="k").result(timeout=60)
  assert_same_tensors(got.features, pipeline.tokenize(split, _CharPreprocess(), 10).features, what="taken over")
  assert "which stopped; building it here" in caplog.text
  assert sorted(os.listdir(tmp_path)) == ["k"]


def test_a_live_lock_on_another_host_is_waited_for_until_it_goes(tmp_path):
  """A holder elsewhere that refreshes its lock is waited for; when it stops without an entry, the waiter builds."""
  split = _split([f"text {i}" for i in range(20)])
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  lock = tmp_path / "k.lock"
  lock.write_text(json.dumps({"host": "elsewhere", "pid": 1}))
  waiting = _Background(pipeline.tokenize, split, _CharPreprocess(), 10, cache=cache, key="k")
  time.sleep(1.5)
  assert not waiting.done()
  lock.unlink()  # the other host's build failed: no entry
  got = waiting.result(timeout=60)
  assert len(got) == 20 and sorted(os.listdir(tmp_path)) == ["k"]


def test_an_unreadable_entry_is_replaced_by_a_new_build(tmp_path, caplog):
  split = _split([f"text {i}" for i in range(20)])
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  (tmp_path / "k").mkdir()
  (tmp_path / "k" / "meta.json").write_text("{not json")
  got = pipeline.tokenize(split, _CharPreprocess(), 10, batch_size=8, cache=cache, key="k")
  assert isinstance(got.word_ids, token_cache.RowFile) and len(got) == 20
  assert "cannot be read" in caplog.text
  assert cache.load("k", 20) is not None and sorted(os.listdir(tmp_path)) == ["k"]


def test_runs_that_start_on_the_same_files_at_once_parse_them_once(tmp_path, tiny_hub, monkeypatch, caplog):
  """The dataset record has a build lock too: a run that starts while another holds it waits instead of parsing
  the files, and parses them itself only if that run stops without writing the record."""
  caplog.set_level(logging.INFO, logger="absl")
  handles = encoders.resolve(tiny_hub)
  model = encoders.load_preprocess(handles)
  csv_path = tmp_path / "reviews.csv"
  csv_path.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(40)))
  cache = token_cache.TokenCache(tmp_path / "cache", handles.preprocess, 16)
  real_load = data.load_text_data
  parsed = []
  monkeypatch.setattr(data, "load_text_data", lambda *a, **k: parsed.append(a[0]) or real_load(*a, **k))
  options = {k: v for k, v in _options().items() if k != "cache_dir"}
  record_key = cache.data_key([str(csv_path)], options)
  with cache.building(record_key) as builder:  # another run, parsing
    assert builder
    waiting = _Background(pipeline.load_and_tokenize, str(csv_path), _options(), lambda: model, 16, cache=cache)
    time.sleep(1.5)
    assert not waiting.done() and parsed == []
  got = waiting.result(timeout=60)  # that run stopped without a record: this one parsed and wrote it
  assert parsed == [str(csv_path)] and len(got.train) + len(got.validation) == 40
  assert f"is building {tmp_path / 'cache' / record_key}; waiting for it" in caplog.text
  again = pipeline.load_and_tokenize(str(csv_path), _options(), lambda: None, 16, cache=cache)
  assert parsed == [str(csv_path)] and len(again.train) == len(got.train)
  assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith(".lock")]


def test_a_held_lock_is_refreshed_so_other_hosts_see_its_holder_alive(tmp_path, monkeypatch):
  monkeypatch.setattr(token_cache, "STALE_SECONDS", 0.4)  # refreshed every 0.1 s
  cache = token_cache.TokenCache(tmp_path, "unused", 10)
  with cache.building("k") as builder:
    assert builder
    os.utime(tmp_path / "k.lock", (0, 0))
    time.sleep(0.5)
    assert time.time() - os.path.getmtime(tmp_path / "k.lock") < 0.4
  assert not (tmp_path / "k.lock").exists()


@pytest.mark.parametrize("where", ["a_file/tokens", "a_file"])
def test_a_cache_folder_that_cannot_be_written_is_one_error_line(tmp_path, where):
  (tmp_path / "a_file").write_text("")
  cache = token_cache.TokenCache(tmp_path / where, "unused", 10)
  with pytest.raises(errors.UserError, match=rf"--token_cache=.*{where}: cannot write there .*--token_cache=off"):
    pipeline.tokenize(_split(["a text"]), _CharPreprocess(), 10, cache=cache)


def test_a_hit_takes_no_build_lock(tmp_path, tiny_hub, monkeypatch):
  """Reading an entry or a record that exists writes nothing into the cache folder (it may be read-only)."""
  handles = encoders.resolve(tiny_hub)
  model = encoders.load_preprocess(handles)
  csv_path = tmp_path / "reviews.csv"
  csv_path.write_text("text,label\n" + "".join(f"review {i},{i % 2}\n" for i in range(40)))
  cache = token_cache.TokenCache(tmp_path / "cache", handles.preprocess, 16)
  first = pipeline.load_and_tokenize(str(csv_path), _options(), lambda: model, 16, cache=cache)
  split = _split(["a text", "another text"], [0, 1])
  pipeline.tokenize(split, model, 16, cache=cache)

  def no_lock(key, **_):
    raise AssertionError(f"took the build lock of {key} on a hit")
  monkeypatch.setattr(cache, "building", no_lock)
  again = pipeline.load_and_tokenize(str(csv_path), _options(), lambda: None, 16, cache=cache)
  assert len(again.train) == len(first.train)
  assert len(pipeline.tokenize(split, None, 16, cache=cache)) == 2
