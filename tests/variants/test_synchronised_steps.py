"""Synchronised steps (sam_global, fgm_global) against their definitions, and through train.py: 1 and 2 replicas
(and 2 replicas x 2 micro-batches) give the same update, while the per-replica forms (sam, fgm) do not."""
import functools
import os

import numpy as np
import pytest
import tensorflow as tf

from bertclf import encoders
from bertclf import model as model_lib
from bertclf import summaries
from bertclf.swaps import losses
from bertclf.swaps import optim
from bertclf.swaps import steps
from harness import _weights
from harness import assert_same_tensors
from harness import run_train


def _model(tiny_hub):
  encoder = encoders.load_encoder_layer(encoders.resolve(tiny_hub))
  return model_lib.build_classifier(encoder, 2, "dense", 0.0, encoder_dropout=False, seed=0)


def _batch(n, seq=12, seed=0):
  rng = np.random.RandomState(seed)
  features = {"input_word_ids": tf.constant(rng.randint(1, 150, size=(n, seq)), tf.int32),
              "input_mask": tf.ones([n, seq], tf.int32), "input_type_ids": tf.zeros([n, seq], tf.int32)}
  return features, tf.constant(rng.randint(0, 2, size=n), tf.int32)


def _ctx(model, **options):
  opt = optim.create_optimizer("adamw", 1e-3, 100, 0, "fp32")
  return steps.StepContext(model, losses.LOSSES["softmax_ce"], opt, 4, list(model.trainable_variables), options)


def _dense(grads):
  return [tf.convert_to_tensor(g).numpy() for g in grads]


@pytest.mark.slow
@pytest.mark.parametrize("step", ["sam", "sam_global"])
def test_sam_perturbs_by_rho_along_the_gradient_and_restores_exactly(tiny_hub, step):
  model = _model(tiny_hub)
  features, labels = _batch(4)
  rho = 0.3
  original = [v.numpy().copy() for v in model.trainable_variables]
  snapshots = []
  ctx = _ctx(model, sam_rho=rho)
  logits_fn = ctx.logits
  ctx.logits = lambda f, training=True: snapshots.append([v.numpy().copy() for v in model.trainable_variables]) \
      or logits_fn(f, training)
  loss, correct, grads, extras = steps.STEPS[step].fn(ctx, features, labels)  # eager: one replica

  at_w, at_w_plus_e = snapshots
  clean = steps.default_step(_ctx(model), features, labels)
  g = _dense(clean[2])
  norm = np.sqrt(sum((x.astype(np.float64) ** 2).sum() for x in g))
  e = [b - a for a, b in zip(at_w, at_w_plus_e)]
  np.testing.assert_allclose(np.sqrt(sum((x.astype(np.float64) ** 2).sum() for x in e)), rho, rtol=1e-4)
  for a, w0, d, gi, v in zip(at_w, original, e, g, model.trainable_variables):
    np.testing.assert_array_equal(a, w0)
    np.testing.assert_allclose(d, rho * gi / norm, atol=1e-6, err_msg=v.name)
    np.testing.assert_array_equal(v.numpy(), w0)  # restored bit for bit
  assert float(loss) == pytest.approx(float(clean[0]), rel=1e-6)  # the loss at w
  assert float(correct) == float(clean[1])
  # The update's gradient is the one at w + e.
  for v, d in zip(model.trainable_variables, e):
    v.assign_add(d)
  perturbed = steps.default_step(_ctx(model), features, labels)
  for v, w0 in zip(model.trainable_variables, original):
    v.assign(w0)
  assert float(extras["sam_perturbed_loss"]) == pytest.approx(float(perturbed[0]), rel=1e-6)
  assert float(extras["sam_perturbed_loss"]) > float(loss)  # an ascent step
  for got, want, v in zip(_dense(grads), _dense(perturbed[2]), model.trainable_variables):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=v.name)


