"""The input pipeline: texts → int32 token ids on the host, then per-replica batches for `strategy.run`.

Two stages:
1. `tokenize`: a tf.data pipeline maps the TF Hub preprocessing model over batches of raw strings
   (parallel calls, on the host CPU) and keeps the result in host memory. That is the cache: later epochs,
   evaluations and resumed runs never tokenize again within a process.
2. `train_dataset_fn` / `eval_dataset_fn`: functions for `strategy.distribute_datasets_from_function` that
   gather those ids by index, so only int32 token tensors reach the replicas.

The training order is a pure function of (seed, step): epoch e visits a permutation drawn from seed (seed, e),
and step s is batch s % steps_per_epoch of epoch s // steps_per_epoch. Resuming at step s therefore continues
at the same epoch, position and shuffle order with nothing but the step saved in the checkpoint. Each global
batch is the same set of examples whatever the number of replicas or workers: worker w takes its slice of the
global batch and hands consecutive per-replica slices to its replicas.
"""
import dataclasses
import time

import numpy as np

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf

FEATURES = ("input_word_ids", "input_mask", "input_type_ids")


@dataclasses.dataclass
class Tokenized:
  """One split, tokenized: int32 arrays [N, T] per feature, and labels [N]."""
  features: dict
  labels: np.ndarray

  def __len__(self):
    return len(self.labels)

  @property
  def lengths(self):
    """Real (non-padding) tokens per example, [CLS] and [SEP] included: [N]."""
    return self.features["input_mask"].sum(axis=1)


def make_tokenize_fn(preprocess, seq_length):
  """[B] strings → dict of [B, seq_length] int32, via the Hub model's tokenize + bert_pack_inputs."""
  def tokenize(texts):
    tokens = preprocess.tokenize(texts)  # RaggedTensor [B, words, wordpieces]
    return preprocess.bert_pack_inputs([tokens], seq_length=seq_length)
  return tokenize


def tokenize(split, preprocess, seq_length, batch_size=256):
  """Tokenizes a `bertclf.data.Split` in tf.data on the host and returns it as a `Tokenized`."""
  start = time.time()
  tokenize_fn = make_tokenize_fn(preprocess, seq_length)
  ds = tf.data.Dataset.from_tensor_slices(tf.constant(split.texts, tf.string)).batch(batch_size)
  ds = ds.map(tokenize_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.prefetch(tf.data.AUTOTUNE)
  chunks = {k: [] for k in FEATURES}
  with tf.device("/cpu:0"):
    for batch in ds:
      for k in FEATURES:
        chunks[k].append(batch[k].numpy())
  features = {k: np.concatenate(v).astype(np.int32) if v else np.zeros([0, seq_length], np.int32)
              for k, v in chunks.items()}
  out = Tokenized(features, np.asarray(split.labels, np.int32))
  truncated = int((out.lengths == seq_length).sum())
  logging.info("Tokenized %d texts in %.1fs: mean %.1f tokens, %d (%.1f%%) filled all %d positions "
               "(maybe truncated).", len(out), time.time() - start, out.lengths.mean() if len(out) else 0,
               truncated, 100.0 * truncated / max(len(out), 1), seq_length)
  return out


def _gather_fn(data, with_weights):
  """index batch [b] (and weights [b]) → ({feature: [b, T] int32}, labels [b], weights [b] float32)."""
  features = {k: tf.constant(v) for k, v in data.features.items()}
  labels = tf.constant(data.labels)

  def gather(idx, weights):
    batch = {k: tf.gather(v, idx) for k, v in features.items()}
    return batch, tf.gather(labels, idx), weights
  if with_weights:
    return gather
  return lambda idx: gather(idx, tf.ones(tf.shape(idx), tf.float32))


def _split_for_replicas(global_batches, input_context, global_batch_size):
  """[S, G] global batches → this pipeline's per-replica batches [b], in replica order, as a dataset."""
  pipelines = input_context.num_input_pipelines
  replicas_here = input_context.num_replicas_in_sync // pipelines
  b = input_context.get_per_replica_batch_size(global_batch_size)
  share = global_batch_size // pipelines
  pid = input_context.input_pipeline_id

  def split(batch):  # [G] → [replicas_here, b]
    return tf.reshape(batch[pid * share:(pid + 1) * share], [replicas_here, b])
  return global_batches.map(split).unbatch()


def steps_per_epoch(num_examples, global_batch_size):
  """Full global batches per epoch: training drops the remainder (a different one each epoch)."""
  return num_examples // global_batch_size


def train_dataset_fn(data, global_batch_size, seed, start_step=0):
  """dataset_fn for `distribute_datasets_from_function`: endless training batches from global step start_step."""
  n = len(data)
  spe = steps_per_epoch(n, global_batch_size)
  if spe == 0:
    raise ValueError(f"The training split has {n} examples, fewer than one global batch "
                     f"(--batch_size={global_batch_size}); lower --batch_size.")

  def epoch_batches(epoch):  # → [spe, G] indices of one epoch, in its shuffled order
    perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int32), seed=tf.stack([seed, epoch]))
    return tf.data.Dataset.from_tensor_slices(tf.reshape(perm[:spe * global_batch_size], [spe, -1]))

  def dataset_fn(input_context):
    start_epoch, start_pos = divmod(start_step, spe)
    epochs = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max)
    batches = epochs.flat_map(
        lambda e: epoch_batches(e).skip(tf.where(e == start_epoch, np.int64(start_pos), np.int64(0))))
    ds = _split_for_replicas(batches, input_context, global_batch_size)
    ds = ds.map(_gather_fn(data, with_weights=False), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
  return dataset_fn


def eval_dataset_fn(data, global_batch_size):
  """dataset_fn for evaluation: every example exactly once, in order.

  The last partial global batch is padded with weight-0 copies of example 0, so every replica sees full,
  same-shape batches and metrics weighted by `weights` count each real example once.
  """
  n = len(data)
  num_batches = -(-n // global_batch_size)
  idx = np.zeros(num_batches * global_batch_size, np.int32)
  idx[:n] = np.arange(n)
  weights = (np.arange(len(idx)) < n).astype(np.float32)

  def dataset_fn(input_context):
    batches = tf.data.Dataset.from_tensor_slices(
        (idx.reshape(num_batches, -1), weights.reshape(num_batches, -1)))
    idx_ds = _split_for_replicas(batches.map(lambda i, w: i), input_context, global_batch_size)
    w_ds = _split_for_replicas(batches.map(lambda i, w: w), input_context, global_batch_size)
    ds = tf.data.Dataset.zip(idx_ds, w_ds).map(_gather_fn(data, with_weights=True))
    return ds.prefetch(tf.data.AUTOTUNE)
  return dataset_fn, num_batches
