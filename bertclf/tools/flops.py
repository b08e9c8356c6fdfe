"""Model FLOPs of BERT training and a measured matmul peak: the two halves of model FLOP utilisation (MFU).

MFU = training FLOPs per example x examples/s / peak FLOP/s, with the peak measured on the same device and dtype
(benchmarks/throughput.py). The count is PaLM's (Chowdhery et al. 2022, appendix B): 6 FLOPs per weight per
token for the dense layers (forward 2, backward 4) plus 12 * layers * hidden * context for attention's
QK^T and AV. Embedding lookups, LayerNorm, softmax, dropout and the optimizer count as cost, not model FLOPs.
"""
import time

import numpy as np

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf


def training_flops_per_token(config, tokens):
  """Forward + backward FLOPs per token of a BERT encoder (bert_config.json dict) at `tokens` context."""
  h, i, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
  dense_weights = 4 * h * h + 2 * h * i  # per layer: Q, K, V, attention output; FFN in and out
  attention = 2 * 2 * tokens * h  # per layer and token, forward: QK^T and AV
  return 3 * n * (2 * dense_weights + attention)  # backward = 2x forward


def training_flops_per_example(config, tokens, cls_only=False):
  """Forward + backward FLOPs of one `tokens`-long example; cls_only: the last layer computes row 0 only.

  With cls_only (--cls_only_last_layer) the last layer's keys and values still cover every token, but its query,
  attention output, FFN and attention rows run for one token: that work is not done, so it is not counted.
  """
  full = training_flops_per_token(config, tokens) * tokens
  if not cls_only:
    return full
  h, i = config["hidden_size"], config["intermediate_size"]
  skipped_per_row = 2 * (2 * h * h + 2 * h * i) + 2 * 2 * tokens * h  # Q, output, FFN; QK^T and AV (forward)
  return full - 3 * (tokens - 1) * skipped_per_row


def measured_peak(dtype, size=2048, repeats=10):
  """Dense matmul FLOP/s on the default device: [size, size] x [size, size] in `dtype`, median of repeats."""
  a = tf.cast(tf.random.normal([size, size], dtype=tf.float32), dtype)
  matmul = tf.function(lambda x: tf.matmul(x, x))
  matmul(a).numpy()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).numpy()
    times.append(time.perf_counter() - start)
  return 2 * size ** 3 / float(np.median(times))