@pytest.mark.slow
def test_synchronised_step_in_a_nested_tf_function_is_refused(tiny_hub):
  """Why synchronised steps are traced into the replica function (steps.compiled): a nested tf.function cannot
  all-reduce under MirroredStrategy."""
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                            cross_device_ops=tf.distribute.ReductionToOneDevice())
  features, labels = _batch(4)
  with strategy.scope():
    model = _model(tiny_hub)
    ctx = _ctx(model, sam_rho=0.1)
  step_def = steps.STEPS["sam_global"]

  def run(decorate):
    fn = decorate(functools.partial(step_def.fn, ctx))
    return tf.function(lambda: strategy.run(lambda: fn(features, labels)[0]))()

  with pytest.raises(RuntimeError, match="merge_call"):
    run(tf.function)
  loss = strategy.reduce("SUM", run(steps.compiled(step_def)), axis=None)  # each replica: the same 4 examples
  np.testing.assert_allclose(float(loss), 2 * float(steps.default_step(_ctx(model), features, labels)[0]), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("variant, options", [("sam", dict(sam_rho=0.5)), ("fgm", dict(fgm_epsilon=2.0))])
def test_global_form_on_two_replicas_is_the_one_replica_step_on_the_whole_batch(tiny_hub, variant, options):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                            cross_device_ops=tf.distribute.ReductionToOneDevice())
  features, labels = _batch(8)
  # The replicas see different tokens (ids 1..69 and 80..149), so their gradients point different ways.
  ids = features["input_word_ids"].numpy()
  ids[:4] = ids[:4] % 69 + 1
  ids[4:] = ids[4:] % 70 + 80
  features["input_word_ids"] = tf.constant(ids)
  with strategy.scope():
    model = _model(tiny_hub)
  ctx = _ctx(model, **options)
  ctx.global_batch_size = 8

  def dense_step(name):
    fn = steps.STEPS[name].fn
    return lambda f, l: (lambda out: (out[0], _to_dense(out[2]), out[3]))(fn(ctx, f, l))

  one = dense_step(f"{variant}_global")(features, labels)  # host: one replica, the whole batch

  def on_two_replicas(name):
    fn = steps.compiled(steps.STEPS[name])(dense_step(name))
    halves = strategy.experimental_distribute_values_from_function(
        lambda c: ({k: t[4 * c.replica_id_in_sync_group:][:4] for k, t in features.items()},
                   labels[4 * c.replica_id_in_sync_group:][:4]))
    out = tf.function(lambda: strategy.run(fn, args=halves))()
    return tf.nest.map_structure(lambda t: strategy.reduce("SUM", t, axis=None), out)  # shares add up

  two = on_two_replicas(f"{variant}_global")
  local = on_two_replicas(variant)
  perturbed = PERTURBED[variant]
  assert float(two[2][perturbed]) == pytest.approx(float(one[2][perturbed]), rel=1e-5)
  for a, b, v in zip(two[1], one[1], model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=v.name)
  # The per-replica form perturbs along each replica's own gradient: the tolerances above reject it.
  assert float(local[2][perturbed]) != pytest.approx(float(one[2][perturbed]), rel=1e-5)
  assert not all(np.allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6) for a, b in zip(local[1], one[1]))


def _to_dense(grads):
  return [tf.convert_to_tensor(g) for g in grads]


# ---------------------------------------------------------------- through train.py
STEP_FLAGS = {"sam_global": dict(step="sam_global", sam_rho=0.5),
              "fgm_global": dict(step="fgm_global", fgm_epsilon=2.0)}
PERTURBED = {"sam": "sam_perturbed_loss", "fgm": "fgm_adv_loss"}


def _one_step(model_dir, tiny_hub, toy_imdb, step, **overrides):
  run = run_train(model_dir, tiny_hub, toy_imdb, train_steps=1, summary_every_steps=1, **STEP_FLAGS[step],
                  **overrides)
  scalars = summaries.read_scalars(os.path.join(run, "train"))
  return _weights(tf.train.latest_checkpoint(run)), scalars[PERTURBED[step.split("_")[0]]][0][1]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["sam", "fgm"])
def test_synchronised_forms_give_the_same_update_on_1_and_2_replicas(tmp_path, tiny_hub, toy_imdb, variant):
  one, loss_one = _one_step(tmp_path / "one", tiny_hub, toy_imdb, f"{variant}_global")
  two, loss_two = _one_step(tmp_path / "two", tiny_hub, toy_imdb, f"{variant}_global", num_cpu_devices=2)
  accum, loss_accum = _one_step(tmp_path / "accum", tiny_hub, toy_imdb, f"{variant}_global", num_cpu_devices=2,
                                grad_accum_steps=2)
  # The loss at the perturbed weights and the update: the same with 1 replica, 2 replicas, 2 x 2 micro-batches.
  assert loss_two == pytest.approx(loss_one, rel=1e-5) and loss_accum == pytest.approx(loss_one, rel=1e-5)
  assert_same_tensors(two, one, atol=2e-5, what="2 replicas vs 1 replica")
  assert_same_tensors(accum, one, atol=2e-5, what="2 replicas x 2 micro-batches vs 1 replica")
