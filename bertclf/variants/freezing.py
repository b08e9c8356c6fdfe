"""Which variables train: a swap point (--freeze). Frozen variables get no gradient and no update.

Each entry is `fn(model, options) -> [variables that train]`; train.py differentiates and updates only those,
so frozen variables keep their values bit for bit and get no optimizer slots.
  none                   everything trains (the default)
  encoder                a linear probe: the head alone trains on the frozen encoder's pooled output
  embeddings_and_layers  the embeddings and the first --freeze_layers transformer layers stay frozen (0: the
                         embeddings only); the layers above, the pooler and the head train
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)

from bertclf.variants import layering
from bertclf import errors
from bertclf.swaps import registry

registry.variant_flag(
    "freeze_layers", 0, "--freeze=embeddings_and_layers: also freeze transformer layers 0 .. freeze_layers-1.",
    requires=("freeze", "embeddings_and_layers"), check=lambda v: v >= 0, message="--freeze_layers must be >= 0.")


def train_all(model, options):
  del options
  return list(model.trainable_variables)


def freeze_encoder(model, options):
  """Linear probe: every variable of the encoder layer stays frozen (pooler included); the head trains."""
  del options
  frozen = {v.ref() for v in encoder_layer(model).trainable_variables}
  return [v for v in model.trainable_variables if v.ref() not in frozen]


def freeze_embeddings_and_layers(model, options):
  """The embeddings (depth 0) and transformer layers 0 .. k-1 (depths 1 .. k) stay frozen."""
  k = options.get("freeze_layers", 0)
  variables = list(model.trainable_variables)
  num_layers = layering.num_layers(variables)
  if not any(layering.encoder_depth(v.name) == 0 for v in variables) or k > num_layers:
    raise errors.UserError(f"--freeze=embeddings_and_layers --freeze_layers={k}: the encoder has {num_layers} "
                     "transformer layers named transformer/layer_<l>/... and embeddings named *_embeddings/...; "
                     "freeze_layers must be at most the number of layers.")
  return [v for v in variables if (depth := layering.encoder_depth(v.name)) is None or depth > k]


FREEZE = {"none": train_all, "encoder": freeze_encoder, "embeddings_and_layers": freeze_embeddings_and_layers}


def trainable_variables(model, name, options=None):
  return FREEZE[name](model, options or {})


def encoder_layer(model):
  """The encoder inside a bertclf classifier: the layer whose output is the {"pooled_output", ...} dict."""
  found = [layer for layer in model.layers if isinstance(_output(layer), dict) and "pooled_output" in _output(layer)]
  if len(found) != 1:
    raise ValueError(f"Expected one encoder layer (output dict with pooled_output) in {model.name}; found "
                     f"{[layer.name for layer in found]}.")
  return found[0]


def _output(layer):
  try:
    return layer.output
  except AttributeError:  # a layer called more than once has no single output
    return None
