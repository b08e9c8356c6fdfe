"""bertclf.splits: a run records its splits; eval.py never scores examples the run trained or selected on, and a
resume on other data is refused unless asked for."""
import json
import os

import pytest
import tensorflow as tf

from bertclf import data
from bertclf import errors
from bertclf import splits
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
  assert splits.fingerprints(a) == splits.fingerprints(b)
  record = splits.fingerprints(a)
  assert record["splits"]["train"]["num_examples"] == 16 and "test" not in record["splits"]
  assert len(record["splits"]["validation"]["examples"]) == 4 * 16
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
  assert len(merged["splits"]["train"]["examples"]) == 2 * 16 * 16  # both runs' training texts
  assert merged["earlier_sources"] == [first["source"]]


def test_overlapping_split_is_refused_and_the_recorded_one_passes(tmp_path):
  path = write_csv(tmp_path / "a.csv", 20)
  run = data.load_text_data(path, seed=1)
  model_dir = str(tmp_path / "run")
  splits.write(model_dir, splits.fingerprints(run))
  assert splits.check_not_trained_on(model_dir, "validation", run.validation, "advice")
  leaky = data.load_text_data(path, seed=1, test_fraction=0.2)  # the route: --test_fraction at eval time
  with pytest.raises(errors.UserError, match=r"--split=test: 4 of its 4 examples .*advice$"):
    splits.check_not_trained_on(model_dir, "test", leaky.test, "advice")
  unseen = data.load_text_data(path, seed=1, test_file=write_csv(tmp_path / "t.csv", 6, offset=50))
  assert splits.check_not_trained_on(model_dir, "test", unseen.test, "advice")
  assert not splits.check_not_trained_on(str(tmp_path / "no_record"), "test", unseen.test, "advice")


def test_train_records_splits_eval_refuses_test_fraction_and_resume_refuses_other_data(tmp_path, tiny_hub):
  csv = write_csv(tmp_path / "a.csv", 40)
  run = run_train(tmp_path / "run", tiny_hub, csv, train_steps=2, batch_size=8)
  with open(os.path.join(run, splits.SPLITS_FILE)) as f:
    assert json.load(f)["splits"]["train"]["num_examples"] == 32
  with pytest.raises(errors.UserError, match="has no test split. The run held out no test split.*--test_file"):
    run_eval(model_dir=run, plots=False)
  with pytest.raises(errors.UserError, match="--split=test: 8 of its 8 examples .*The run held out no test split"):
    run_eval(model_dir=run, plots=False, test_fraction=0.2)
  run_eval(model_dir=run, plots=False, test_file=write_csv(tmp_path / "t.csv", 10, offset=100))
  with open(os.path.join(run, "eval_test.json")) as f:
    assert json.load(f)["num_examples"] == 10
  with pytest.raises(errors.UserError, match="trained on other data"):
    run_train(tmp_path / "run", tiny_hub, write_csv(tmp_path / "b.csv", 40, offset=200), train_steps=4, batch_size=8)
