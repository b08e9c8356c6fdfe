"""Scoring a model on a tokenized split under any strategy: per-example probabilities, loss and metrics.

Used by train.py (validation) and eval.py (any split), so both report the same numbers for the same weights.
"""
import numpy as np

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf import pipeline


def make_predict_fn(strategy, model, loss_def, bucket_boundaries_fn=None):
  """Returns predict(data, global_batch_size) → (probabilities [N, C], per-example loss [N]), in data order
  (whatever order the eval pipeline visits them in). bucket_boundaries_fn: token lengths [N] → the bucket
  boundaries to pad this data's batches to (flags.bucket_boundaries); None pads every batch to T."""
  # reduce_retracing: the batches of a bucketed split come in as many lengths as there are buckets (up to 16 by
  # default); the second length traces one function for any length, so the model is traced twice, not per bucket.
  @tf.function(reduce_retracing=True)
  def step(batch):
    def replica_fn(batch):
      features, labels, weights = batch
      logits = tf.cast(model(features, training=False), tf.float32)  # [b, L]
      return loss_def.probabilities(logits), loss_def.per_example(labels, logits), weights
    return strategy.run(replica_fn, args=(batch,))

  def predict(data, global_batch_size):
    bucket_boundaries = bucket_boundaries_fn(data.lengths) if bucket_boundaries_fn else []
    dataset_fn, _ = pipeline.eval_dataset_fn(data, global_batch_size, bucket_boundaries)
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
    order = pipeline.eval_order(data, bucket_boundaries)  # back from the pipeline's order to the data's
    out_probs, out_losses = np.empty_like(probs), np.empty_like(losses)
    out_probs[order], out_losses[order] = probs, losses
    return out_probs, out_losses
  return predict


def basic_metrics(probs, losses, labels):
  """loss, accuracy and the example count."""
  return {"loss": float(np.mean(losses)), "accuracy": float(np.mean(probs.argmax(-1) == labels)),
          "num_examples": int(len(labels))}


def classification_metrics(probs, losses, labels, class_names):
  """basic_metrics plus per-class and macro precision/recall/F1, the confusion matrix and (binary) ROC AUC.

  The macro averages are over `macro_classes`: the classes in the split's labels or predictions.
  """
  from sklearn import metrics as skm  # pylint: disable=g-import-not-at-top  (only eval needs sklearn)
  out = basic_metrics(probs, losses, labels)
  num_classes = len(class_names)
  predicted = probs.argmax(-1)
  p, r, f, support = skm.precision_recall_fscore_support(labels, predicted, labels=range(num_classes),
                                                         zero_division=0)
  out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                             "support": int(support[i])} for i, name in enumerate(class_names)}
  # Macro averages over the classes present in the split (in its labels or its predictions): a class with
  # neither has no F1 to speak of, and counting it as 0 would put perfect predictions at (C-1)/C.
  present = [i for i in range(num_classes) if support[i] or np.any(predicted == i)]
  out.update(macro_precision=float(p[present].mean()), macro_recall=float(r[present].mean()),
             macro_f1=float(f[present].mean()), macro_classes=[class_names[i] for i in present])
  out["confusion_matrix"] = skm.confusion_matrix(labels, predicted, labels=range(num_classes)).tolist()
  if num_classes == 2 and len(set(labels.tolist())) == 2:
    out["roc_auc"] = float(skm.roc_auc_score(labels, probs[:, 1]))
  return out
