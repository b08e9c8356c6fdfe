"""The native encoder path (--encoder_impl=native): tf-models-official's BertEncoder built in Python.

A TF Hub SavedModel keeps its float32 math inside (tensorflow/hub#466, #790), so a mixed-precision policy only
reaches the head, and XLA cannot cache a compile around it. Building the same `BertEncoder` that
`export_tfhub_lib` exported, under the active Keras policy, and copying the SavedModel's variables into it by
name gives the same function in fp32 and real bf16/fp16 math (attention and dense layers) under mixed precision.

Any SavedModel whose variables do not map one-to-one onto a BertEncoder (ALBERT, Talking-Heads, ...) returns
None with the reason, and the caller falls back to the Hub layer and says so.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf

from official.legacy.bert import configs as bert_configs
from official.nlp.tools import export_tfhub_lib


def _strip(name):
  return name[:-2] if name.endswith(":0") else name


def infer_config(variables):
  """A BertConfig from the shapes of a BERT SavedModel's variables (when it ships no bert_config.json).

  The activation cannot be read off the weights: "gelu" (official's approximate GELU) is what the TF Hub BERTs
  were trained with.
  """
  shapes = {_strip(v.name): v.shape for v in variables}
  needed = ("word_embeddings/embeddings", "position_embedding/embeddings", "type_embeddings/embeddings",
            "transformer/layer_0/self_attention/query/kernel", "transformer/layer_0/intermediate/kernel")
  if any(k not in shapes for k in needed):
    return None
  num_layers = len({k.split("/")[1] for k in shapes if k.startswith("transformer/layer_")})
  vocab_size, width = shapes["word_embeddings/embeddings"]
  hidden, heads, _ = shapes["transformer/layer_0/self_attention/query/kernel"]
  return bert_configs.BertConfig(
      vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=heads,
      intermediate_size=shapes["transformer/layer_0/intermediate/kernel"][1], hidden_act="gelu",
      max_position_embeddings=shapes["position_embedding/embeddings"][0],
      type_vocab_size=shapes["type_embeddings/embeddings"][0],
      embedding_size=width if width != hidden else None)


def bert_encoder(bert_config, cls_only=False):
  """export_tfhub_lib's BertEncoder for `bert_config` (dict outputs, fresh weights), under the current policy.

  cls_only: pooled_output = tanh(dense(last layer's row 0)), and row 0 of the last layer needs every token's keys
  and values but no other row's query, attention output, FFN or dropout: official's output_range=1 slices the
  query side of the last layer to [B, 1, H]. About 5/6 of that layer's matmuls, forward and backward; same
  weights (same names), same pooled_output. (get_bert_encoder takes no output_range, so its encoder is rebuilt
  from its own config with it: ~1 s more at start-up, instead of a copy of official's constructor arguments.)
  """
  encoder = export_tfhub_lib.get_bert_encoder(bert_config)
  if cls_only:
    encoder = type(encoder).from_config({**encoder.get_config(), "output_range": 1})
  return encoder


def build_native_encoder(saved_model, config=None, cls_only=False):
  """BertEncoder (dict outputs) under the current policy, with `saved_model`'s weights; or (None, reason).

  saved_model: the loaded encoder SavedModel (`hub.load(handle)`); config: its bert_config.json as a dict.
  cls_only: the last layer computes the [CLS] row only (see bert_encoder); sequence_output is then [B, 1, H].
  """
  variables = list(getattr(saved_model, "variables", []))  # Keras-saved encoders list them; others may not
  source = {_strip(v.name): v for v in variables}
  bert_config = bert_configs.BertConfig.from_dict(config) if config else infer_config(variables)
  if bert_config is None:
    return None, "its variables are not a BERT encoder's (no word_embeddings/transformer/layer_0/...)"
  encoder = bert_encoder(bert_config, cls_only)
  # Build the variables: [1, 2] dummy ids.
  dummy = tf.ones([1, 2], tf.int32)
  encoder(dict(input_word_ids=dummy, input_mask=dummy, input_type_ids=tf.zeros_like(dummy)))
  targets = {_strip(v.name): v for v in encoder.weights}
  missing = sorted(set(targets) - set(source))
  mismatched = sorted(k for k in set(targets) & set(source) if targets[k].shape != source[k].shape)
  unused = sorted(k for k in set(source) - set(targets) if source[k].trainable)
  if missing or mismatched or unused:
    return None, (f"its variables do not map onto a BertEncoder (missing {missing[:3]}, shape mismatch "
                  f"{mismatched[:3]}, unused {unused[:3]})")
  for name, var in targets.items():
    var.assign(tf.cast(source[name], var.dtype))
  return encoder, None


def load_encoder(load_saved_model, handles, trainable=True, cls_only=False):
  """The native encoder for `handles`, or None (after logging why mixed precision will not reach it)."""
  saved_model = load_saved_model(handles.encoder)
  encoder, reason = build_native_encoder(saved_model, handles.config, cls_only)
  if encoder is None:
    logging.warning("--encoder_impl=native: %s %s; falling back to the TF Hub layer, so mixed precision will "
                    "not reach the encoder (its math stays float32) and XLA recompiles around it.",
                    handles.encoder, reason)
    return None
  encoder.trainable = trainable
  logging.info("--encoder_impl=native: BertEncoder with %d layers, weights from %s, compute dtype %s%s.",
               len(encoder.transformer_layers), handles.encoder, encoder.compute_dtype,
               ", last layer on the [CLS] row only" if cls_only else "")
  return encoder
