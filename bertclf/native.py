"""The native encoder path (--encoder_impl=native): tf-models-official's BertEncoder built in Python.

A TF Hub SavedModel keeps its float32 math inside (tensorflow/hub#466, #790), so a mixed-precision policy only
reaches the head, and XLA cannot cache a compile around it. Building the same `BertEncoder` that
`export_tfhub_lib` exported, under the active Keras policy, and copying the SavedModel's variables into it by
name gives the same function in fp32 and real bf16/fp16 math (attention and dense layers) under mixed precision.

Any SavedModel whose variables do not map one-to-one onto a BertEncoder (ALBERT, Talking-Heads, ...) returns
None with the reason, and the caller falls back to the Hub layer and says so.

The activation is the one thing the weights do not tell. With a bert_config.json beside the encoder, its
hidden_act is used. Without one (every tfhub.dev download), official's "gelu" (the tanh approximation, which the
TF Hub BERTs were trained with) and exact GELU (Hugging Face's "gelu": MiniLM and most converted models) are
both built in float32 and run on a probe input beside the SavedModel; the one that reproduces it is kept. On
all-MiniLM-L6-v2 (exact GELU) the probe gives a relative difference of 1.2e-6 for exact GELU and 9.4e-4 for the
tanh approximation: the wrong one is small enough to go unnoticed and large enough to change fine-tuning results.
"""
import contextlib

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from bertclf import errors
from official.legacy.bert import configs as bert_configs
from official.nlp.tools import export_tfhub_lib

# Keras serialization of `tf_keras.activations.gelu` (approximate=False): official's `tf_utils.get_activation`
# maps the string "gelu" to the tanh approximation but hands a dict to `tf_keras.activations.get`, which builds
# exact GELU; a dict also survives bert_config.json.
EXACT_GELU = {"module": "keras.activations", "class_name": "function", "config": "gelu",
              "registered_name": "gelu"}
# hidden_act candidates for an encoder without a config file: (name for messages, BertConfig.hidden_act).
ACTIVATIONS = (("tanh-approximate GELU (official's \"gelu\")", "gelu"), ("exact GELU", EXACT_GELU))
# Relative difference (max |native - SavedModel| / max |SavedModel| over pooled and sequence output) on the probe
# input: float32 round-off gives 4e-7 (1-layer test encoder) to 1.2e-6 (all-MiniLM-L6-v2); the wrong GELU gives
# 2e-4 to 9e-4. Above MATCH_TOLERANCE the rebuilt encoder is used with a warning; above REFUSE_TOLERANCE it
# computes another function and is refused.
MATCH_TOLERANCE = 1e-5
REFUSE_TOLERANCE = 1e-2


class NeedsConfig(errors.UserError):
  """A SavedModel with a BERT encoder's variables that neither GELU reproduces: it needs its bert_config.json."""

  def __init__(self, reason, name):
    super().__init__(f"--encoder_impl=native: {name} {reason}. Pass --encoder_impl=hub, or put the encoder's "
                     "bert_config.json (with its hidden_act) beside the encoder folder.")
    self.reason = reason


def _strip(name):
  return name[:-2] if name.endswith(":0") else name


