"""Per-example predictions of a scored split (eval.py --predictions_output), so runs can be compared pairwise.

One JSON object a line, in the split's order: {"id": position in the split, "label": class id, "text_sha1": the
first 12 hex digits of the text's SHA-1, "probabilities": [C floats in class-id order]}. The id alone pairs
two runs' lines when both loaded the data with the same flags; the text hash lets `read_aligned` prove it.
"""
import hashlib
import json
import os

import numpy as np


def text_hash(text):
  return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def write(path, texts, labels, probs):
  """Writes one line per example: texts [N], labels [N] int, probs [N, C]."""
  if not len(texts) == len(labels) == len(probs):
    raise ValueError(f"{len(texts)} texts, {len(labels)} labels and {len(probs)} probability rows differ.")
  folder = os.path.dirname(path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    for i, (text, label, p) in enumerate(zip(texts, labels, probs)):
      f.write(json.dumps({"id": i, "label": int(label), "text_sha1": text_hash(text),
                          "probabilities": [round(float(x), 7) for x in p]}) + "\n")
  os.replace(path + ".tmp", path)  # a reader never sees half a file


def read(path):
  """(ids [N] int, labels [N] int, text hashes [N] str, probabilities [N, C] float64) of one file."""
  ids, labels, hashes, probs = [], [], [], []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      try:
        row = json.loads(line)
        ids.append(int(row["id"])), labels.append(int(row["label"])), hashes.append(row["text_sha1"])
        probs.append([float(x) for x in row["probabilities"]])
      except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}:{number}: not a line of eval.py --predictions_output ({err}).") from err
  if not ids:
    raise ValueError(f"{path} holds no predictions.")
  if len({len(p) for p in probs}) != 1:
    raise ValueError(f"{path}: rows have different numbers of probabilities.")
  return np.array(ids), np.array(labels), np.array(hashes), np.array(probs, np.float64)


def read_aligned(paths):
  """Reads several runs' files of the same split: (labels [N], probabilities [K, N, C]) in id order.

  Raises ValueError naming the files when they do not hold the same examples (other ids, labels or texts),
  e.g. runs whose data flags differ; pairing such runs example by example would be meaningless.
  """
  first = None
  stacked = []
  for path in paths:
    ids, labels, hashes, probs = read(path)
    order = np.argsort(ids)
    ids, labels, hashes, probs = ids[order], labels[order], hashes[order], probs[order]
    if first is None:
      first = (path, ids, labels, hashes, probs.shape[1])
    else:
      ref_path, ref_ids, ref_labels, ref_hashes, ref_classes = first
      if (len(ids) != len(ref_ids) or (ids != ref_ids).any() or (labels != ref_labels).any() or
          (hashes != ref_hashes).any() or probs.shape[1] != ref_classes):
        raise ValueError(f"{path} and {ref_path} do not score the same examples (ids, labels, texts or "
                         "classes differ): the runs must load the same data with the same data flags.")
    stacked.append(probs)
  return first[2], np.stack(stacked)
