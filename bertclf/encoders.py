"""Which encoder and which preprocessing model: the tutorial's table of TF Hub handles, plus local paths.

`resolve(encoder, preprocess)` turns the --encoder/--preprocess flags into two handles; `load_*` open them with a
clear error when a handle cannot be reached (no internet, a wrong path).
"""
import dataclasses
import functools
import json
import os

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import logging
import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the ops the preprocessing SavedModels use)
from tensorflow.core.protobuf import saved_model_pb2

from bertclf import errors
from bertclf import native

DEFAULT_ENCODER = "small_bert/bert_en_uncased_L-4_H-512_A-8"

_TFHUB = "https://tfhub.dev/"
_UNCASED_PRE = _TFHUB + "tensorflow/bert_en_uncased_preprocess/3"

# The "Classify text with BERT" tutorial's map_name_to_handle / map_model_to_preprocess (33 encoders).
ENCODERS = {
    "bert_en_uncased_L-12_H-768_A-12": (_TFHUB + "tensorflow/bert_en_uncased_L-12_H-768_A-12/3", _UNCASED_PRE),
    "bert_en_cased_L-12_H-768_A-12": (_TFHUB + "tensorflow/bert_en_cased_L-12_H-768_A-12/3",
                                      _TFHUB + "tensorflow/bert_en_cased_preprocess/3"),
    "bert_multi_cased_L-12_H-768_A-12": (_TFHUB + "tensorflow/bert_multi_cased_L-12_H-768_A-12/3",
                                         _TFHUB + "tensorflow/bert_multi_cased_preprocess/3"),
    # The 24 Small BERTs (Turc et al. 2019): L layers x H hidden, A = H / 64 heads, all uncased.
    **{f"small_bert/bert_en_uncased_L-{l}_H-{h}_A-{h // 64}":
       (_TFHUB + f"tensorflow/small_bert/bert_en_uncased_L-{l}_H-{h}_A-{h // 64}/1", _UNCASED_PRE)
       for l in (2, 4, 6, 8, 10, 12) for h in (128, 256, 512, 768)},
    "albert_en_base": (_TFHUB + "tensorflow/albert_en_base/2", _TFHUB + "tensorflow/albert_en_preprocess/3"),
    "electra_small": (_TFHUB + "google/electra_small/2", _UNCASED_PRE),
    "electra_base": (_TFHUB + "google/electra_base/2", _UNCASED_PRE),
    "experts_pubmed": (_TFHUB + "google/experts/bert/pubmed/2", _UNCASED_PRE),
    "experts_wiki_books": (_TFHUB + "google/experts/bert/wiki_books/2", _UNCASED_PRE),
    "talking-heads_base": (_TFHUB + "tensorflow/talkheads_ggelu_bert_en_base/1", _UNCASED_PRE),
}


@dataclasses.dataclass(frozen=True)
class Handles:
  encoder: str
  preprocess: str
  name: str                       # short name, URL or path, as given
  config: dict | None = None      # BERT config when the export carries one (bertclf.tools.hub_export writes it)

  @property
  def max_seq_length(self):
    """Positions the encoder has: from its config, else from its SavedModel's position-embedding table (a TF Hub
    URL is downloaded into the TF Hub cache for this, as loading it would); None if it has no such table."""
    if self.config:
      return self.config.get("max_position_embeddings")
    path = self.encoder if not _is_remote(self.encoder) else _load(self.encoder, hub.resolve, "--encoder")
    return position_table_length(path)


def saved_model_objects(path):
  """(names of the root object's attributes, {variable name: shape}) of the SavedModel at `path`, read from its
  saved_model.pb alone (no graph is loaded: milliseconds). Both are empty for a TF1 Hub module."""
  proto = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  graph = proto.meta_graphs[0].object_graph_def if proto.meta_graphs else None
  if graph is None or not graph.nodes:
    return set(), {}
  attributes = {child.local_name for child in graph.nodes[0].children}
  variables = {node.variable.name: [d.size for d in node.variable.shape.dim] for node in graph.nodes
               if node.WhichOneof("kind") == "variable"}
  return attributes, variables


@functools.lru_cache(maxsize=None)
def position_table_length(path):
  """Rows of the position-embedding table ([max positions, width]) of the encoder SavedModel at `path`, or None."""
  _, variables = saved_model_objects(path)
  lengths = {shape[0] for name, shape in variables.items()
             if "position" in name and "embedding" in name and len(shape) == 2}
  return lengths.pop() if len(lengths) == 1 else None


def _is_preprocessing(path):
  return "bert_pack_inputs" in saved_model_objects(path)[0]


def _check_roles(encoder_flag, encoder_path, preprocess):
  """An encoder given as --preprocess, or a preprocessing model as --encoder, fails deep inside TensorFlow
  ("Could not find matching concrete function"): name the swap here instead."""
  if _is_preprocessing(encoder_path):
    raise errors.UserError(f"{encoder_flag}: {encoder_path} is a preprocessing model (it has tokenize and "
                           "bert_pack_inputs), not an encoder. Pass it as --preprocess, and give --encoder the "
                           "encoder SavedModel.")
  if (preprocess and not _is_remote(preprocess) and tf.io.gfile.exists(os.path.join(preprocess, "saved_model.pb"))
      and not _is_preprocessing(preprocess)):
    raise errors.UserError(f"--preprocess={preprocess} is not a preprocessing model (it has no bert_pack_inputs"
                           + ("; it looks like an encoder" if position_table_length(preprocess) else "")
                           + "). Pass the preprocessing SavedModel that matches the encoder (its tokenizer).")