def infer_config(variables):
  """A BertConfig from the shapes of a BERT SavedModel's variables (when it ships no bert_config.json).

  The activation cannot be read off the weights: "gelu" (official's approximate GELU) is what the TF Hub BERTs
  were trained with; `detect_config` checks it against the SavedModel's outputs.
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


@contextlib.contextmanager
def _float32_policy():
  saved = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy("float32")
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(saved)


def _relative_difference(outputs, reference):
  """max |outputs - reference| / max |reference| over pooled_output [B, H] and sequence_output [B, T, H]."""
  diffs = []
  for key in ("pooled_output", "sequence_output"):
    ref = np.asarray(reference[key], np.float64)
    diffs.append(np.abs(np.asarray(outputs[key], np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
  return max(diffs)


def detect_config(saved_model, name):
  """The BertConfig dict of a BERT SavedModel that ships no bert_config.json, with its activation detected.

  Each of ACTIVATIONS is built in float32 with the SavedModel's weights and run on a probe input ([2, 16] token
  ids) beside the SavedModel itself; the closer one is kept, and logged. None when the SavedModel is not a
  BertEncoder (the caller then falls back to the Hub layer). Raises NeedsConfig when neither reproduces it.
  name: the --encoder path or handle, for messages. Costs two extra encoder builds at start-up (all-MiniLM-L6-v2:
  ~4 s on 2 shared CPU cores).
  """
  bert_config = infer_config(list(getattr(saved_model, "variables", [])))
  if bert_config is None:
    return None
  length = min(16, bert_config.max_position_embeddings)
  ids = tf.random.stateless_uniform([2, length], [0, 0], 0, bert_config.vocab_size, tf.int32)  # [2, T]
  probe = dict(input_word_ids=ids, input_mask=tf.ones_like(ids), input_type_ids=tf.zeros_like(ids))
  # Inside a strategy's scope (train.py builds the model there) the SavedModel's restored functions run only in
  # replica context; run them on one replica. Without a strategy this is a plain call.
  strategy = tf.distribute.get_strategy()
  outputs = strategy.run(lambda: saved_model(probe, training=False))  # {pooled_output, sequence_output, ...}
  reference = {k: strategy.experimental_local_results(outputs[k])[0] for k in ("pooled_output", "sequence_output")}
  differences = {}
  with _float32_policy():  # the SavedModel computes in float32 whatever the policy
    for label, act in ACTIVATIONS:
      config = dict(bert_config.to_dict(), hidden_act=act)
      encoder, _ = build_native_encoder(saved_model, config)
      if encoder is None:  # not a BertEncoder: build_native_encoder says why when the caller builds it again
        return None
      differences[label] = _relative_difference(encoder(probe, training=False), reference)
  (best, best_diff), (other, other_diff) = sorted(differences.items(), key=lambda item: item[1])
  if best_diff > REFUSE_TOLERANCE:
    raise NeedsConfig(
        f"has no bert_config.json beside it, and neither GELU rebuilds it (relative difference on a probe input: "
        f"{best} {best_diff:.2g}, {other} {other_diff:.2g})", name)
  log = logging.info if best_diff <= MATCH_TOLERANCE else logging.warning
  log("Native encoder: %s has no bert_config.json; activation detected on a probe input: %s (relative "
      "difference to the SavedModel %.2g; %s: %.2g)%s.", name, best, best_diff, other, other_diff,
      "" if best_diff <= MATCH_TOLERANCE else f"; above {MATCH_TOLERANCE:g}, so the native encoder is not exactly "
      "the SavedModel's function: pass --encoder_impl=hub for that")
  return dict(bert_config.to_dict(), hidden_act=dict(ACTIVATIONS)[best])


def load_encoder(load_saved_model, handles, trainable=True, cls_only=False, required=True):
  """(the native encoder for `handles`, None), or (None, why it cannot be rebuilt).

  required (an explicit --encoder_impl=native): a SavedModel with BERT's variables that neither GELU reproduces
  raises NeedsConfig, whose message names the fix; otherwise (--encoder_impl=auto) that is one more reason.
  """
  saved_model = load_saved_model(handles.encoder)
  try:
    config = handles.config or detect_config(saved_model, handles.encoder)
  except NeedsConfig as err:
    if required:
      raise
    return None, err.reason
  encoder, reason = build_native_encoder(saved_model, config, cls_only)
  if encoder is None:
    return None, reason
  encoder.trainable = trainable
  logging.info("Native encoder: BertEncoder with %d layers, weights from %s, compute dtype %s%s.",
               len(encoder.transformer_layers), handles.encoder, encoder.compute_dtype,
               ", last layer on the [CLS] row only" if cls_only else "")
  return encoder, None
