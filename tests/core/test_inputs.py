"""Inputs that used to corrupt an experiment silently: quotes that merge table rows, labels that become extra
classes, tiny classes, non-example files. Plain Python (no TensorFlow), like tests/core/test_data.py."""
import json
import os

import pytest

from bertclf.data import DataError, load_text_data


def write(path, content):
  os.makedirs(os.path.dirname(str(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    f.write(content)
  return str(path)


def error(**kwargs):
  with pytest.raises(DataError) as e:
    load_text_data(**kwargs)
  return str(e.value)


def rows(n, label=lambda i: "pos" if i % 2 else "neg", text=lambda i: f"text {i}"):
  return [(text(i), label(i)) for i in range(n)]


def table(path, examples, sep):
  return write(path, f"text{sep}label\n" + "".join(f"{t}{sep}{l}\n" for t, l in examples))


def test_tsv_quotes_are_text_so_rows_never_merge(tmp_path):
  # 40 rows; row 5's text opens a quote that row 10's text would close in CSV-style reading.
  examples = rows(40, text=lambda i: {5: '"starts with a quote', 10: 'has a " inside'}.get(i, f"text {i}"))
  path = table(tmp_path / "a.tsv", examples, "\t")
  got = load_text_data(path)
  assert len(got.train) + len(got.validation) == 40
  texts = set(got.train.texts + got.validation.texts)
  assert '"starts with a quote' in texts and 'has a " inside' in texts
  # Asked for CSV-style quoting, the same file merges rows 5-10 and says so.
  quoted = load_text_data(path, tsv_quoting=True)
  assert len(quoted.train) + len(quoted.validation) == 35
  assert any("1 rows span several lines" in line and "lines 7-12" in line for line in quoted.report)


def test_tsv_extra_tab_names_the_line_and_the_fix(tmp_path):
  path = write(tmp_path / "a.tsv", "text\tlabel\na\tpos\nb\tc\tneg\n")
  message = error(dataset=path)
  assert f"{path}, line 3: 3 fields, but the header has 2" in message and "--tsv_quoting" in message


def test_unclosed_quote_is_reported_where_it_opens(tmp_path):
  path = write(tmp_path / "a.csv", "text,label\na,pos\n\"b,neg\nc,pos\nd,neg\n")
  message = error(dataset=path)
  assert f"{path}, line 3: a double quote opened on this line is never closed" in message
  path = write(tmp_path / "b.csv", "text,label\na,pos\n\"b,neg\nc,pos\nd,neg\ne\",pos,x\nf,neg\n")
  message = error(dataset=path)
  assert f"{path}, line 3: a double quote opened on this line is closed only on line 6" in message


def test_multiline_csv_fields_are_counted_in_the_report(tmp_path):
  path = write(tmp_path / "a.csv", 'text,label\n"two\nlines",pos\nx,neg\n"three\nlines\nhere",neg\ny,pos\n')
  got = load_text_data(path, validation_fraction=0.5)
  assert f"{path}: 2 rows span several lines (quoted fields with line breaks; first: lines 2-3)" in got.report


def test_duplicated_header_column_is_refused(tmp_path):
  path = write(tmp_path / "a.csv", "text,label,text\na,pos,b\nc,neg,d\n")
  message = error(dataset=path)
  assert f"{path}: the header names column 'text' 2 times (fields [1, 3])" in message


def test_labels_differing_by_case_are_refused_with_their_lines(tmp_path):
  examples = rows(20)
  examples[7] = ("text 7", "Pos")
  path = table(tmp_path / "a.csv", examples, ",")
  message = error(dataset=path)
  assert "differ only by case" in message
  assert "'pos' (9 rows, first on line 3)" in message and "'Pos' (1 rows, first on line 9)" in message
  assert "--class_names" in message
  # --class_names accepts what the file says: 'Pos' is then a class of its own.
  got = load_text_data(path, class_names=["neg", "pos", "Pos"], validation_fraction=0.1, seed=1)
  assert got.class_names == ["neg", "pos", "Pos"]


def test_labels_differing_by_surrounding_spaces_are_refused_and_spaces_never_make_a_class(tmp_path):
  examples = rows(20)
  examples[4] = ("text 4", "neg ")
  path = table(tmp_path / "a.csv", examples, ",")
  message = error(dataset=path)
  assert "surrounding spaces" in message and "'neg ' (1 rows, first on line 6)" in message
  got = load_text_data(path, class_names=["neg", "pos"], validation_fraction=0.1, seed=1)
  assert got.class_names == ["neg", "pos"]  # with --class_names, 'neg ' is the class neg
  spaced = table(tmp_path / "b.csv", [(text, f" {label}") for text, label in rows(20)], ",")
  assert load_text_data(spaced, validation_fraction=0.1, seed=1).class_names == ["neg", "pos"]


def test_jsonl_mixing_integer_and_name_labels_is_refused(tmp_path):
  lines = [{"text": f"t{i}", "label": [0, 1, "neg", "pos"][i % 4]} for i in range(12)]
  path = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
  message = error(dataset=path)
  assert "mix integer class ids and class names" in message and "'neg' (3 rows, first on line 3)" in message


def test_integer_labels_message_says_ids_count_from_0(tmp_path):
  path = table(tmp_path / "a.csv", rows(10, label=lambda i: str(1 + i % 2)), ",")
  message = error(dataset=path)
  assert "no training examples of classes ['0']" in message and "counted from 0" in message


def test_tiny_class_is_named_in_the_report(tmp_path):
  examples = rows(300)
  examples[50] = ("text 50", "postive")
  examples[51] = ("text 51", "postive")
  path = table(tmp_path / "a.csv", examples, ",")
  got = load_text_data(path, validation_fraction=0.1, seed=0)
  warnings = [line for line in got.report if line.startswith("WARNING")]
  assert len(warnings) == 1
  assert "class 'postive' has only 2 of 300 training examples (line 52, line 53)" in warnings[0]
  assert not [line for line in load_text_data(table(tmp_path / "b.csv", rows(200), ","), seed=0).report
              if line.startswith("WARNING")]


def test_a_class_lost_to_validation_is_named_with_its_lines(tmp_path):
  examples = rows(20)
  examples[3] = ("text 3", "postive")
  path = table(tmp_path / "a.csv", examples, ",")
  seed = next(s for s in range(100) if 3 in __import__("numpy").random.RandomState(s).permutation(20)[16:])
  message = error(dataset=path, seed=seed)
  assert "class 'postive' has 1 examples (line 5)" in message and "typo" in message


def test_non_txt_files_in_class_folders_are_reported(tmp_path):
  for cls in ("neg", "pos"):
    for i in range(5):
      write(tmp_path / "ds" / "train" / cls / f"{i}.txt", f"{cls} {i}")
  write(tmp_path / "ds" / "train" / "pos" / "extra.text", "pos extra")
  got = load_text_data(str(tmp_path / "ds"))
  assert any("skipped 1 files not ending in .txt" in line and "extra.text" in line for line in got.report)
