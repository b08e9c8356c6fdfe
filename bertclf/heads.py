"""Classifier heads: pooled_output [B, H] → logits [B, num_logits]. A swap point chosen by --head."""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tf_keras


def dense_head(pooled, num_logits, dropout):
  """The tutorial's head: Dropout then one Dense layer."""
  x = tf_keras.layers.Dropout(dropout, name="head_dropout")(pooled)  # [B, H]
  return tf_keras.layers.Dense(num_logits, name="classifier")(x)     # [B, num_logits]


def tanh_mlp_head(pooled, num_logits, dropout):
  """A hidden tanh layer before the classifier (as the original BERT pooler), for encoders without a pooler."""
  x = tf_keras.layers.Dropout(dropout, name="head_dropout")(pooled)
  x = tf_keras.layers.Dense(pooled.shape[-1], activation="tanh", name="head_hidden")(x)  # [B, H]
  x = tf_keras.layers.Dropout(dropout, name="head_dropout_2")(x)
  return tf_keras.layers.Dense(num_logits, name="classifier")(x)


HEADS = {"dense": dense_head, "tanh_mlp": tanh_mlp_head}
