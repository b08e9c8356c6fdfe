"""Adaptive gradient clipping, unit-wise (Brock et al. 2021, "High-Performance Large-Scale Image Recognition
Without Normalization", ICML, Section 4.1): --optimizer_wrapper=agc --agc_clip=λ --agc_eps=ε.

For each unit i of a weight W (with gradient G), the gradient is scaled down when it is large against the weight:
  G_i ← λ·max(‖W_i‖, ε)/‖G_i‖ · G_i   if ‖G_i‖/max(‖W_i‖, ε) > λ,   else unchanged
(Frobenius norms). The units follow the variable's role in the model, read from its layer type:
  * Dense kernel [in, out]: one unit per output unit, the column W[:, j] (the norm runs over the input axis);
  * EinsumDense kernel (the attention's [H, N, D] / [N, D, H], the feed-forward's [H, F]): one unit per output
    element, the norm over the kernel's contracted (input) axes, read off the layer's equation;
  * embedding tables [V, H] (word, position, type): one unit per row, the vector of one token or position;
  * biases and LayerNorm scales and offsets [n]: the whole vector is one unit, as in the paper's code.
The classifier's final layer (the model's output layer, whatever --head) is not clipped, as in the paper.
A variable of a layer type not listed here is refused (errors.UserError) rather than guessed: e.g. the TF Hub
encoder, whose variables have no Keras layers (use --encoder_impl=native).

It is a WRAPPERS entry: AGC(optimizer) clips the gradients it is given, then calls the wrapped optimizer. With
several wrappers (--optimizer_wrapper=agc,lookahead) the first listed is innermost: Lookahead(AGC(AdamW)).
train.py's global-norm clipping (--clip_norm, default 1.0) runs before, on the all-reduced gradient; the paper
uses AGC instead of it (--clip_norm=0). Replicas: the gradients are all-reduced and the weights mirrored, so every
replica clips the same. TensorBoard: `agc_clipped_fraction`, the fraction of units clipped in the last update.
"""
import re

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf
import tf_keras

from official.nlp.modeling import layers as official_layers

from bertclf import errors
from bertclf.swaps import registry
from bertclf.variants import wrapping

registry.variant_flag(
    "agc_clip", 0.01, "--optimizer_wrapper=agc: lambda, the largest ratio ||G_i||/max(||W_i||, eps) a unit's "
    "gradient keeps (Brock et al. 2021; bertclf/variants/agc.py).", requires=("optimizer_wrapper", "agc"),
    check=lambda v: v > 0.0, message="--agc_clip must be > 0.")
registry.variant_flag(
    "agc_eps", 1e-3, "--optimizer_wrapper=agc: eps, the smallest weight norm a unit is measured against (so "
    "zero-initialised weights can move).", requires=("optimizer_wrapper", "agc"), check=lambda v: v > 0.0,
    message="--agc_eps must be > 0.")

WHOLE = "whole"  # the unit is the whole variable (vectors)
_EMBEDDINGS = (official_layers.OnDeviceEmbedding, tf_keras.layers.Embedding)


def unit_axes(model):
  """{variable.ref(): axes the unit norm runs over (a tuple), WHOLE, or None (not clipped)} for every variable of
  the model's layers whose role is known; the model's output layer maps to None."""
  roles = {}
  out_layer = model.outputs[0]._keras_history.layer  # pylint: disable=protected-access  (the classifier)
  for layer in [model, *model.submodules]:
    if not isinstance(layer, tf_keras.layers.Layer):
      continue
    found = []  # (variable or None, axes)
    if isinstance(layer, tf_keras.layers.EinsumDense):
      found = [(layer.kernel, _contracted_axes(layer)), (getattr(layer, "bias", None), WHOLE)]
    elif isinstance(layer, tf_keras.layers.Dense):
      found = [(layer.kernel, (0,)), (layer.bias, WHOLE)]  # [in, out]: over the input axis
    elif isinstance(layer, _EMBEDDINGS):
      found = [(layer.embeddings, (1,))]  # [V, H]: one row per token
    elif isinstance(layer, official_layers.PositionEmbedding):
      found = [(layer._position_embeddings, (1,))]  # pylint: disable=protected-access  [P, H]: one per position
    elif isinstance(layer, tf_keras.layers.LayerNormalization):
      found = [(layer.gamma, WHOLE), (layer.beta, WHOLE)]
    for variable, axes in found:
      if variable is not None:
        roles[variable.ref()] = None if layer is out_layer else axes
  return roles


