"""--optimizer_wrapper=agc: the units each variable is clipped by, the clipping against a NumPy reference of
Brock et al. 2021's rule (exactly the units over λ, never the classifier), the chain order with Lookahead, and
through train.py: 1 vs 2 replicas, its TensorBoard scalar, --clip_norm=0, and with SWA in bf16 on 2 replicas an
exact resume."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bertclf import encoders
from bertclf import model as model_lib
from bertclf import summaries
from bertclf.swaps import optim
from bertclf.variants import agc
from bertclf.variants import lookahead
from harness import _weights
from harness import assert_same_tensors
from harness import checkpoint_tensors
from harness import interrupted_copy
from harness import run_train

LAMBDA, EPS = 0.05, 1e-3


@pytest.fixture(scope="module")
def model(tiny_hub):
  encoder = encoders.load_encoder_layer(encoders.resolve(tiny_hub), impl="native", cls_only=True)
  return model_lib.build_classifier(encoder, 2, "dense", 0.0, encoder_dropout=False, seed=0)


def test_units_follow_the_layer_types(model):
  axes = {v.name: agc.unit_axes(model)[v.ref()] for v in model.trainable_variables}
  assert axes["word_embeddings/embeddings:0"] == (1,)  # [V, H]: a row per token
  assert axes["position_embedding/embeddings:0"] == (1,)
  assert axes["transformer/layer_0/self_attention/query/kernel:0"] == (0,)  # [H, N, D]: over the input H
  assert axes["transformer/layer_0/self_attention/attention_output/kernel:0"] == (0, 1)  # [N, D, H]: over N, D
  assert axes["transformer/layer_0/intermediate/kernel:0"] == (0,)  # [H, F]
  assert axes["pooler_transform/kernel:0"] == (0,)
  assert axes["transformer/layer_0/output_layer_norm/gamma:0"] == agc.WHOLE
  assert axes["pooler_transform/bias:0"] == agc.WHOLE
  assert axes["classifier/kernel:0"] is None and axes["classifier/bias:0"] is None  # the head is not clipped


def _reference(g, w, axes):
  """Brock et al. 2021, Eq. 3, in float64: (clipped gradient, clipped units, units)."""
  g, w = g.astype(np.float64), w.astype(np.float64)
  reduce = None if axes == agc.WHOLE else tuple(axes)
  g_norm = np.sqrt(np.sum(g * g, axis=reduce, keepdims=reduce is not None))
  max_norm = LAMBDA * np.maximum(np.sqrt(np.sum(w * w, axis=reduce, keepdims=reduce is not None)), EPS)
  over = g_norm > max_norm
  return np.where(over, g * max_norm / g_norm, g), int(np.sum(over)), int(np.size(over))


def test_agc_clips_exactly_the_units_over_the_threshold_and_not_the_head(model):
  rng = np.random.RandomState(0)
  variables = model.trainable_variables
  initial = [v.numpy() for v in variables]
  units = agc.unit_axes(model)
  # Gradients of each unit at a random multiple (0.2λ .. 5λ) of its weight's norm: about half over the threshold.
  grads = []
  for v, w in zip(variables, initial):
    g = rng.normal(size=w.shape).astype(np.float32)
    axes = units[v.ref()]
    if axes not in (None, agc.WHOLE):
      shape = [1 if i in axes else n for i, n in enumerate(w.shape)]
      g *= (LAMBDA * np.exp(rng.uniform(np.log(0.2), np.log(5.0), size=shape))).astype(np.float32) * \
          np.sqrt(np.sum(np.float64(w) ** 2, axis=axes, keepdims=True)).astype(np.float32) / \
          np.sqrt(np.sum(np.float64(g) ** 2, axis=axes, keepdims=True)).astype(np.float32)
    grads.append(g)
  opt = agc.AdaptiveGradientClipping(tf_keras.optimizers.legacy.SGD(1.0), units, LAMBDA, EPS)
  opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
  clipped = total = 0
  for v, w, g in zip(variables, initial, grads):
    applied = w.astype(np.float64) - v.numpy()  # SGD with rate 1: the gradient it was given
    if units[v.ref()] is None:
      np.testing.assert_allclose(applied, g, rtol=1e-5, atol=1e-6, err_msg=v.name)  # the head: as given
      continue
    expected, c, n = _reference(g, w, units[v.ref()])
    np.testing.assert_allclose(applied, expected, rtol=1e-4, atol=1e-6, err_msg=v.name)
    clipped, total = clipped + c, total + n
  assert 0.2 < clipped / total < 0.8
  assert float(opt.scalars()["agc_clipped_fraction"]) == pytest.approx(clipped / total, abs=1e-6)
  for v, w in zip(variables, initial):
    v.assign(w)


def test_wrappers_chain_in_the_order_given(model):
  options = dict(optimizer_wrapper="agc,lookahead", agc_clip=LAMBDA, agc_eps=EPS, lookahead_steps=3,
                 lookahead_alpha=0.5)
  opt = optim.create_optimizer("adamw", 1e-3, 10, 0, "fp16", model=model, options=options)
  assert isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer)
  assert isinstance(opt.inner_optimizer, lookahead.Lookahead)
  assert isinstance(opt.inner_optimizer.inner_optimizer, agc.AdaptiveGradientClipping)
  assert optim.scalar_names(opt) == ("agc_clipped_fraction",)


# ---------------------------------------------------------------- through train.py
RUN = dict(train_steps=6, steps_per_loop=3, log_every_steps=3, summary_every_steps=1, checkpoint_every_steps=3,
           optimizer_wrapper="agc", agc_clip=0.01, clip_norm=0, encoder_impl="native")


@pytest.mark.slow
def test_agc_on_one_and_two_replicas(tmp_path, tiny_hub, toy_imdb):
  one = run_train(tmp_path / "one", tiny_hub, toy_imdb, num_cpu_devices=1, **RUN)
  two = run_train(tmp_path / "two", tiny_hub, toy_imdb, num_cpu_devices=2, **RUN)
  w1, w2 = _weights(os.path.join(one, "ckpt-6")), _weights(os.path.join(two, "ckpt-6"))
  assert w1.keys() == w2.keys()
  for k in w1:
    np.testing.assert_allclose(w2[k], w1[k], atol=2e-5, err_msg=k)
  for run in (one, two):
    fraction = summaries.read_scalars(os.path.join(run, "train"))["agc_clipped_fraction"]
    assert [s for s, _ in fraction] == list(range(1, 7)) and all(0.0 < f <= 1.0 for _, f in fraction)
  one_values = [f for _, f in summaries.read_scalars(os.path.join(one, "train"))["agc_clipped_fraction"]]
  two_values = [f for _, f in summaries.read_scalars(os.path.join(two, "train"))["agc_clipped_fraction"]]
  np.testing.assert_allclose(two_values, one_values, atol=0.02)  # a unit near λ may tip either way


@pytest.mark.slow
def test_agc_with_swa_in_bf16_on_two_replicas_resumes_exactly(tmp_path, tiny_hub, toy_imdb):
  """AGC (no state of its own) under bf16 and SWA (whose average is checkpointed) on 2 replicas: a run that lost
  its last checkpoint continues to every checkpointed tensor of the uninterrupted run, bit for bit."""
  run = dict(RUN, train_steps=8, steps_per_loop=2, checkpoint_every_steps=4, num_cpu_devices=2, dtype="bf16",
             weights_for_eval="swa", swa_start_step=2, swa_every=2)
  full = run_train(tmp_path / "full", tiny_hub, toy_imdb, **run)
  resumed = run_train(interrupted_copy(full, tmp_path / "resumed", at=4, drop_events=True), tiny_hub, toy_imdb, **run)
  want = checkpoint_tensors(os.path.join(full, "ckpt-8"))
  assert sum(k.startswith("eval_weights/swa_") for k in want) > 30  # the average is compared too
  assert_same_tensors(checkpoint_tensors(os.path.join(resumed, "ckpt-8")), want, what="resumed vs uninterrupted")
  fraction = summaries.read_scalars(os.path.join(resumed, "train"))["agc_clipped_fraction"]
  assert [s for s, _ in fraction] == [5, 6, 7, 8] and all(0.0 < f <= 1.0 for _, f in fraction)
