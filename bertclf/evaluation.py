"""Scoring a model on a tokenized split under any strategy: per-example probabilities, loss and metrics.

Used by train.py (validation) and eval.py (any split), so both report the same numbers for the same weights.
"""
import numpy as np

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf import pipeline


def make_predict_fn(strategy, model, loss_def):
  """Returns predict(data, global_batch_size) → (probabilities [N, C], per-example loss [N]), in data order."""
  @tf.function
  def step(batch):
    def replica_fn(batch):
      features, labels, weights = batch
      logits = tf.cast(model(features, training=False), tf.float32)  # [b, L]
      return loss_def.probabilities(logits), loss_def.per_example(labels, logits), weights
    return strategy.run(replica_fn, args=(batch,))

  def predict(data, global_batch_size):
    dataset_fn, num_batches = pipeline.eval_dataset_fn(data, global_batch_size)
    dist = strategy.distribute_datasets_from_function(dataset_fn)
    probs, losses, weights = [], [], []
    for batch in dist:
      # strategy.gather concatenates the replicas in order: the pipeline's example order.
      p, l, w = (strategy.gather(t, axis=0).numpy() for t in step(batch))
      probs.append(p), losses.append(l), weights.append(w)
    keep = np.concatenate(weights) > 0  # drop the weight-0 padding of the last batch
    probs, losses = np.concatenate(probs)[keep], np.concatenate(losses)[keep]
    if len(probs) != len(data):
      raise RuntimeError(f"Scored {len(probs)} examples of {len(data)}: the eval pipeline lost examples.")
    return probs, losses
  return predict


def basic_metrics(probs, losses, labels):
  """loss, accuracy and the example count."""
  return {"loss": float(np.mean(losses)), "accuracy": float(np.mean(probs.argmax(-1) == labels)),
          "num_examples": int(len(labels))}
