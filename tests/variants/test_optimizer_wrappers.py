"""--optimizer_wrapper=lookahead around every --optimizer entry, at fp32 and inside fp16's loss scaling, on 2
replicas with train.py's apply_gradients call (experimental_aggregate_gradients=False)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bertclf import encoders
from bertclf import model as model_lib
from bertclf.swaps import optim
from bertclf.variants import lookahead

K, ALPHA = 3, 0.5


def _run(strategy, model, initial, name, dtype, wrapper, grads_per_step):
  """Resets the weights, builds the optimizer as train.py does, applies each step's gradients on 2 replicas;
  returns (optimizer, [weights after each step])."""
  for v, w in zip(model.trainable_variables, initial):
    v.assign(w)
  options = {"layer_decay": 0.8} if name == "adamw_llrd" else {}
  if wrapper:
    options.update(optimizer_wrapper="lookahead", lookahead_steps=K, lookahead_alpha=ALPHA)
  with strategy.scope():
    opt = optim.create_optimizer(name, 1e-2, 100, 0, dtype, model=model, options=options)

  @tf.function
  def apply(grads):
    def replica_fn():
      opt.apply_gradients(zip(grads, model.trainable_variables), experimental_aggregate_gradients=False)
    strategy.run(replica_fn)

  history = []
  for grads in grads_per_step:
    apply([tf.constant(g) for g in grads])
    history.append([v.numpy() for v in model.trainable_variables])
  return opt, history


@pytest.fixture(scope="module")
def setup(tiny_hub):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"],
                                            cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    model = model_lib.build_classifier(encoders.load_encoder_layer(encoders.resolve(tiny_hub)), 2, "dense", 0.0,
                                       encoder_dropout=False, seed=0)
  return strategy, model, [v.numpy() for v in model.trainable_variables]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_lookahead_steps_back_every_k_updates(setup, name, dtype):
  strategy, model, initial = setup
  rng = np.random.RandomState(0)
  grads = [[rng.normal(size=w.shape).astype(np.float32) for w in initial] for _ in range(K + 1)]
  if dtype == "fp16":  # step 2 overflows: loss scaling skips it, and Lookahead must not count it
    grads[1][0][0] = np.inf
  plain_opt, plain = _run(strategy, model, initial, name, dtype, False, grads)
  opt, wrapped = _run(strategy, model, initial, name, dtype, True, grads)
  # The documented order: LossScaleOptimizer(Lookahead(entry)) under fp16, Lookahead(entry) otherwise.
  inner = opt.inner_optimizer if dtype == "fp16" else opt
  assert isinstance(inner, lookahead.Lookahead)
  assert isinstance(opt, tf_keras.mixed_precision.LossScaleOptimizer) == (dtype == "fp16")
  assert type(inner.inner_optimizer) is type(getattr(plain_opt, "inner_optimizer", plain_opt))
  synced = K if dtype == "fp32" else K + 1  # the call after which k updates were made
  for i in range(synced - 1):  # before: the fast weights are the plain optimizer's, bit for bit
    for a, b in zip(wrapped[i], plain[i]):
      np.testing.assert_array_equal(a, b)
  if dtype == "fp16":
    for a, b in zip(wrapped[1], wrapped[0]):
      np.testing.assert_array_equal(a, b)  # the skipped step changed nothing
  for v, w0, a, b in zip(model.trainable_variables, initial, wrapped[synced - 1], plain[synced - 1]):
    expected = w0 + ALPHA * (b - w0)  # k forward, one step back: w0 + α(w_k − w0)
    np.testing.assert_allclose(a, expected, rtol=1e-6, atol=1e-7, err_msg=v.name)
    np.testing.assert_array_equal(inner.get_slot(v, "slow").numpy(), a)  # φ = w after the sync
    assert not np.allclose(a, b)
  assert int(inner.updates.numpy()) == len(grads) - (dtype == "fp16")  # updates made, skipped ones not
  assert float(optim.applied_learning_rate(opt)) == float(optim.applied_learning_rate(plain_opt))


@pytest.mark.slow
def test_lookahead_state_is_in_the_checkpoint(setup, tmp_path):
  strategy, model, initial = setup
  rng = np.random.RandomState(1)
  grads = [[rng.normal(size=w.shape).astype(np.float32) for w in initial] for _ in range(2)]
  opt, _ = _run(strategy, model, initial, "adamw", "fp16", True, grads)
  path = tf.train.Checkpoint(model=model, optimizer=opt).save(str(tmp_path / "ckpt"))
  keys = tf.train.load_checkpoint(path).get_variable_to_shape_map()
  assert "optimizer/lookahead_updates/.ATTRIBUTES/VARIABLE_VALUE" in keys
  assert "optimizer/inner_optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE" in keys  # the wrapped optimizer's state
  slots = [k for k in keys if ".OPTIMIZER_SLOT/optimizer/" in k]  # slots sit under the variables they belong to
  for slot in ("slow", "m", "v"):  # Lookahead's φ, the wrapped AdamW's moments
    assert sum(k.endswith(f"/{slot}/.ATTRIBUTES/VARIABLE_VALUE") for k in slots) == len(initial), slot
