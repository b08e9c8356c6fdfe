"""Tests for bertclf.data: every source format, the split procedure, the IMDB download and bad input."""

import csv
import io
import json
import os
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from bertclf import data
from bertclf.data import DataError, load_text_data


def write(path, content):
  """Writes str (utf-8) or bytes to `path`, creating folders."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(content.encode("utf-8") if isinstance(content, str) else content)
  return str(path)


def make_folder(root, splits):
  """splits: {split: {class: [text, ...]}} -> <root>/<split>/<class>/<i>.txt."""
  for split, classes in splits.items():
    for name, texts in classes.items():
      for i, text in enumerate(texts):
        write(os.path.join(root, split, name, f"{i:02d}.txt"), text)
  return str(root)


def texts_labels(split, class_names):
  return [(t, class_names[l]) for t, l in zip(split.texts, split.labels)]


def error(**kwargs):
  with pytest.raises(DataError) as e:
    load_text_data(**kwargs)
  return str(e.value)


# ----------------------------------------------------------------------------------------------------
# Folders.


def tf_keras_folder(tmp_path):
  """A train folder exercising tf_keras' listing rules: nested folders, case, non-.txt, hidden."""
  train = tmp_path / "ds" / "train"
  names = ["1.txt", "10.txt", "2.txt", "B.TXT", "a.txt", "z/0.txt", "sub/x.txt", "sub/deeper/y.txt",
           "sub b/q.txt", "c.txt"]
  for cls in ("cat", "dog", "emu"):
    for name in names:
      write(str(train / cls / name), f"{cls} {name} <br />text")
    write(str(train / cls / "notes.md"), "not an example")
  write(str(train / ".hidden" / "h.txt"), "hidden class folder")
  return tmp_path / "ds"


@pytest.mark.parametrize("fraction,seed", [(0.2, 42), (0.3, 7)])
def test_folder_split_matches_tf_keras(tmp_path, fraction, seed):
  import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
  import tf_keras
  from tf_keras.src.utils import dataset_utils

  root = tf_keras_folder(tmp_path)
  got = load_text_data(str(root), validation_fraction=fraction, seed=seed)
  assert got.class_names == ["cat", "dog", "emu"]
  assert got.test is None
  assert len(got.train) + len(got.validation) == 30
  assert len(got.validation) == int(fraction * 30)

  # Membership: what the public API yields (it also shuffles per epoch, so compare as sets).
  train_ds, val_ds = tf_keras.utils.text_dataset_from_directory(
      str(root / "train"), validation_split=fraction, subset="both", seed=seed, batch_size=None)
  assert train_ds.class_names == got.class_names
  for ds, split in ((train_ds, got.train), (val_ds, got.validation)):
    expected = sorted((t.decode(), got.class_names[int(l)]) for t, l in ds.as_numpy_iterator())
    assert sorted(texts_labels(split, got.class_names)) == expected

  # Order: tf_keras' file list before its per-epoch shuffle.
  paths, labels, _ = dataset_utils.index_directory(str(root / "train"), "inferred", formats=(".txt",),
                                                   shuffle=True, seed=seed)
  for subset, split in (("training", got.train), ("validation", got.validation)):
    sub_paths, sub_labels = dataset_utils.get_training_or_validation_split(paths, labels, fraction,
                                                                           subset)
    assert split.texts == [open(p, encoding="utf-8").read() for p in sub_paths]
    np.testing.assert_array_equal(split.labels, sub_labels)
  assert any("text_dataset_from_directory" in line for line in got.report)


def test_folder_with_validation_and_test_folders(tmp_path):
  root = make_folder(tmp_path / "ds", {
      "train": {"neg": ["bad", "awful", "meh"], "pos": ["good", "great"]},
      "validation": {"neg": ["poor"], "pos": ["fine", "nice"]},
      "test": {"neg": ["dull"], "pos": ["super"]},
  })
  got = load_text_data(root, validation_fraction=0.5)  # Ignored: there is a validation folder.
  assert got.class_names == ["neg", "pos"]
  assert sorted(texts_labels(got.train, got.class_names)) == sorted(
      [("bad", "neg"), ("awful", "neg"), ("meh", "neg"), ("good", "pos"), ("great", "pos")])
  # Given splits keep listing order: class folders sorted, then file names sorted.
  assert texts_labels(got.validation, got.class_names) == [("poor", "neg"), ("fine", "pos"),
                                                           ("nice", "pos")]
  assert texts_labels(got.test, got.class_names) == [("dull", "neg"), ("super", "pos")]
  assert got.train.labels.dtype == np.int32
  assert got.source == f"folder {root}"
  assert "validation: 3 examples (neg: 1, pos: 2)" in got.report
  assert "test: 2 examples (neg: 1, pos: 1)" in got.report


def test_folder_test_fraction_and_class_names_order(tmp_path):
  texts = {c: [f"{c}{i}" for i in range(10)] for c in ("a", "b")}
  root = make_folder(tmp_path / "ds", {"train": texts})
  got = load_text_data(root, class_names=["b", "a"], test_fraction=0.25, validation_fraction=0.2)
  assert got.class_names == ["b", "a"]
  assert (len(got.train), len(got.validation), len(got.test)) == (12, 3, 5)
  for split in (got.train, got.validation, got.test):
    for text, label in zip(split.texts, split.labels):
      assert text[0] == got.class_names[label]
  all_texts = got.train.texts + got.validation.texts + got.test.texts
  assert sorted(all_texts) == sorted(texts["a"] + texts["b"])


