"""--dropout_masks=16bit: the same Bernoulli dropout from 16 random bits per element, in every Keras Dropout layer
of the model, with nothing added to checkpoints."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from bertclf.swaps import dropout
from bertclf import encoders
from bertclf import model as model_lib


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_masks_drop_at_the_rate_and_keep_the_mean(dtype):
  tf.random.set_seed(0)
  masks = dropout.StatelessMasks(layer_id=0, bits=16)
  drop = tf.function(lambda x: masks.dropout(x, 0.1))
  x = tf.ones([2001, 1001], dtype)  # an odd number of elements: the last 32-bit draw is half used
  y1, y2 = drop(x), drop(x)
  assert y1.shape == x.shape and y1.dtype == dtype
  kept = y1.numpy().astype(np.float32) != 0
  # Drop probability round(0.1 * 65536) / 65536; 5 standard errors of 2M draws is 0.001, so Keras's bf16 masks
  # (13/128 = 0.1016, from 7-bit uniforms) or one bit per element would fail this.
  assert abs((1 - kept.mean()) - 6554 / 65536) < 5 * np.sqrt(0.09 / kept.size)
  scale = float(tf.cast(65536 / (65536 - 6554), dtype))  # 1 / P(keep), in the compute dtype as Keras's
  np.testing.assert_array_equal(np.unique(y1.numpy().astype(np.float32)), [0.0, scale])
  assert (kept != (y2.numpy().astype(np.float32) != 0)).mean() > 0.1  # a fresh mask on every call


def test_gradient_is_the_forward_mask():
  masks = dropout.StatelessMasks(layer_id=0, bits=16)
  x = tf.random.stateless_normal([64, 33], [1, 2])
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = masks.dropout(x, 0.25)
  g = tape.gradient(y, x, output_gradients=tf.fill(x.shape, 3.0))
  kept = y.numpy() != 0
  scale = np.float32(65536 / (65536 - 16384))  # 1 / P(keep) = 4/3
  assert 0.7 < kept.mean() < 0.8
  np.testing.assert_array_equal(y.numpy(), np.where(kept, x.numpy() * scale, 0))
  np.testing.assert_array_equal(g.numpy(), np.where(kept, 3.0 * scale, 0).astype(np.float32))


def _random_op_types(model, inputs):
  graph_def = tf.function(lambda f: model(f, training=True)).get_concrete_function(inputs).graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
  return {n.op for n in nodes if "Random" in n.op}


@pytest.mark.slow
def test_every_dropout_layer_of_a_native_classifier_uses_them(tiny_hub, tmp_path, policy):
  policy("bf16")
  handles = encoders.resolve(tiny_hub)
  inputs = hub.load(os.path.join(tiny_hub, "preprocess"))(tf.constant(["a fine film", "dull"]))
  keras_model = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native"), 2, seed=1)
  model = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native"), 2, seed=1)
  assert "RandomUniform" in _random_op_types(keras_model, inputs)  # Keras's own: a float uniform per element
  layers = [m for m in model.submodules if isinstance(m, tf_keras.layers.Dropout)]
  # 2 layers x (attention probabilities, attention output, FFN inner (rate 0), FFN output) + embeddings + head
  assert dropout.MASKS["16bit"](model) == len(layers) == 10
  assert dropout.MASKS["keras"](keras_model) == 0
  # No float uniforms left anywhere in the training graph: every mask comes from the 16-bit draws.
  assert _random_op_types(model, inputs) == {"RandomUniformInt", "StatelessRandomGetKeyCounter",
                                            "StatelessRandomUniformFullIntV2"}
  # Inference is untouched, and checkpoints hold the same objects and values either way.
  np.testing.assert_array_equal(model(inputs).numpy(), keras_model(inputs).numpy())
  assert all("_random_generator" not in layer._trackable_children() for layer in layers)
  a = tf.train.Checkpoint(model=model).write(str(tmp_path / "a"))
  b = tf.train.Checkpoint(model=keras_model).write(str(tmp_path / "b"))
  assert tf.train.list_variables(a) == tf.train.list_variables(b)


def _draw(x, seed=0, step=7, first_row=0, calls=1, bits=16, layer_id=3):
  masks = dropout.StatelessMasks(layer_id=layer_id, bits=bits)
  with dropout.masks_for_step(dropout.step_seed(seed, step), first_row):
    return [masks.dropout(x, 0.5).numpy() != 0 for _ in range(calls)]


@pytest.mark.parametrize("bits", [16, 32])
def test_training_masks_are_a_function_of_seed_step_layer_call_and_global_row(bits):
  x = tf.ones([8, 7, 3])  # 21 elements an example: rows straddle the 32-bit words and Philox's 4-word blocks
  whole, again = _draw(x, calls=2, bits=bits)
  np.testing.assert_array_equal(whole, _draw(x, bits=bits)[0])  # same (seed, step, ...): a resume redraws it
  assert 0.4 < whole.mean() < 0.6 and (whole != again).mean() > 0.3  # a second call (R-Drop, FGM) differs
  for other in (dict(step=8), dict(seed=1), dict(layer_id=4)):
    assert (whole != _draw(x, bits=bits, **other)[0]).mean() > 0.3, other
  # Rows 0-7 in one call are rows 0-2 and 3-7 drawn apart: an example's mask does not depend on the split.
  parts = np.concatenate([_draw(x[:3], bits=bits)[0], _draw(x[3:], first_row=3, bits=bits)[0]])
  np.testing.assert_array_equal(whole, parts)


def test_two_replicas_draw_different_masks_for_the_same_examples():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  masks = dropout.StatelessMasks(layer_id=0, bits=16)
  x = tf.ones([4, 64])

  def replica_step():  # as train.py: every replica is given the same 4 examples here
    with dropout.masks_for_step(dropout.step_seed(0, 5), dropout.replica_first_row(4)):
      return masks.dropout(x, 0.5)

  r0, r1 = [t.numpy() != 0 for t in strategy.experimental_local_results(tf.function(
      lambda: strategy.run(replica_step))())]
  assert (r0 != r1).mean() > 0.3
  # Together they are the masks of the 8-row global batch drawn on one replica.
  np.testing.assert_array_equal(np.concatenate([r0, r1]), _draw(tf.ones([8, 64]), step=5, layer_id=0)[0])
