"""The classifier: token ids → encoder → pooled_output → head → logits."""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras

from bertclf.swaps import heads


def build_classifier(encoder_layer, num_logits, head="dense", dropout=0.1, encoder_dropout=True, seed=0):
  """A tf_keras.Model: {input_word_ids, input_mask, input_type_ids} [B, T] int32 → logits [B, num_logits].

  T is left open (None) so the same model runs at any sequence length. Under a mixed-precision policy the head
  computes in the low precision; the caller casts logits to float32 before the loss. encoder_dropout=False
  runs the encoder in inference mode even while training (its weights still train): no dropout inside it.
  """
  inputs = {k: tf_keras.layers.Input(shape=(None,), dtype=tf.int32, name=k)
            for k in ("input_word_ids", "input_mask", "input_type_ids")}
  pooled = encoder_layer(inputs, training=None if encoder_dropout else False)["pooled_output"]  # [B, H]
  logits = heads.HEADS[head](pooled, num_logits, dropout, seed)  # [B, num_logits]
  return tf_keras.Model(inputs, logits, name="classifier")
