"""The serving export: a SavedModel that maps raw strings to class probabilities, preprocessing included.

Reload it anywhere with `tf.saved_model.load(path)` after `import tensorflow_text` (its tokenizer ops); no
bertclf import is needed:
  out = tf.saved_model.load(path).signatures["serving_default"](tf.constant(["a great movie"]))
  out["probabilities"]  # [B, C] float32;  out["label"]  # [B] int32;  out["class_name"]  # [B] string
  loaded.classes()  # [C] string: the class names in label order
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf


class Serving(tf.Module):
  """Preprocessing SavedModel + classifier + probabilities, as one tf.Module."""

  def __init__(self, preprocess, model, probabilities_fn, class_names, seq_length):
    super().__init__()
    self.preprocess = preprocess      # the loaded Hub preprocessing model: tracked, so saved with its vocab
    self.model = model
    self.class_names = tf.constant(class_names)
    self._probabilities_fn = probabilities_fn
    self._seq_length = seq_length

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
  def serve(self, text):
    inputs = self.preprocess.bert_pack_inputs([self.preprocess.tokenize(text)], seq_length=self._seq_length)
    logits = tf.cast(self.model(inputs, training=False), tf.float32)  # [B, L]
    probs = self._probabilities_fn(logits)                            # [B, C]
    label = tf.argmax(probs, axis=-1, output_type=tf.int32)           # [B]
    return {"probabilities": probs, "label": label, "class_name": tf.gather(self.class_names, label)}

  @tf.function(input_signature=[])
  def classes(self):
    """The class names, in label order: [C] string."""
    return self.class_names


def export(path, *, preprocess, model, probabilities_fn, class_names, seq_length):
  module = Serving(preprocess, model, probabilities_fn, class_names, seq_length)
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve, "classes": module.classes})
  logging.info("Exported raw-strings-in SavedModel to %s", path)
  return path
