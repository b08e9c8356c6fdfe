"""Small generated stand-ins for offline runs and tests: an aclImdb-layout folder and a tiny Hub encoder.

The reviews are template sentences whose sentiment words decide the label, with neutral filler around them,
so a tiny encoder can learn the task in a few hundred steps: the tiny preset shows the whole path quickly.

  python -m bertclf.tools.toydata --out_dir=runs/tiny_assets   # writes imdb/ and hub/ (skips what exists)
"""
import os
import random

from absl import app
from absl import flags
from absl import logging

POSITIVE = ("great", "good", "wonderful", "amazing", "excellent", "loved", "brilliant", "fun", "lovely", "best")
NEGATIVE = ("bad", "terrible", "awful", "boring", "poor", "hated", "dull", "worst", "sad", "never")
FILLER = ("the movie", "this film", "the story", "the acting", "the music", "the ending", "the script",
          "the characters", "the director", "every scene")


def review(rng, positive):
  """One generated review: 2-4 sentences, each 'the <thing> was <sentiment word>' plus filler."""
  words = POSITIVE if positive else NEGATIVE
  sentences = [f"{rng.choice(FILLER)} was {rng.choice(('really', 'very', 'so', ''))} {rng.choice(words)}."
               for _ in range(rng.randint(2, 4))]
  return " ".join(" ".join(s.split()) for s in sentences)


def write_imdb_like(root, num_train=400, num_test=100, seed=0):
  """Writes <root>/{train,test}/{neg,pos}/<i>_<rating>.txt like aclImdb (plus an ignored train/unsup)."""
  rng = random.Random(seed)
  for split, n in (("train", num_train), ("test", num_test)):
    for i in range(n):
      positive = i % 2 == 0
      folder = os.path.join(root, split, "pos" if positive else "neg")
      os.makedirs(folder, exist_ok=True)
      with open(os.path.join(folder, f"{i}_{rng.randint(7, 10) if positive else rng.randint(1, 4)}.txt"),
                "w", encoding="utf-8") as f:
        f.write(review(rng, positive))
  os.makedirs(os.path.join(root, "train", "unsup"), exist_ok=True)
  with open(os.path.join(root, "train", "unsup", "0_0.txt"), "w", encoding="utf-8") as f:
    f.write("an unlabelled review that must never be used for training.")
  return root


def make_tiny_assets(out_dir, seed=0):
  """<out_dir>/imdb (generated reviews) and <out_dir>/hub (tiny random 2-layer encoder); reuses what exists."""
  from bertclf.tools import hub_export  # pylint: disable=g-import-not-at-top  (TensorFlow only when needed)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  imdb = os.path.join(out_dir, "imdb")
  if not os.path.isdir(os.path.join(imdb, "train")):
    write_imdb_like(imdb, seed=seed)
  hub = os.path.join(out_dir, "hub")
  if not os.path.exists(os.path.join(hub, "encoder", "saved_model.pb")):
    os.makedirs(hub, exist_ok=True)
    vocab = os.path.join(hub, "vocab.txt")
    size = hub_export.write_tiny_vocab(vocab)
    tf.random.set_seed(seed)
    hub_export.export_hub_format(hub, bert_config=hub_export.tiny_bert_config(size), vocab_file=vocab)
  else:
    logging.info("Reusing %s", hub)
  return imdb, hub


def main(_):
  make_tiny_assets(flags.FLAGS.out_dir)


if __name__ == "__main__":
  flags.DEFINE_string("out_dir", "runs/tiny_assets", "Where to write imdb/ and hub/.")
  app.run(main)