def test_folder_ignores_unsup_and_reports_it(tmp_path):
  root = make_folder(tmp_path / "ds", {"train": {"neg": ["n1", "n2"], "pos": ["p1", "p2"],
                                                 "unsup": ["u1"]}})
  got = load_text_data(root, validation_fraction=0.5)
  assert got.class_names == ["neg", "pos"]
  assert "u1" not in got.train.texts + got.validation.texts
  assert any("unsup" in line and "not a class" in line for line in got.report)
  # tf_keras would count unsup as a class, so the equivalence note must not be claimed.
  assert not any("text_dataset_from_directory" in line for line in got.report)


def symlink_root(tmp_path):
  return make_folder(tmp_path / "ds", {"train": {"neg": ["n1", "n2", "n3"], "pos": ["p1", "p2", "p3"]}})


def test_symlink_loop_out_of_the_class_folder_is_refused(tmp_path):
  root = symlink_root(tmp_path)
  train = os.path.join(root, "train")
  link = os.path.join(train, "pos", "loop")
  os.symlink("..", link)  # would reach neg/ through pos/, and pos/loop/pos/loop/... forever
  assert error(dataset=root) == (
      f"{link}: a symlink to {os.path.realpath(train)}, outside its class folder {os.path.join(train, 'pos')}; what "
      "it leads to would be labelled 'pos'. Copy the files into the class folder or remove the link (to keep a "
      "class's files elsewhere, make the class folder itself the symlink).")


def test_symlinked_file_out_of_the_class_folder_is_refused(tmp_path):
  root = symlink_root(tmp_path)
  link = os.path.join(root, "train", "pos", "stolen.txt")
  target = os.path.join(root, "train", "neg", "00.txt")
  os.symlink(target, link)
  message = error(dataset=root)
  assert message.startswith(f"{link}: a symlink to {os.path.realpath(target)}, outside its class folder "
                            f"{os.path.join(root, 'train', 'pos')}; what it leads to would be labelled 'pos'.")


def test_class_folder_symlinked_to_another_class_is_refused(tmp_path):
  root = make_folder(tmp_path / "ds", {"train": {"neg": ["n1", "n2"]}, "validation": {"neg": ["v"], "pos": ["w"]}})
  train = os.path.join(root, "train")
  os.symlink("neg", os.path.join(train, "pos"))
  real_neg = os.path.realpath(os.path.join(train, "neg"))
  assert error(dataset=root) == (
      f"{os.path.join(train, 'neg')} and {os.path.join(train, 'pos')} lead to the same files (real paths {real_neg} "
      f"and {real_neg}), so each would be an example of both classes. Make each class folder (or the folder its "
      "symlink points to) hold only that class's files.")


def test_symlinks_within_the_class_folder_are_followed_once(tmp_path):
  root = symlink_root(tmp_path)
  pos = os.path.join(root, "train", "pos")
  write(os.path.join(pos, "sub", "p4.txt"), "p4")
  os.symlink("..", os.path.join(pos, "sub", "up"))  # a loop inside pos/: walked once
  os.symlink("sub", os.path.join(pos, "alias"))  # the same folder again
  os.symlink("00.txt", os.path.join(pos, "again.txt"))  # the same file again
  got = load_text_data(root, validation_fraction=0.25)
  texts = sorted(got.train.texts + got.validation.texts)
  assert texts == ["n1", "n2", "n3", "p1", "p2", "p3", "p4"]
  train = os.path.join(root, "train")
  # alias/ sorts before sub/, so sub/'s files are listed under alias/ and alias/up is the first loop back to pos/.
  assert f"{pos}: skipped 2 symlinked folders that lead to a folder already listed (first: " \
         f"{os.path.join(pos, 'alias', 'up')} -> {pos})" in got.report
  assert not any("text_dataset_from_directory" in line for line in got.report)  # it would list them otherwise
  assert f"{train}: read 1 files once that are reached twice through a symlink (first: " \
         f"{os.path.join(pos, 'again.txt')}, the same file as {os.path.join(pos, '00.txt')})" in got.report


def test_class_folder_symlinked_elsewhere_is_read(tmp_path):
  elsewhere = make_folder(tmp_path / "store", {"x": {"pos": ["p1", "p2"]}})
  root = make_folder(tmp_path / "ds", {"train": {"neg": ["n1", "n2"]}})
  os.symlink(os.path.join(elsewhere, "x", "pos"), os.path.join(root, "train", "pos"))
  got = load_text_data(root, validation_fraction=0.5)
  assert sorted(texts_labels(got.train, got.class_names) + texts_labels(got.validation, got.class_names)) == [
      ("n1", "neg"), ("n2", "neg"), ("p1", "pos"), ("p2", "pos")]


# ----------------------------------------------------------------------------------------------------
# CSV, TSV, JSONL.


def expected_split(n, seed, validation_fraction, test_fraction=0.0):
  """The documented procedure, written out independently."""
  order = list(np.random.RandomState(seed).permutation(n))
  n_test = int(test_fraction * n)
  test, rest = order[n - n_test:], order[:n - n_test]
  n_val = int(validation_fraction * len(rest))
  return rest[:len(rest) - n_val], rest[len(rest) - n_val:], test


def test_csv_names_multiline_and_split(tmp_path):
  rows = [f'"line one\nline two, {i}",{"pos" if i % 3 else "neg"}\n' for i in range(10)]
  path = write(str(tmp_path / "a.csv"), "text,label\n" + "".join(rows))
  got = load_text_data(path, seed=3)
  assert got.class_names == ["neg", "pos"]
  assert got.source == f"csv {path}"
  train_idx, val_idx, _ = expected_split(10, 3, 0.2)
  assert got.train.texts == [f"line one\nline two, {i}" for i in train_idx]
  assert got.validation.texts == [f"line one\nline two, {i}" for i in val_idx]
  assert list(got.validation.labels) == [1 if i % 3 else 0 for i in val_idx]
  assert got.test is None
  assert any(line.startswith("validation: the last 2 of 10") for line in got.report)
  again = load_text_data(path, seed=3)
  assert again.train.texts == got.train.texts
  assert load_text_data(path, seed=4).train.texts != got.train.texts