def _read_local_config(encoder_path):
  """The bert_config.json that bertclf.tools.hub_export writes beside encoder/, if any."""
  path = os.path.join(os.path.dirname(os.path.normpath(encoder_path)), "bert_config.json")
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)
  return None


def resolve(encoder, preprocess=None):
  """--encoder/--preprocess → Handles. Raises UserError that says what to pass when it cannot decide."""
  if encoder in ENCODERS:
    enc, pre = ENCODERS[encoder]
    return Handles(enc, preprocess or pre, encoder)
  if encoder.startswith(("http://", "https://", "gs://")):
    by_url = {e: p for e, p in ENCODERS.values()}
    if preprocess is None and encoder not in by_url:
      raise errors.UserError(f"--encoder={encoder} is not in the table of known encoders, so its preprocessing "
                             "model is unknown; pass --preprocess=<handle or path>.")
    return Handles(encoder, preprocess or by_url[encoder], encoder)
  path = os.path.expanduser(encoder)
  if not tf.io.gfile.exists(path):
    raise errors.UserError(f"--encoder={encoder} is neither a known short name ({len(ENCODERS)} in "
                           "bertclf/encoders.py, e.g. " + DEFAULT_ENCODER + "), a URL, nor an existing path.")
  if tf.io.gfile.exists(os.path.join(path, "encoder", "saved_model.pb")):
    path = os.path.join(path, "encoder")   # a folder with encoder/ and preprocess/ side by side
  if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    raise errors.UserError(f"--encoder={encoder}: no saved_model.pb in {path}; pass a TF Hub-format encoder "
                           "SavedModel or a folder holding encoder/ and preprocess/.")
  if preprocess is None:
    sibling = os.path.join(os.path.dirname(os.path.normpath(path)), "preprocess")
    if not tf.io.gfile.exists(os.path.join(sibling, "saved_model.pb")):
      raise errors.UserError(f"--encoder={encoder}: no preprocess/ SavedModel next to it; pass --preprocess.")
    preprocess = sibling
  _check_roles(f"--encoder={encoder}", path, preprocess)
  return Handles(path, preprocess, encoder, _read_local_config(path))


def _is_remote(handle):
  return handle.startswith(("http://", "https://", "gs://"))


def _unreachable(handle, flag, err):
  """The error for a handle that did not load: offline advice for a URL, the path's problem for a local path."""
  detail = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"  # TF's messages run to many lines
  if not _is_remote(handle):
    return errors.UserError(
        f"{flag}={handle}: could not load this local SavedModel ({detail}). Check the path: it must be a TF "
        "Hub-format SavedModel folder (with saved_model.pb), e.g. written by `python -m bertclf.tools.hub_export`.")
  return errors.UserError(
      f"{flag}={handle}: could not load it ({detail}). Without internet, TF Hub handles cannot be downloaded. "
      "Either pass a local path (--encoder=/path/to/saved_model_dir and --preprocess=/path/to/preprocess_dir, e.g. "
      "written by `python -m bertclf.tools.convert_bert` or `python -m bertclf.tools.hub_export`), or set "
      "TFHUB_CACHE_DIR to a folder that already holds the downloaded module (copied from a machine with internet).")


def _load(handle, load_fn, flag):
  try:
    return load_fn(handle)
  except (OSError, ValueError, tf.errors.OpError) as err:
    raise _unreachable(handle, flag, err) from err
  except Exception as err:  # urllib raises a zoo of errors offline (URLError, socket.gaierror, ...)
    if "urlopen" in repr(err) or "resolve" in str(err).lower() or "connect" in str(err).lower():
      raise _unreachable(handle, flag, err) from err
    raise


def load_native_encoder(handles, trainable=True, cls_only=False, required=True):
  """(official's BertEncoder rebuilt under the active precision policy with the SavedModel's weights, None), or
  (None, why it cannot be rebuilt): bertclf/native.py. required: see native.load_encoder."""
  return native.load_encoder(lambda h: _load(h, hub.load, "--encoder"), handles, trainable, cls_only, required)


def load_hub_encoder(handles, trainable=True):
  """The SavedModel as a `hub.KerasLayer` (its own float32 graph, whatever the policy)."""
  return _load(handles.encoder, lambda h: hub.KerasLayer(h, trainable=trainable, name="encoder"), "--encoder")


def warn_native_fallback(handles, reason):
  """An explicit --encoder_impl=native that gets the Hub layer: say so, and what is lost."""
  logging.warning("--encoder_impl=native: %s %s; falling back to the TF Hub layer, so mixed precision will not "
                  "reach the encoder (its math stays float32) and XLA recompiles around it.", handles.encoder, reason)


def load_encoder_layer(handles, trainable=True, impl="hub", cls_only=False):
  """The encoder: dict of [B, T] int32 → {pooled_output [B, H], sequence_output [B, T, H], ...}.

  impl="hub": a `hub.KerasLayer` (the SavedModel's own float32 graph). impl="native": official's BertEncoder
  rebuilt under the active precision policy with the SavedModel's weights (bertclf/native.py); falls back to
  "hub", with a warning, when the SavedModel is not a BertEncoder. cls_only (native only): the last layer
  computes the [CLS] row alone, so pooled_output is the same and sequence_output is [B, 1, H]. train.py and
  eval.py go through bertclf/fast_path.py instead, which also resolves --encoder_impl=auto and the precision
  policy that goes with the implementation.
  """
  if impl == "native":
    encoder, reason = load_native_encoder(handles, trainable, cls_only)
    if encoder is not None:
      return encoder
    warn_native_fallback(handles, reason)
  return load_hub_encoder(handles, trainable)


def load_preprocess(handles):
  """The preprocessing SavedModel (callable, with .tokenize and .bert_pack_inputs)."""
  return _load(handles.preprocess, hub.load, "--preprocess")
