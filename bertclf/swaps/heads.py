"""Classifier heads: pooled_output [B, H] → logits [B, num_logits]. A swap point chosen by --head.

Weights start from GlorotUniform, the tutorial's (Keras's default), with an explicit seed: the global seed
alone does not give the same init under every strategy, and a research comparison needs the same starting
point. Not BERT's TruncatedNormal(0.02): on the demo data (4,096 examples, 3,351 validation) that small init
left the head behind and cost 1.2 points of validation accuracy after one epoch (seeds 0 and 1, native bf16
+ buckets, 2-core AMD EPYC, 2026-11-25: 0.7368 with it, 0.7490 with Glorot; the tutorial 0.7546). See
docs/BENCHMARKS.md, "Why the defaults are what they are".
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tf_keras


def _init(seed):
  return tf_keras.initializers.GlorotUniform(seed=seed)


def dense_head(pooled, num_logits, dropout, seed):
  """The tutorial's head: Dropout then one Dense layer."""
  x = tf_keras.layers.Dropout(dropout, name="head_dropout")(pooled)  # [B, H]
  return tf_keras.layers.Dense(num_logits, kernel_initializer=_init(seed), name="classifier")(x)  # [B, L]


def tanh_mlp_head(pooled, num_logits, dropout, seed):
  """A hidden tanh layer before the classifier (as the original BERT pooler), for encoders without a pooler."""
  x = tf_keras.layers.Dropout(dropout, name="head_dropout")(pooled)
  x = tf_keras.layers.Dense(pooled.shape[-1], activation="tanh", kernel_initializer=_init(seed),
                            name="head_hidden")(x)  # [B, H]
  x = tf_keras.layers.Dropout(dropout, name="head_dropout_2")(x)
  return tf_keras.layers.Dense(num_logits, kernel_initializer=_init(seed + 1), name="classifier")(x)


HEADS = {"dense": dense_head, "tanh_mlp": tanh_mlp_head}