def test_tsv_integer_ids_with_other_columns(tmp_path):
  lines = ["label\tsource\ttext"] + [f"{i % 3}\tweb\ttext {i}" for i in range(12)]
  path = write(str(tmp_path / "a.tsv"), "\r\n".join(lines) + "\r\n")
  got = load_text_data(path, validation_fraction=0.25, test_fraction=0.2, seed=0)
  assert got.class_names == ["0", "1", "2"]
  train_idx, val_idx, test_idx = expected_split(12, 0, 0.25, 0.2)
  assert (len(got.train), len(got.validation), len(got.test)) == (8, 2, 2)
  assert got.test.texts == [f"text {i}" for i in test_idx]
  assert got.validation.texts == [f"text {i}" for i in val_idx]
  assert list(got.train.labels) == [i % 3 for i in train_idx]


def test_jsonl_with_validation_and_test_files(tmp_path):
  def jsonl(name, records):
    import json
    return write(str(tmp_path / name), "".join(json.dumps(r) + "\n" for r in records) + "\n\n")

  train = jsonl("train.jsonl", [{"review": f"t{i}", "y": "spam" if i % 2 else "ham"} for i in range(6)])
  val = jsonl("val.jsonl", [{"review": "v0", "y": "ham"}, {"review": "v1", "y": "spam"}])
  test = jsonl("test.jsonl", [{"review": "s0", "y": "spam"}, {"review": "s1", "y": "ham"}])
  got = load_text_data(train, validation_file=val, test_file=test, text_column="review",
                       label_column="y")
  assert got.class_names == ["ham", "spam"]
  assert sorted(got.train.texts) == [f"t{i}" for i in range(6)]
  assert texts_labels(got.validation, got.class_names) == [("v0", "ham"), ("v1", "spam")]
  assert texts_labels(got.test, got.class_names) == [("s0", "spam"), ("s1", "ham")]


def test_jsonl_integer_labels_and_digit_strings(tmp_path):
  path = write(str(tmp_path / "a.jsonl"),
               '{"text": "a", "label": 0}\n{"text": "b", "label": "1"}\n'
               '{"text": "c", "label": 1}\n{"text": "d", "label": 0}\n')
  got = load_text_data(path, validation_fraction=0.5)
  assert got.class_names == ["0", "1"]
  assert sorted(texts_labels(got.train, got.class_names) + texts_labels(got.validation, got.class_names)) \
      == [("a", "0"), ("b", "1"), ("c", "1"), ("d", "0")]


def test_class_names_given_accepts_names_and_ids(tmp_path):
  path = write(str(tmp_path / "a.csv"), "text,label\nx,neutral\ny,2\nz,0\nw,positive\nv,negative\n")
  got = load_text_data(path, class_names=["negative", "neutral", "positive"], validation_fraction=0.2)
  assert got.class_names == ["negative", "neutral", "positive"]
  pairs = texts_labels(got.train, got.class_names) + texts_labels(got.validation, got.class_names)
  assert sorted(pairs) == [("v", "negative"), ("w", "positive"), ("x", "neutral"), ("y", "positive"),
                           ("z", "negative")]


def test_duplicates_reported_and_dropped(tmp_path):
  path = write(str(tmp_path / "a.csv"),
               'text,label\nsame,a\n"  same \n",b\nother,b\nsame,a\nthird,a\nfourth,b\n')
  val = write(str(tmp_path / "v.csv"), "text,label\nother,b\nnew,a\nnewer,b\n")
  kept = load_text_data(path, validation_file=val, allow_split_overlap=True)
  assert len(kept.train) == 6 and len(kept.validation) == 3
  assert any("2 texts repeat an earlier one (1 of them with a label different" in line
             for line in kept.report)

  dropped = load_text_data(path, validation_file=val, drop_duplicates=True)
  assert sorted(texts_labels(dropped.train, dropped.class_names)) == [
      ("fourth", "b"), ("other", "b"), ("same", "a"), ("third", "a")]
  assert dropped.validation.texts == ["new", "newer"]
  assert any("dropped 2 duplicate texts, keeping the first occurrence; 1 of them" in line
             for line in dropped.report)
  assert "validation: dropped 1 texts that are also in the training source" in dropped.report
  assert dropped.overlap == {"validation": {"train": 0}}


# ----------------------------------------------------------------------------------------------------
# Overlap between separate splits and training.


