"""Baselines a fine-tuned encoder has to beat: the majority class, and TF-IDF + logistic regression.

  python -m bertclf.demo.baselines --flagfile=flags/demo.cfg

loads the data exactly as train.py does (same data flags, same splits), fits both baselines on the training
split, scores the test split (the validation split when there is none), prints a markdown table and writes
<model_dir>/baselines.json. scikit-learn only: no TensorFlow, so it runs in seconds to a minute.
"""
import json
import os
import time

import numpy as np
from sklearn import metrics as skm
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

# Inverse regularization strengths tried on the validation split; C=1 alone when there is none.
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0)
RESULTS_FILE = "baselines.json"


def classification_scores(labels, predicted, num_classes):
  """accuracy, macro F1 (unweighted mean over all classes) and per-class F1 [num_classes].

  A class never predicted and never present scores F1 0 (zero_division=0), as in bertclf.evaluation.
  """
  labels, predicted = np.asarray(labels), np.asarray(predicted)
  f1 = skm.f1_score(labels, predicted, labels=list(range(num_classes)), average=None, zero_division=0)
  return {"accuracy": float(skm.accuracy_score(labels, predicted)), "macro_f1": float(np.mean(f1)),
          "per_class_f1": [float(x) for x in f1]}


def majority_class(train_labels, test_labels, num_classes):
  """Predicts the most frequent training class (the lowest id on ties) for every test example."""
  majority = int(np.argmax(np.bincount(np.asarray(train_labels, np.int64), minlength=num_classes)))
  out = classification_scores(test_labels, np.full(len(test_labels), majority), num_classes)
  out["predicted_class"] = majority
  return out


def _tfidf():
  # Word 1-2 grams; sublinear tf damps repeated words; min_df=2 drops hapaxes (typos, URLs, handles).
  return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)


def _logreg(c, seed):
  return LogisticRegression(C=c, max_iter=1000, random_state=seed)


def tfidf_logreg(train_texts, train_labels, test_texts, test_labels, num_classes, seed=0, *,
                 validation=None, c_grid=C_GRID):
  """TF-IDF word 1-2 grams + multinomial logistic regression, scored on the test texts.

  Args:
    train_texts, train_labels: what the vectorizer and the classifier are fitted on.
    test_texts, test_labels: what is scored.
    num_classes: number of classes (ids 0..num_classes-1).
    seed: random_state of the solver.
    validation: optional (texts, labels); C is then the value of `c_grid` with the best validation macro
      F1 (the first on ties). Without it C=1.

  Returns:
    classification_scores of the test split, plus "C" and (when tuned) "validation_macro_f1" {C: F1}.
  """
  vectorizer = _tfidf()
  x_train = vectorizer.fit_transform(train_texts)
  best_c, tried, model = 1.0, {}, None
  if validation is not None:
    x_val = vectorizer.transform(validation[0])
    for c in c_grid:
      fitted = _logreg(c, seed).fit(x_train, train_labels)
      tried[c] = classification_scores(validation[1], fitted.predict(x_val), num_classes)["macro_f1"]
      if model is None or tried[c] > tried[best_c]:  # strictly better: the first C wins ties
        best_c, model = c, fitted
  else:
    model = _logreg(best_c, seed).fit(x_train, train_labels)
  out = classification_scores(test_labels, model.predict(vectorizer.transform(test_texts)), num_classes)
  out["C"] = best_c
  if tried:
    out["validation_macro_f1"] = {str(c): f for c, f in tried.items()}
  return out


def run(text_data):
  """Both baselines on a `bertclf.data.TextData`: {"split": name, "results": {baseline: scores + seconds}}."""
  split_name = "test" if text_data.test is not None else "validation"
  scored = text_data.test if text_data.test is not None else text_data.validation
  # Tune C on validation only when validation is not what gets scored.
  validation = ((text_data.validation.texts, text_data.validation.labels)
                if text_data.test is not None else None)
  num_classes = len(text_data.class_names)
  results = {}
  start = time.time()
  results["majority_class"] = majority_class(text_data.train.labels, scored.labels, num_classes)
  results["majority_class"]["seconds"] = time.time() - start
  start = time.time()
  results["tfidf_logreg"] = tfidf_logreg(text_data.train.texts, text_data.train.labels, scored.texts,
                                         scored.labels, num_classes, validation=validation)
  results["tfidf_logreg"]["seconds"] = time.time() - start
  for scores in results.values():
    scores["per_class_f1"] = dict(zip(text_data.class_names, scores["per_class_f1"]))
  return {"split": split_name, "num_examples": len(scored), "num_train_examples": len(text_data.train),
          "class_names": list(text_data.class_names), "results": results}


def markdown_table(report):
  """The `run` report as a markdown table: one row per baseline."""
  names = report["class_names"]
  lines = [f"Baselines on the {report['split']} split ({report['num_examples']} examples; trained on "
           f"{report['num_train_examples']})", "",
           "| baseline | accuracy | macro F1 | " + " | ".join(f"F1 {n}" for n in names) + " | seconds |",
           "|---" * (len(names) + 4) + "|"]
  for name, s in report["results"].items():
    label = name + (f" (C={s['C']:g})" if "C" in s else "")
    lines.append(f"| {label} | {s['accuracy']:.4f} | {s['macro_f1']:.4f} | "
                 + " | ".join(f"{s['per_class_f1'][n]:.4f}" for n in names) + f" | {s['seconds']:.1f} |")
  return "\n".join(lines)


def main(argv):
  del argv
  # Flags and data loading are train.py's, imported here so the functions above need no TensorFlow.
  from absl import flags  # pylint: disable=g-import-not-at-top
  from bertclf import data  # pylint: disable=g-import-not-at-top
  from bertclf.demo import demo_data  # pylint: disable=g-import-not-at-top
  from bertclf import flags as bertclf_flags  # pylint: disable=g-import-not-at-top
  flag_values = flags.FLAGS
  text_data = data.load_text_data(demo_data.resolve_dataset(flag_values.dataset), **bertclf_flags.data_kwargs())
  for line in text_data.report:
    print(f"data: {line}")
  report = run(text_data)
  print(markdown_table(report))
  os.makedirs(flag_values.model_dir, exist_ok=True)
  path = os.path.join(flag_values.model_dir, RESULTS_FILE)
  with open(path, "w") as f:
    json.dump(report, f, indent=2)
  print(f"Wrote {path}")


if __name__ == "__main__":
  # `python -m bertclf.demo.baselines` has imported the bertclf package (tf_keras selection) before this runs.
  from absl import app  # pylint: disable=g-import-not-at-top
  from bertclf import flags as _bertclf_flags  # pylint: disable=g-import-not-at-top
  _bertclf_flags.define_flags()
  app.run(main)