def _contracted_axes(layer):
  """The kernel axes of an EinsumDense that its output does not keep (the input axes the unit norm runs over)."""
  spec = layer.equation.replace(" ", "")
  inputs, output = spec.split("->")
  kernel = inputs.split(",")[1]
  kernel, output = re.sub(r"\.\.\.", "", kernel), re.sub(r"\.\.\.", "", output)
  return tuple(i for i, letter in enumerate(kernel) if letter not in output)


def clip_unitwise(grad, weight, axes, clip, eps):
  """(clipped gradient, clipped units (bool), number of units) for one variable; axes: those the unit norm runs
  over, or WHOLE (one unit)."""
  def norm(x):  # [1.., units, ..1] with the unit axes kept, or [] for WHOLE
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=None if axes == WHOLE else list(axes), keepdims=axes != WHOLE))
  g_norm = norm(grad)
  max_norm = clip * tf.maximum(norm(weight), eps)  # the largest gradient norm each unit keeps
  clipped = g_norm > max_norm
  scaled = grad * (max_norm / tf.maximum(g_norm, 1e-6))
  return tf.where(clipped, scaled, grad), clipped, tf.size(clipped)


class AdaptiveGradientClipping(wrapping.Wrapper):
  """Wraps a Keras (legacy) optimizer; the learning rate and `iterations` are the wrapped optimizer's."""

  _HAS_AGGREGATE_GRAD = True
  SCALARS = ("agc_clipped_fraction",)

  def __init__(self, optimizer, units, clip=0.01, eps=1e-3, name="AGC"):
    super().__init__(name)
    self._optimizer = optimizer
    self._track_trackable(optimizer, "inner_optimizer")
    self.clip, self.eps = float(clip), float(eps)
    self._units = units
    # The last update's fraction of units clipped, for TensorBoard. Each replica writes its own copy (they agree),
    # so writing needs no synchronisation inside the loss-scale wrapper's cond.
    self.clipped_fraction = self.add_weight("agc_clipped_fraction", shape=[], dtype=tf.float32, initializer="zeros",
                                            trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                                            aggregation=tf.VariableAggregation.MEAN)

  def _create_all_weights(self, var_list):
    self._optimizer._create_all_weights(var_list)  # pylint: disable=protected-access

  def apply_gradients(self, grads_and_vars, name=None, experimental_aggregate_gradients=True):
    """Clips each unit's gradient, then the wrapped optimizer's update. Replica context."""
    out, clipped, units = [], [], []
    for g, v in grads_and_vars:
      if v.ref() not in self._units:
        if len(v.shape) > 1:
          raise errors.UserError(f"--optimizer_wrapper=agc: the units of {v.name} {v.shape} are unknown (its "
                                 "layer is not a Dense, EinsumDense, embedding or LayerNorm layer of the model, "
                                 "e.g. a TF Hub encoder's). Use --encoder_impl=native, or leave out agc.")
        axes = WHOLE
      else:
        axes = self._units[v.ref()]
      if g is None or axes is None:  # the classifier's final layer: not clipped
        out.append((g, v))
        continue
      g = tf.convert_to_tensor(g)
      g, c, n = clip_unitwise(g, tf.cast(v, g.dtype), axes, self.clip, self.eps)
      out.append((g, v))
      clipped.append(tf.reduce_sum(tf.cast(c, tf.float32)))
      units.append(tf.cast(n, tf.float32))
    if units:
      self.clipped_fraction.assign(tf.add_n(clipped) / tf.add_n(units))
    return self._optimizer.apply_gradients(out, name=name,
                                           experimental_aggregate_gradients=experimental_aggregate_gradients)

  def scalars(self):
    """{name: scalar} for TensorBoard: the fraction of units the last update clipped."""
    return {"agc_clipped_fraction": self.clipped_fraction.read_value()}

  def get_config(self):
    return {"name": self._name, "clip": self.clip, "eps": self.eps}


def wrap(optimizer, options, model):
  """The --optimizer_wrapper=agc entry."""
  if model is None:
    raise errors.UserError("--optimizer_wrapper=agc reads each variable's layer from the model; none was given.")
  return AdaptiveGradientClipping(optimizer, unit_axes(model), options.get("agc_clip", 0.01),
                                  options.get("agc_eps", 1e-3))
