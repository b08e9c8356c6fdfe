"""--encoder_impl=native: the same function as the Hub layer in fp32, real low-precision math under mixed
precision, one XLA compile per input shape, a loud fallback for non-BERT SavedModels."""
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from bertclf import distribute
from bertclf import encoders
from bertclf import errors
from bertclf.swaps import losses
from bertclf import model as model_lib
from bertclf import native
from bertclf.swaps import optim
from bertclf.swaps import steps
from bertclf import summaries
from bertclf.tools import hub_export
from harness import run_train
from official.modeling import tf_utils


def _inputs(tiny_hub):
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  return pre(tf.constant(["the movie was great.", "a dull and boring story, the worst ever", "bad"]))


def _matmul_dtypes(layer, inputs):
  """The dtypes (enums) of every MatMul/Einsum op in the traced call, nested functions included."""
  graph_def = tf.function(layer).get_concrete_function(inputs).graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return {n.attr["T"].type for n in nodes if n.op in ("MatMul", "BatchMatMulV2", "Einsum", "_FusedMatMul")}


@pytest.mark.slow
def test_fp32_native_equals_the_hub_layer(tiny_hub):
  handles = encoders.resolve(tiny_hub)
  inputs = _inputs(tiny_hub)
  ref = encoders.load_encoder_layer(handles)(inputs)
  nat = encoders.load_encoder_layer(handles, impl="native")
  assert not isinstance(nat, hub.KerasLayer)
  out = nat(inputs)
  for key in ("pooled_output", "sequence_output"):
    np.testing.assert_allclose(out[key].numpy(), ref[key].numpy(), atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_cls_only_last_layer_keeps_pooled_output_and_gradients(tiny_hub):
  # The last layer computes row 0 only: pooled_output and every weight's gradient through it are the full
  # encoder's (within float32 round-off); sequence_output shrinks to that one row.
  handles = encoders.resolve(tiny_hub)
  inputs = _inputs(tiny_hub)
  full = encoders.load_encoder_layer(handles, impl="native")
  cls = encoders.load_encoder_layer(handles, impl="native", cls_only=True)
  assert [w.name for w in cls.weights] == [w.name for w in full.weights]
  ref = encoders.load_encoder_layer(handles)(inputs)["pooled_output"]
  outs, grads = [], []
  for enc in (full, cls):
    with tf.GradientTape() as tape:
      out = enc(inputs)
      loss = tf.reduce_sum(tf.sin(out["pooled_output"]))
    outs.append(out)
    grads.append([tf.convert_to_tensor(g) for g in tape.gradient(loss, enc.trainable_variables)])
  np.testing.assert_allclose(outs[1]["pooled_output"].numpy(), ref.numpy(), atol=1e-5)
  assert outs[1]["sequence_output"].shape[1] == 1 and outs[0]["sequence_output"].shape[1] > 1
  for w, g_full, g_cls in zip(full.trainable_variables, *grads):
    np.testing.assert_allclose(g_cls.numpy(), g_full.numpy(), atol=1e-5, err_msg=w.name)


@pytest.mark.slow
def test_cls_only_and_full_classifiers_share_checkpoints(tiny_hub, tmp_path):
  # A checkpoint written with --cls_only_last_layer restores into a classifier without it (and gives its logits).
  handles = encoders.resolve(tiny_hub)
  inputs = _inputs(tiny_hub)
  cls = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native", cls_only=True), 2, seed=1)
  full = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native"), 2, seed=2)
  for w in cls.trainable_variables:  # move every weight away from the SavedModel's and the head's init
    w.assign_add(tf.random.stateless_normal(w.shape, [0, len(w.name)], stddev=0.01, dtype=w.dtype))
  path = tf.train.Checkpoint(model=cls).write(str(tmp_path / "ckpt"))
  assert not np.allclose(full(inputs).numpy(), cls(inputs).numpy(), atol=1e-4)
  tf.train.Checkpoint(model=full).read(path).assert_consumed()
  np.testing.assert_allclose(full(inputs).numpy(), cls(inputs).numpy(), atol=1e-5)


def test_config_inferred_from_shapes_gives_the_same_encoder(tiny_hub):
  handles = encoders.resolve(tiny_hub)
  inferred = native.infer_config(hub.load(handles.encoder).variables)
  assert (inferred.num_hidden_layers, inferred.hidden_size, inferred.num_attention_heads,
          inferred.intermediate_size) == (2, 32, 2, 64)


@pytest.fixture(scope="module", params=["gelu", "exact", "relu"])
def configless_hub(request, tmp_path_factory):
  """(hidden_act, path): a 1-layer, hidden-32 encoder with that activation exported WITHOUT bert_config.json, as
  tfhub.dev ships them. Weights drawn with stddev 0.2 (not 0.02): pre-activations of ~1 are where the two GELUs
  differ (by 2e-4 to 4e-4 relative here); near 0 they agree to 1e-7 and the activation could not be told apart."""
  act = {"exact": native.EXACT_GELU}.get(request.param, request.param)
  root = str(tmp_path_factory.mktemp(f"configless_{request.param}"))
  vocab = os.path.join(root, "vocab.txt")
  config = hub_export.tiny_bert_config(hub_export.write_tiny_vocab(vocab), num_layers=1, dropout=0.0)
  config.hidden_act, config.initializer_range = act, 0.2
  tf.random.set_seed(3)
  hub_export.export_hub_format(root, bert_config=config, vocab_file=vocab, default_seq_length=16)
  os.remove(os.path.join(root, hub_export.CONFIG_FILE))
  return act, root


@pytest.mark.slow
def test_activation_without_config_file_is_detected(configless_hub, caplog, policy):
  act, root = configless_hub
  handles = encoders.resolve(root)
  assert handles.config is None
  inputs = _inputs(root)
  if act == "relu":  # neither GELU is this encoder: refused, not approximated
    with pytest.raises(errors.UserError, match="neither GELU rebuilds it .* Pass --encoder_impl=hub, or put the "
                       "encoder's bert_config.json"):
      encoders.load_encoder_layer(handles, impl="native")
    encoder, reason = encoders.load_native_encoder(handles, required=False)  # --encoder_impl=auto: the Hub layer
    assert encoder is None and reason.startswith("has no bert_config.json beside it, and neither GELU rebuilds it")
    return
  with caplog.at_level(logging.INFO, logger="absl"):
    nat = encoders.load_encoder_layer(handles, impl="native")
  ref = encoders.load_encoder_layer(handles)(inputs)
  out = nat(inputs)
  for key in ("pooled_output", "sequence_output"):  # round-off ~1e-6; the wrong GELU ~3e-4
    np.testing.assert_allclose(out[key].numpy(), ref[key].numpy(), rtol=0, atol=3e-6, err_msg=key)
  built = tf_utils.get_activation(act)
  assert nat.transformer_layers[0]._inner_activation is built  # pylint: disable=protected-access
  label = "exact GELU" if act == native.EXACT_GELU else "tanh-approximate GELU"
  assert f"activation detected on a probe input: {label}" in caplog.text
  # Under mixed precision the probe still runs in float32 (a bf16 encoder would be ~1e-2 off either way), and in
  # a 2-replica strategy's scope as train.py builds it; the encoder itself is then built in bfloat16.
  policy("bf16")
  with distribute.get_strategy("mirrored", num_cpu_devices=2).scope():
    low = encoders.load_encoder_layer(handles, impl="native")
  inner = low.transformer_layers[0]._inner_activation  # pylint: disable=protected-access
  assert low.compute_dtype == "bfloat16" and inner is built


@pytest.mark.slow
@pytest.mark.parametrize("dtype,low", [("bf16", tf.bfloat16), ("fp16", tf.float16)])
def test_mixed_precision_reaches_the_encoder(tiny_hub, policy, dtype, low):
  policy(dtype)
  handles = encoders.resolve(tiny_hub)
  inputs = _inputs(tiny_hub)
  enc = encoders.load_encoder_layer(handles, impl="native")
  # Every matmul/einsum inside the encoder (attention scores, attention output, feed-forward) computes in the
  # low precision; official keeps only the LayerNorms (and so each layer's output) in float32.
  assert _matmul_dtypes(enc, inputs) == {low.as_datatype_enum}
  layer = enc.transformer_layers[0]
  assert layer.compute_dtype == low.name and layer.variable_dtype == "float32"  # float32 master weights
  assert enc(inputs)["pooled_output"].dtype == low
  # The Hub layer, by contrast, keeps float32 inside whatever the policy.
  assert _matmul_dtypes(encoders.load_encoder_layer(handles), inputs) == {tf.float32.as_datatype_enum}
  # The loss still sees float32 logits; fp16 keeps loss scaling.
  model = model_lib.build_classifier(enc, 2)
  opt = optim.create_optimizer("adamw", 1e-3, 10, 0, dtype)
  ctx = steps.StepContext(model, losses.LOSSES["softmax_ce"], opt, 3, model.trainable_variables)
  assert model(inputs).dtype == low and ctx.logits(inputs).dtype == tf.float32
  assert ctx.scaled == (dtype == "fp16")
  loss, _, grads, _ = steps.default_step(ctx, inputs, tf.constant([1, 0, 0]))
  assert np.isfinite(loss.numpy()) and all(g.dtype == tf.float32 for g in grads if g is not None)


@pytest.mark.slow
def test_jit_compiles_once_per_input_shape(tiny_hub):
  handles = encoders.resolve(tiny_hub)
  model = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native"), 2)
  opt = optim.create_optimizer("adamw", 1e-3, 10, 0, "fp32")
  ctx = steps.StepContext(model, losses.LOSSES["softmax_ce"], opt, 4, model.trainable_variables)
  fn = tf.function(lambda f, l: steps.default_step(ctx, f, l)[0], jit_compile=True)
  labels = tf.constant([0, 1, 0, 1])
  for length in (16, 16, 16, 8, 8, 16):
    ids = tf.ones([4, length], tf.int32)
    fn(dict(input_word_ids=ids, input_mask=ids, input_type_ids=tf.zeros_like(ids)), labels)
  assert fn.experimental_get_tracing_count() == 2  # one per shape, however many steps


def test_non_bert_saved_model_falls_back_to_hub_and_says_so(tmp_path, caplog):
  module = tf.Module()
  module.v = tf.Variable(tf.zeros([3, 3]), name="albert_something")
  tf.saved_model.save(module, str(tmp_path))
  handles = encoders.Handles(str(tmp_path), "unused", "x")
  encoder, reason = native.load_encoder(tf.saved_model.load, handles)
  assert encoder is None and "not a BERT encoder" in reason
  with caplog.at_level(logging.WARNING), pytest.raises(ValueError):  # a bare tf.Module is no Hub layer either
    encoders.load_encoder_layer(handles, impl="native")
  assert "falling back to the TF Hub layer, so mixed precision will not reach the encoder" in caplog.text


@pytest.mark.slow
def test_native_training_checkpoints_and_exports(tmp_path, tiny_hub, toy_imdb):
  run = run_train(tmp_path / "native", tiny_hub, toy_imdb, encoder_impl="native", dtype="bf16", train_steps=20,
                  export=True)
  assert tf.train.latest_checkpoint(run).endswith("-20")
  import tensorflow_text  # noqa: F401  pylint: disable=g-import-not-at-top
  serve = tf.saved_model.load(os.path.join(run, "export")).signatures["serving_default"]
  probs = serve(tf.constant(["the movie was great.", "awful"]))["probabilities"].numpy()
  assert probs.dtype == np.float32
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-3)
  with pytest.raises(ValueError, match="encoder_impl: saved 'native', now 'hub'"):
    run_train(tmp_path / "native", tiny_hub, toy_imdb, train_steps=30, encoder_impl="hub")
  tf_keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_bucketed_native_xla_training_learns_on_two_replicas(tmp_path, tiny_hub, toy_imdb):
  run = run_train(tmp_path / "fast", tiny_hub, toy_imdb, encoder_impl="native", jit_compile=True,
                  bucket_boundaries="auto", num_buckets=3, num_cpu_devices=2, epochs=2)
  val = summaries.read_scalars(os.path.join(run, "validation"))
  assert val["accuracy"][-1][1] > 0.9
  with open(os.path.join(run, "config.json")) as f:
    buckets = json.load(f)["train_bucket_lengths"]  # chosen from the toy reviews' lengths (8-20 tokens)
  assert len(buckets) == 3 and buckets[-1] == 24 and buckets == sorted(set(buckets))
