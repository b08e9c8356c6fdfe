"""bertclf.splits: a run records its splits; eval.py never scores examples the run trained or selected on, and a
resume on other data is refused unless asked for."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bertclf import data
from bertclf import errors
from bertclf import splits
from harness import plain
from harness import run_eval
from harness import run_train


def write_csv(path, n, offset=0):
  with open(path, "w", encoding="utf-8") as f:
    f.write("text,label\n" + "".join(f"the movie number {i} was {'great' if i % 2 else 'awful'},"
                                     f"{'pos' if i % 2 else 'neg'}\n" for i in range(offset, offset + n)))
  return str(path)


def save_checkpoint(model_dir):
  tf.train.Checkpoint(v=tf.Variable(1.0)).save(os.path.join(model_dir, "ckpt"))


def test_fingerprints_ignore_order_and_see_labels(tmp_path):
  path = write_csv(tmp_path / "a.csv", 20)
  a, b = data.load_text_data(path, seed=1), data.load_text_data(path, seed=1)
  assert plain(splits.fingerprints(a)) == plain(splits.fingerprints(b))
  record = splits.fingerprints(a)
  assert record["splits"]["train"]["num_examples"] == 16 and "test" not in record["splits"]
  assert len(record["splits"]["validation"]["examples"]) == 4
  shuffled = data.Split(a.train.texts[::-1], a.train.labels[::-1])
  assert splits.split_record(shuffled, False)["fingerprint"] == record["splits"]["train"]["fingerprint"]
  relabelled = data.Split(a.train.texts, 1 - a.train.labels)
  assert splits.split_record(relabelled, False)["fingerprint"] != record["splits"]["train"]["fingerprint"]


def test_resume_on_other_data_is_refused_unless_asked(tmp_path):
  model_dir = str(tmp_path / "run")
  first = splits.fingerprints(data.load_text_data(write_csv(tmp_path / "a.csv", 20), seed=1))
  other = splits.fingerprints(data.load_text_data(write_csv(tmp_path / "b.csv", 20, offset=100), seed=1))
  assert splits.check_same_data(model_dir, first) == first  # nothing there yet
  splits.write(model_dir, first)
  assert splits.check_same_data(model_dir, other) == other  # a record but no checkpoint: a fresh run
  save_checkpoint(model_dir)
  assert splits.check_same_data(model_dir, first) == first
  with pytest.raises(errors.UserError, match="holds checkpoints trained on other data.*--resume_on_new_data"):
    splits.check_same_data(model_dir, other)
  merged = splits.check_same_data(model_dir, other, allow_new_data=True)
  assert merged["splits"]["train"]["fingerprint"] == other["splits"]["train"]["fingerprint"]
  assert len(merged["splits"]["train"]["examples"]) == 2 * 16  # both runs' training texts
  assert merged["earlier_sources"] == [first["source"]]


def test_overlapping_split_is_refused_unless_allowed_and_counted(tmp_path):
  path = write_csv(tmp_path / "a.csv", 20)
  run = data.load_text_data(path, seed=1)
  model_dir = str(tmp_path / "run")
  splits.write(model_dir, splits.fingerprints(run))
  assert splits.check_not_trained_on(model_dir, "validation", run.validation, "advice") == {"train": 0,
                                                                                           "validation": 4}
  assert splits.check_not_trained_on(model_dir, "train", run.train, "advice") == {"train": 16, "validation": 0}
  leaky = data.load_text_data(path, seed=1, test_fraction=0.2)  # --test_fraction given only at eval time
  with pytest.raises(errors.UserError) as refused:
    splits.check_not_trained_on(model_dir, "test", leaky.test, "advice")
  counts = splits.check_not_trained_on(model_dir, "test", leaky.test, "advice", allow=True)
  assert sum(counts.values()) == 4 and set(counts) == {"train", "validation"}
  listed = ", ".join(f"{n} in its {other} split" for other, n in counts.items() if n)
  assert str(refused.value) == (
      f"--split=test: 4 of its 4 examples are ones the run trained on or selected by ({listed}"
      + (", which chose the best checkpoint" if counts["validation"] else "")
      + f"; recorded in {os.path.join(model_dir, splits.SPLITS_FILE)}); scoring them would overstate how the model "
      "does on unseen text. advice To score them knowingly, pass --allow_split_overlap.")
  unseen = data.load_text_data(path, seed=1, test_file=write_csv(tmp_path / "t.csv", 6, offset=50))
  assert splits.check_not_trained_on(model_dir, "test", unseen.test, "advice") == {"train": 0, "validation": 0}
  assert splits.check_not_trained_on(str(tmp_path / "no_record"), "test", unseen.test, "advice") is None


def test_example_hashes_are_a_memory_mapped_file_beside_splits_json_and_inline_hex_still_reads(tmp_path):
  """splits.json names splits.<split>.npy (sorted uint64 hashes, read memory-mapped); a splits.json that holds the
  hashes inline as hex digests counts the same overlap."""
  path = write_csv(tmp_path / "a.csv", 20)
  run = data.load_text_data(path, seed=1)
  record = splits.fingerprints(run)
  model_dir = str(tmp_path / "run")
  splits.write(model_dir, record)
  with open(os.path.join(model_dir, splits.SPLITS_FILE)) as f:
    assert json.load(f)["splits"]["train"]["examples"] == "splits.train.npy"
  saved = splits.read(model_dir)["splits"]["train"]["examples"]
  assert isinstance(saved, np.memmap) and saved.tolist() == sorted(record["splits"]["train"]["examples"].tolist())
  inline_dir = tmp_path / "inline"
  inline_dir.mkdir()
  inline = plain(record)
  for split in inline["splits"].values():
    if "examples" in split:
      split["examples"] = np.asarray(split["examples"], np.uint64).astype(">u8").tobytes().hex()
  (inline_dir / splits.SPLITS_FILE).write_text(json.dumps(inline))
  for folder in (model_dir, str(inline_dir)):
    assert splits.check_not_trained_on(folder, "validation", run.validation, "advice") == {"train": 0,
                                                                                          "validation": 4}


def test_splits_json_records_the_overlap_the_data_kept(tmp_path):
  path = write_csv(tmp_path / "a.csv", 20)
  test = write_csv(tmp_path / "t.csv", 6, offset=17)  # 3 of its texts are training or validation texts
  kept = data.load_text_data(path, seed=1, test_file=test, allow_split_overlap=True)
  record = splits.fingerprints(kept)
  assert record["overlap"]["validation"] == {"train": 0}
  assert sum(record["overlap"]["test"].values()) == 3


@pytest.mark.slow
def test_train_records_splits_eval_refuses_test_fraction_and_resume_refuses_other_data(tmp_path, tiny_hub):
  csv = write_csv(tmp_path / "a.csv", 40)
  run = run_train(tmp_path / "run", tiny_hub, csv, train_steps=2, batch_size=8)
  with open(os.path.join(run, splits.SPLITS_FILE)) as f:
    assert json.load(f)["splits"]["train"]["num_examples"] == 32
  with pytest.raises(errors.UserError, match="has no test split. The run held out no test split.*--test_file"):
    run_eval(model_dir=run, plots=False)
  with pytest.raises(errors.UserError, match="--split=test: 8 of its 8 examples .*The run held out no test split.*"
                     "pass --allow_split_overlap.$"):
    run_eval(model_dir=run, plots=False, test_fraction=0.2)
  run_eval(model_dir=run, plots=False, test_fraction=0.2, allow_split_overlap=True)
  with open(os.path.join(run, "eval_test.json")) as f:
    overlap = json.load(f)["overlap_with_training"]
    assert sum(overlap.values()) == 8 and set(overlap) == {"train", "validation"}
  run_eval(model_dir=run, plots=False, test_file=write_csv(tmp_path / "t.csv", 10, offset=100))
  with open(os.path.join(run, "eval_test.json")) as f:
    result = json.load(f)
    assert result["num_examples"] == 10 and result["overlap_with_training"] == {"train": 0, "validation": 0}
  with pytest.raises(errors.UserError, match="trained on other data"):
    run_train(tmp_path / "run", tiny_hub, write_csv(tmp_path / "b.csv", 40, offset=200), train_steps=4, batch_size=8)
  os.remove(os.path.join(run, splits.SPLITS_FILE))  # a run without a record: the overlap is unknown
  run_eval(model_dir=run, plots=False, test_file=write_csv(tmp_path / "t.csv", 10, offset=100))
  with open(os.path.join(run, "eval_test.json")) as f:
    assert json.load(f)["overlap_with_training"] is None


@pytest.mark.parametrize("chunk", [3, 1 << 16])
def test_the_fingerprint_is_the_sha256_of_the_sorted_hash_label_lines(monkeypatch, chunk):
  """splits.json's format, as written by every version: SHA-256 of the sorted "<16 hex>:<label>" lines (so a run
  recorded earlier is still recognised), with labels of two digits and a text repeated under two labels, hashed
  in chunks of lines of any size."""
  import hashlib
  monkeypatch.setattr(splits, "_CHUNK", chunk)
  texts = [f" review {i % 7} " for i in range(40)]
  labels = [(i * 5) % 12 for i in range(40)]
  lines = sorted(f"{hashlib.blake2b(t.strip().encode(), digest_size=8).hexdigest()}:{label}"
                 for t, label in zip(texts, labels))
  record = splits.split_record(data.Split(texts, labels), True)
  assert record["fingerprint"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
  assert record["examples"].tolist() == sorted({int(line.split(":")[0], 16) for line in lines})
  assert record["num_examples"] == 40