def overlap_files(tmp_path):
  train = write(str(tmp_path / "train.csv"), "text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(10)))
  return train, write(str(tmp_path / "val.csv"), "text,label\nv0,a\n t3 ,b\nv1,b\nt4,a\n")


def test_validation_file_equal_to_training_is_refused(tmp_path):
  train, _ = overlap_files(tmp_path)
  assert error(dataset=train, validation_file=train) == (
      f"{train}: 10 of the 10 validation examples are also in the training data {train} (first: {train}, line 2, "
      f"same text as {train}, line 2); scores on them overstate how the model does on unseen text. Pass "
      "--drop_duplicates to drop them, or --allow_split_overlap to keep them knowingly.")


def test_overlapping_validation_file_is_refused_kept_with_warning_or_dropped(tmp_path, caplog):
  train, val = overlap_files(tmp_path)
  message = error(dataset=train, validation_file=val)
  assert message.startswith(f"{val}: 2 of the 4 validation examples are also in the training data {train} (first: "
                            f"{val}, line 3, same text as {train}, line 5)")
  assert "--drop_duplicates" in message and "--allow_split_overlap" in message and "\n" not in message

  kept = load_text_data(train, validation_file=val, allow_split_overlap=True)
  assert kept.validation.texts == ["v0", " t3 ", "v1", "t4"]
  assert kept.overlap == {"validation": {"train": 2}}
  warning = [line for line in kept.report if line.startswith("WARNING: ")]
  assert warning == [f"WARNING: {message.split(';')[0]}; kept (--allow_split_overlap)"]
  assert any(r.levelname == "WARNING" and "2 of the 4 validation examples" in r.getMessage() for r in caplog.records)

  dropped = load_text_data(train, validation_file=val, drop_duplicates=True)
  assert dropped.validation.texts == ["v0", "v1"] and dropped.overlap == {"validation": {"train": 0}}
  assert "validation: dropped 2 texts that are also in the training source" in dropped.report


def test_overlapping_test_file_is_refused_against_training_and_validation(tmp_path):
  train, val = overlap_files(tmp_path)
  test = write(str(tmp_path / "test.csv"), "text,label\nt9,b\nx0,a\nx1,b\n")
  message = error(dataset=train, test_file=test)
  assert message.startswith(f"{test}: 1 of the 3 test examples are also in the training data {train} (first: "
                            f"{test}, line 2, same text as {train}, line 11)")
  clean_val = write(str(tmp_path / "clean_val.csv"), "text,label\nv0,a\nv1,b\nx1,b\n")
  clean_test = write(str(tmp_path / "clean_test.csv"), "text,label\nx0,a\nx1,b\nx2,b\n")
  message = error(dataset=train, validation_file=clean_val, test_file=clean_test)
  assert message.startswith(f"{clean_test}: 1 of the 3 test examples are also in the validation data {clean_val} "
                            f"(first: {clean_test}, line 3, same text as {clean_val}, line 4)")
  assert "--allow_split_overlap" in message

  kept = load_text_data(train, validation_file=clean_val, test_file=clean_test, allow_split_overlap=True)
  assert kept.overlap == {"validation": {"train": 0}, "test": {"train": 0, "validation": 1}}
  dropped = load_text_data(train, validation_file=val, test_file=write(
      str(tmp_path / "t2.csv"), "text,label\nt9,b\nv0,a\nx1,b\nx2,a\n"), drop_duplicates=True)
  assert dropped.test.texts == ["x1", "x2"]
  assert dropped.overlap == {"validation": {"train": 0}, "test": {"train": 0, "validation": 0}}
  assert "test: dropped 1 texts that are also in the validation source" in dropped.report


def test_overlapping_validation_and_test_folders_are_refused(tmp_path):
  root = make_folder(tmp_path / "ds", {"train": {"neg": ["bad", "awful"], "pos": ["good", "great"]},
                                       "validation": {"neg": ["poor"], "pos": ["fine"]},
                                       "test": {"neg": ["dull", "poor"], "pos": ["great"]}})
  message = error(dataset=root)
  test_dir = os.path.join(root, "test")
  assert message.startswith(
      f"{test_dir}: 1 of the 3 test examples are also in the training data {os.path.join(root, 'train')} (first: "
      f"{os.path.join(test_dir, 'pos', '00.txt')}, same text as {os.path.join(root, 'train', 'pos', '01.txt')})")
  kept = load_text_data(root, allow_split_overlap=True)
  assert kept.overlap == {"validation": {"train": 0}, "test": {"train": 1, "validation": 1}}
  assert sum(line.startswith(f"WARNING: {test_dir}: 1 of the 3 test examples") for line in kept.report) == 2


def test_fractions_record_overlap_from_duplicates_without_error(tmp_path):
  path = write(str(tmp_path / "a.csv"), "text,label\n" + "".join(f"t{i % 5},{'ab'[i % 5 % 2]}\n" for i in range(20)))
  got = load_text_data(path, validation_fraction=0.5)  # every text 4 times: the halves share texts
  assert got.overlap["validation"]["train"] > 0
  assert load_text_data(path, validation_fraction=0.5, drop_duplicates=True).overlap == {"validation": {"train": 0}}


def test_replace_decodes_and_reports(tmp_path):
  path = write(str(tmp_path / "a.csv"), b"text,label\ncaf\xe9,a\nfine,b\nna\xefve,a\nok,b\nyes,a\n")
  got = load_text_data(path, encoding_errors="replace", validation_fraction=0.2)
  assert sorted(got.train.texts + got.validation.texts) == sorted(
      ["caf\ufffd", "fine", "na\ufffdve", "ok", "yes"])
  assert any("2 lines had bytes that are not utf-8 (first: line 2)" in line for line in got.report)
  latin = load_text_data(path, encoding="latin-1")
  assert "café" in latin.train.texts + latin.validation.texts

  root = make_folder(tmp_path / "ds", {"train": {"a": ["x", "y"], "b": ["z", "w"]}})
  write(os.path.join(root, "train", "a", "bad.txt"), b"\xff\xfe bytes")
  got = load_text_data(root, encoding_errors="replace", validation_fraction=0.2)
  assert "\ufffd\ufffd bytes" in got.train.texts + got.validation.texts
  assert any("1 of 5 files had bytes that are not utf-8" in line for line in got.report)


# ----------------------------------------------------------------------------------------------------
# IMDB download.


def tiny_imdb_tar(shared_text=None):
  """aclImdb's layout, 5 reviews per class and split; shared_text: also the text of one train and one test review."""
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    files = {"aclImdb/README": "readme", "aclImdb/train/urls_pos.txt": "http://x",
             "aclImdb/train/unsup/0_0.txt": "unlabelled"}
    for split in ("train", "test"):
      for cls in ("neg", "pos"):
        for i in range(5):
          files[f"aclImdb/{split}/{cls}/{i}_{i + 1}.txt"] = f"{split} {cls} {i}<br /><br />end"
    if shared_text:
      files["aclImdb/train/pos/0_1.txt"] = files["aclImdb/test/pos/0_1.txt"] = shared_text
    for name, text in files.items():
      content = text.encode()
      info = tarfile.TarInfo(name)
      info.size = len(content)
      tar.addfile(info, io.BytesIO(content))
  return buf.getvalue()


def test_imdb_download_extracts_and_loads(tmp_path, monkeypatch):
  archive = tiny_imdb_tar()
  calls = []

  def fake_urlopen(url, timeout):
    calls.append((url, timeout))
    return io.BytesIO(archive)

  monkeypatch.setattr(data, "_urlopen", fake_urlopen)
  cache = tmp_path / "cache"
  got = load_text_data("imdb", cache_dir=str(cache))
  assert calls == [(data.IMDB_URL, data._DOWNLOAD_TIMEOUT_S)]
  assert got.class_names == ["neg", "pos"]
  assert (len(got.train), len(got.validation), len(got.test)) == (8, 2, 10)
  assert "train pos 3<br /><br />end" in got.train.texts + got.validation.texts
  assert texts_labels(got.test, got.class_names)[0] == ("test neg 0<br /><br />end", "neg")
  assert not (cache / "aclImdb" / "train" / "unsup").exists()
  assert sorted(os.listdir(cache)) == ["aclImdb"]  # No archive, .part or temp folder left behind.
  assert got.source == f"aclImdb at {cache / 'aclImdb'}"
  assert any("downloaded" in line for line in got.report)

  # The extracted folder is reused without touching the network.
  monkeypatch.setattr(data, "_urlopen", lambda *a, **k: pytest.fail("downloaded again"))
  again = load_text_data("imdb", cache_dir=str(cache))
  assert again.train.texts == got.train.texts


def test_imdb_test_split_shared_with_train_is_kept_with_a_warning(tmp_path, monkeypatch):
  """aclImdb's test split is the published benchmark: a text it shares with train/ is kept, warned about and
  counted (refused for a user's own test/ folder); --drop_duplicates drops it."""
  archive = tiny_imdb_tar(shared_text="the same review in both splits")
  monkeypatch.setattr(data, "_urlopen", lambda url, timeout: io.BytesIO(archive))
  got = load_text_data("imdb", cache_dir=str(tmp_path / "cache"))
  assert len(got.test) == 10 and "the same review in both splits" in got.test.texts
  warning = [line for line in got.report if line.startswith("WARNING")]
  assert len(warning) == 1 and "1 of the 10 test examples" in warning[0], got.report
  assert "aclImdb's published test split" in warning[0]
  dropped = load_text_data("imdb", cache_dir=str(tmp_path / "cache"), drop_duplicates=True)
  assert len(dropped.test) == 9 and "the same review in both splits" not in dropped.test.texts


@pytest.mark.parametrize("exc", [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
                                 TimeoutError("timed out")])
def test_imdb_offline_fails_fast_with_fix(tmp_path, monkeypatch, exc):
  def offline(*args, **kwargs):
    raise exc

  monkeypatch.setattr(urllib.request, "urlopen", offline)
  cache = tmp_path / "cache"
  message = error(dataset="imdb", cache_dir=str(cache))
  assert f"Downloading the IMDB dataset from {data.IMDB_URL} failed" in message
  assert "--dataset=/path/to/aclImdb" in message
  assert "train/{neg,pos} and test/{neg,pos}" in message
  assert str(cache / "aclImdb") in message
  assert os.listdir(cache) == []


def test_imdb_corrupt_archive_is_deleted(tmp_path, monkeypatch):
  monkeypatch.setattr(data, "_urlopen", lambda url, timeout: io.BytesIO(b"<html>not a tarball</html>"))
  cache = tmp_path / "cache"
  message = error(dataset="imdb", cache_dir=str(cache))
  assert "aclImdb_v1.tar.gz is not a readable .tar.gz" in message and "deleted" in message
  assert os.listdir(cache) == []


# ----------------------------------------------------------------------------------------------------
# Bad input: each error names the file (and line) and the fix.


@pytest.fixture
def two_class_root(tmp_path):
  return make_folder(tmp_path / "ds", {"train": {"neg": ["n1", "n2", "n3"], "pos": ["p1", "p2", "p3"]}})


def test_missing_paths(tmp_path):
  assert f"--dataset={tmp_path}/nope: no such file or folder" in error(dataset=f"{tmp_path}/nope")
  assert f"--dataset={tmp_path}/nope.csv: no such file" in error(dataset=f"{tmp_path}/nope.csv")
  path = write(str(tmp_path / "a.csv"), "text,label\nx,a\ny,b\n")
  assert f"--validation_file={tmp_path}/v.csv: no such file" in error(
      dataset=path, validation_file=f"{tmp_path}/v.csv")
  message = error(dataset=str(tmp_path))
  assert f"{tmp_path}: no train/ folder" in message and "--dataset" in message


def test_unsupported_extension(tmp_path):
  path = write(str(tmp_path / "a.txt"), "x")
  message = error(dataset=path)
  assert f"--dataset={path}: unsupported file type '.txt'" in message
  assert ".csv, .tsv, .jsonl" in message


def test_no_class_folders_and_single_class(tmp_path):
  os.makedirs(tmp_path / "ds" / "train")
  message = error(dataset=str(tmp_path / "ds"))
  assert f"{tmp_path / 'ds' / 'train'}: found class folders [], need at least 2" in message
  root = make_folder(tmp_path / "one", {"train": {"only": ["x"]}})
  assert "found class folders ['only'], need at least 2" in error(dataset=root)


def test_class_folder_without_txt(two_class_root):
  write(os.path.join(two_class_root, "train", "zzz", "readme.md"), "x")
  message = error(dataset=two_class_root)
  assert f"{os.path.join(two_class_root, 'train', 'zzz')}: no .txt files" in message
  assert "remove the folder" in message


def test_unreadable_file(two_class_root):
  link = os.path.join(two_class_root, "train", "neg", "broken.txt")
  os.symlink(os.path.join(two_class_root, "missing-target"), link)
  assert f"Cannot read {link}" in error(dataset=two_class_root)


def test_non_utf8_strict(tmp_path, two_class_root):
  bad = write(os.path.join(two_class_root, "train", "pos", "bad.txt"), b"line\nsecond caf\xe9")
  message = error(dataset=two_class_root)
  assert f"{bad}, line 2: cannot decode byte 0xe9 (byte offset 15)" in message
  assert "--encoding=" in message and "--encoding_errors=replace" in message
  for name, content, line in (
      ("a.csv", b"text,label\nok,a\ncaf\xe9,b\n", 3),
      ("a.jsonl", b'{"text": "ok", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n', 2)):
    path = write(str(tmp_path / name), content)
    message = error(dataset=path)
    assert f"{path}, line {line}: cannot decode byte 0xe9" in message
    assert "--encoding=" in message and "--encoding_errors=replace" in message


def test_empty_texts(tmp_path, two_class_root):
  blank = write(os.path.join(two_class_root, "train", "neg", "blank.txt"), " \n\t")
  message = error(dataset=two_class_root)
  assert f"{blank}: the text is empty or only whitespace" in message
  path = write(str(tmp_path / "a.csv"), 'text,label\nok,a\n"  ",b\n')
  assert f"{path}, line 3: the text in column 'text' is empty" in error(dataset=path)
  path = write(str(tmp_path / "a.jsonl"), '{"text": "ok", "label": "a"}\n{"text": "", "label": "b"}\n')
  assert f"{path}, line 2: the text in column 'text' is empty" in error(dataset=path)


def test_missing_columns(tmp_path):
  path = write(str(tmp_path / "a.csv"), "sentence,label\nx,a\n")
  message = error(dataset=path)
  assert f"{path}: no column 'text'; the columns are ['sentence', 'label']" in message
  assert "--text_column=" in message
  message = error(dataset=path, text_column="sentence", label_column="y")
  assert "no column 'y'" in message and "--label_column=" in message
  path = write(str(tmp_path / "a.jsonl"), '{"text": "x", "label": "a"}\n{"text": "y", "lbl": "b"}\n')
  message = error(dataset=path)
  assert f"{path}, line 2: no column 'label'; the columns are ['lbl', 'text']" in message
  assert "--label_column=" in message


def test_malformed_rows(tmp_path):
  path = write(str(tmp_path / "a.csv"), 'text,label\n"multi\nline",a\nx,b,extra\n')
  message = error(dataset=path)
  assert f"{path}, line 4: 3 fields, but the header has 2" in message and "double quotes" in message
  path = write(str(tmp_path / "b.csv"), "text,label\nx,a\n\ny,b\n")
  assert f"{path}, line 3: blank line between rows" in error(dataset=path)
  path = write(str(tmp_path / "a.jsonl"), '{"text": "x", "label": "a"}\n\n{"text": "y", "label": "b"}\n')
  assert f"{path}, line 2: blank line" in error(dataset=path)
  path = write(str(tmp_path / "b.jsonl"), '{"text": "x", "label": "a"}\n{"text": "y", label: b}\n')
  assert f"{path}, line 2: not valid JSON" in error(dataset=path)
  path = write(str(tmp_path / "c.jsonl"), '{"text": "x", "label": "a"}\n["y", "b"]\n')
  assert f"{path}, line 2: a JSON list, not an object" in error(dataset=path)
  path = write(str(tmp_path / "d.jsonl"), '{"text": "x", "label": "a"}\n{"text": "y", "label": 1.5}\n')
  message = error(dataset=path)
  assert f"{path}, line 2: label 1.5" in message and "--label_column" in message


def test_empty_files(tmp_path):
  path = write(str(tmp_path / "a.csv"), "")
  assert f"{path}: the file is empty" in error(dataset=path)
  path = write(str(tmp_path / "b.csv"), "text,label\n")
  assert f"{path}: no examples" in error(dataset=path)


def test_bad_labels(tmp_path):
  train = write(str(tmp_path / "train.csv"), "text,label\na,neg\nb,pos\nc,neg\nd,pos\n")
  val = write(str(tmp_path / "val.csv"), "text,label\ne,neg\nf,neutral\n")
  message = error(dataset=train, validation_file=val)
  assert f"{val}, line 3: unknown label 'neutral'; known classes: ['neg', 'pos']" in message
  assert "--class_names" in message

  ids = write(str(tmp_path / "ids.csv"), "text,label\na,0\nb,1\n")
  val = write(str(tmp_path / "val_ids.csv"), "text,label\ne,0\nf,1\ng,2\n")
  message = error(dataset=ids, validation_file=val)
  assert f"{val}, line 4: label id 2 is out of range; ids must be in [0, 2)" in message

  given = write(str(tmp_path / "given.csv"), "text,label\na,neg\nb,5\n")
  message = error(dataset=given, class_names=["neg", "pos"])
  assert f"{given}, line 3: label id 5 is out of range" in message

  negative = write(str(tmp_path / "negative.csv"), "text,label\na,0\nb,-1\n")
  assert f"{negative}, line 3: label -1 is negative" in error(dataset=negative)

  empty = write(str(tmp_path / "empty.csv"), "text,label\na,neg\nb, \n")
  assert f"{empty}, line 3: the label is empty" in error(dataset=empty)


def test_class_sets_must_match(tmp_path):
  train = write(str(tmp_path / "train.csv"), "text,label\na,neg\nb,pos\nc,neg\n")
  val = write(str(tmp_path / "val.csv"), "text,label\ne,neg\n")
  message = error(dataset=train, validation_file=val)
  assert f"{val}: the validation labels cover classes ['neg']" in message
  assert "has classes ['neg', 'pos']" in message and "--validation_file" in message

  root = make_folder(tmp_path / "ds", {"train": {"neg": ["a"], "pos": ["b"]},
                                       "test": {"neg": ["c"], "other": ["d"]}})
  message = error(dataset=root)
  assert f"{os.path.join(root, 'test')}: class folders ['neg', 'other'] differ from the training " \
         "classes ['neg', 'pos']" in message


def test_class_without_training_examples(tmp_path):
  path = write(str(tmp_path / "a.csv"), "text,label\na,neg\nb,pos\n")
  message = error(dataset=path, class_names=["neg", "neutral", "pos"])
  assert f"{path}: no training examples of classes ['neutral']" in message
  ids = write(str(tmp_path / "ids.csv"), "text,label\na,0\nb,2\n")
  assert f"{ids}: no training examples of classes ['1']" in error(dataset=ids)
  root = make_folder(tmp_path / "ds", {"train": {"a": ["x"], "b": ["y"]}})
  message = error(dataset=root, class_names=["a", "c"])
  assert "class folders ['a', 'b'] do not match --class_names=['a', 'c']" in message


def test_empty_splits(tmp_path, two_class_root):
  message = error(dataset=two_class_root, validation_fraction=0.1)
  assert "--validation_fraction=0.1 of 6 training examples leaves 0 for validation" in message
  path = write(str(tmp_path / "a.csv"), "text,label\na,x\nb,y\nc,x\n")
  val = write(str(tmp_path / "v.csv"), "text,label\na,x\nb,y\n")
  message = error(dataset=path, validation_file=val, drop_duplicates=True)
  assert f"{val}: the validation split has no examples left after dropping duplicates" in message
  make_folder(two_class_root, {"test": {"neg": ["t"], "pos": ["u"]}})
  message = error(dataset=two_class_root, test_fraction=0.2)
  assert "--test_fraction=0.2" in message and os.path.join(two_class_root, "test") in message


def test_bad_options(tmp_path, two_class_root):
  assert "--encoding=utf-9 is not an encoding" in error(dataset=two_class_root, encoding="utf-9")
  assert "--encoding_errors=nope" in error(dataset=two_class_root, encoding_errors="nope")
  assert "--validation_fraction=1.5" in error(dataset=two_class_root, validation_fraction=1.5)
  assert "--class_names=['a', 'a'] lists ['a'] more than once" in error(
      dataset=two_class_root, class_names=["a", "a"])
  message = error(dataset=two_class_root, validation_file=str(tmp_path / "v.csv"))
  assert "--validation_file/--test_file are for .csv/.tsv/.jsonl datasets" in message


def test_hash_collisions_are_confirmed_on_the_text(tmp_path, monkeypatch):
  """Duplicates and overlap are found by 8-byte hashes and confirmed on the text: with every hash equal (all
  texts collide), the counts, the dropped rows and the refusal name the same examples as with real hashes."""
  path = write(str(tmp_path / "a.csv"), 'text,label\nsame,a\n"  same ",b\nother,b\nsame,a\nthird,a\nfourth,b\n')
  val = write(str(tmp_path / "v.csv"), "text,label\nother,b\nnew,a\nnewer,b\n")

  def load(**kwargs):
    got = load_text_data(path, validation_file=val, **kwargs)
    return sorted(texts_labels(got.train, got.class_names)), list(got.validation.texts), got.overlap, got.report

  real = [load(drop_duplicates=True), load(allow_split_overlap=True)]
  refused = error(dataset=path, validation_file=val)
  monkeypatch.setattr(data, "_digest", lambda text: bytes(data.HASH_BYTES))  # every hash, also those of parsing
  assert [load(drop_duplicates=True), load(allow_split_overlap=True)] == real
  assert error(dataset=path, validation_file=val) == refused
  assert real[0][1] == ["new", "newer"] and real[1][2] == {"validation": {"train": 1}}


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_csv_lines_end_as_in_a_file_opened_with_newline_empty(tmp_path, newline):
  """Rows are read from the decoded text a line at a time; every line end csv knows (\\n, \\r\\n, \\r) ends a row,
  a line break inside quotes stays in the text, and line numbers count the same way."""
  rows = ["text,label", "plain,a", '"two' + newline + 'lines",b', "after,a", "last,b"]
  path = write(str(tmp_path / "a.csv"), newline.join(rows) + newline)
  got = load_text_data(path, validation_file=None, test_file=None, validation_fraction=0.25, seed=0)
  texts = sorted(got.train.texts + got.validation.texts)
  assert texts == sorted(["plain", "two" + newline + "lines", "after", "last"])
  assert any(f"1 rows span several lines (quoted fields with line breaks; first: lines 3-4)" in line
             for line in got.report), got.report
  bad = write(str(tmp_path / "bad.csv"), newline.join(rows + ["x,y,z"]) + newline)
  assert error(dataset=bad).startswith(f"{bad}, line 7: 3 fields, but the header has 2.")


def test_a_file_larger_than_a_read_chunk_is_read_whole_and_in_order(tmp_path):
  """Files are decoded and parsed 1 MB at a time: rows (and multi-byte characters) that cross a chunk boundary
  come out whole, a byte-order mark is removed, and a bad byte far into the file still names its line."""
  texts = [f"caf\u00e9 \u2603 review {i} " + "x" * (i % 97) for i in range(30000)]  # ~2.3 MB
  body = "".join(json.dumps({"text": t, "label": "ab"[i % 2]}) + "\n" for i, t in enumerate(texts))
  path = write(str(tmp_path / "big.jsonl"), "\ufeff" + body)
  got = load_text_data(path, validation_fraction=0.1)
  assert sorted(got.train.texts + got.validation.texts) == sorted(texts)
  assert f"{path}: removed the byte-order mark at the start" in got.report
  csv_path = write(str(tmp_path / "big.csv"), ("text,label\n" + "".join(f"{t},{'ab'[i % 2]}\n" for i, t in
                                                                         enumerate(texts))).encode() + b"\xff,a\n")
  assert error(dataset=csv_path).startswith(f"{csv_path}, line 30002: cannot decode byte 0xff")


# Texts of UTF-8 files stay in the file.

_TRICKY = ["plain", "caf\u00e9 \u2603 \U0001f600", "  spaced  ", "with, comma", 'a "quoted" word', "two\r\nlines",
           "line\nbreak", "u2028\u2028inside", "last one"]


def _table(path, texts, ext, bom=False, newline="\n"):
  """A labelled table of `texts` (labels a/b alternating) in the format of `ext`."""
  labels = ["ab"[i % 2] for i in range(len(texts))]
  if ext == ".jsonl":
    body = "".join(json.dumps({"text": t, "label": l}, ensure_ascii=False) + "\n" for t, l in zip(texts, labels))
  else:
    out = io.StringIO()
    csv.writer(out, delimiter="," if ext == ".csv" else "\t", lineterminator=newline).writerows(
        [["label", "text"]] + [[l, t] for t, l in zip(texts, labels)])
    body = out.getvalue()
  return write(path, ("\ufeff" if bom else "") + body)


@pytest.mark.parametrize("ext,newline", [(".csv", "\n"), (".csv", "\r\n"), (".tsv", "\n"), (".jsonl", "\n")])
def test_texts_of_a_utf8_file_are_read_back_from_it(tmp_path, ext, newline):
  """A UTF-8 table's splits hold their rows' byte ranges, not the texts: reading them gives exactly the texts
  written (multi-line quoted rows, non-ASCII, a byte-order mark), and a file changed since stops with its path."""
  texts = _TRICKY if ext != ".tsv" else [t for t in _TRICKY if not set(t) & set('\r\n"')]  # TSV read literally
  texts = [f"{t} {i}" for i in range(3) for t in texts]
  path = _table(str(tmp_path / f"a{ext}"), texts, ext, bom=True, newline=newline)
  got = load_text_data(path, validation_fraction=0.3, seed=1)
  assert isinstance(got.train.texts, data.FileTexts) and isinstance(got.validation.texts, data.FileTexts)
  assert sorted(got.train.texts + got.validation.texts) == sorted(texts)
  assert got.train.texts[1:3] == [got.train.texts[1], got.train.texts[2]] and got.train.texts[-1] == list(
      got.train.texts)[-1]
  labels = {t: "ab"[i % 2] for i, t in enumerate(texts)}  # as _table writes them
  assert [labels[t] for t in got.train.texts] == [got.class_names[label] for label in got.train.labels]
  np.testing.assert_array_equal(got.train.hashes(), data.text_hashes(list(got.train.texts)))
  with open(path, "r+b") as f:  # one character of a text changed in place, same length
    content = f.read()
    at = content.index(b"spaced")
    f.seek(at)
    f.write(b"SPACED")
  with pytest.raises(DataError, match=f"^{path}: changed while this run was reading it"):
    list(got.train.texts + got.validation.texts)


def test_a_utf8_file_gives_the_same_splits_as_texts_held_in_memory(tmp_path):
  """The same ASCII file read as UTF-8 (texts read back from the file) and as latin-1 (texts held as str): the
  same splits, order, labels, hashes and report, with --drop_duplicates and an overlapping validation file."""
  texts = [t.encode("ascii", "replace").decode() for t in _TRICKY]
  train = _table(str(tmp_path / "t.csv"), [f"{t} {i % 7}" for i in range(40) for t in texts[:2]] + texts, ".csv",
                 newline="\r\n")
  val = _table(str(tmp_path / "v.csv"), texts[:4] + ["fresh", "fresher"], ".csv")
  loads = [load_text_data(train, validation_file=val, encoding=enc, drop_duplicates=True, test_fraction=0.2)
           for enc in ("utf-8", "latin-1")]
  assert isinstance(loads[0].train.texts, data.FileTexts) and isinstance(loads[1].train.texts, list)
  for name in ("train", "validation", "test"):
    utf8, held = getattr(loads[0], name), getattr(loads[1], name)
    assert utf8.texts == held.texts and list(utf8.texts) == held.texts
    np.testing.assert_array_equal(utf8.labels, held.labels)
    np.testing.assert_array_equal(utf8.hashes(), held.hashes())
  assert loads[0].report == loads[1].report and loads[0].overlap == loads[1].overlap
