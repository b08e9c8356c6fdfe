"""Layer-wise learning-rate decay (Clark et al. 2020, ELECTRA, §A "layer-wise learning-rate decay"):
--optimizer=adamw_llrd --layer_decay=d.

Convention (as in BEiT / Hugging Face recipes): with L transformer layers numbered
l = 1..L (variable names transformer/layer_<l-1>), layer l trains at lr · d^(L − l):
  head (classifier, head_hidden) and pooler_transform   lr               (the full rate)
  transformer layer l = 1..L                             lr · d^(L − l)   (the top layer: lr)
  embeddings (as layer 0)                                lr · d^L         (the smallest)
ELECTRA's own code (google-research/electra, model/optimization.py `_get_layer_lrs`) counts one extra depth
for its task head, so every encoder rate there is one power of d smaller: use a slightly larger d to match it.

The optimizer is official's AdamWeightDecay with the same schedule and settings as --optimizer=adamw, with
each variable's learning rate multiplied by its factor. Weight decay follows, as in official and ELECTRA, where
the step is lr · (Adam direction + wd · w): a variable with a smaller rate also decays less. d = 1 is plain
AdamW exactly.
"""
from absl import logging
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)

from official.modeling.optimization import legacy_adamw
from official.nlp import optimization

from bertclf.variants import layering
from bertclf import errors
from bertclf.swaps import registry

registry.variant_flag(
    "layer_decay", 1.0, "--optimizer=adamw_llrd: layer-wise learning-rate decay d (ELECTRA): the head and pooler "
    "get the learning rate lr, transformer layer l = 1..L gets lr*d^(L-l) (the top layer lr), the embeddings lr*d^L "
    "(bertclf/variants/llrd.py).", requires=("optimizer", "adamw_llrd"), check=lambda v: 0.0 < v <= 1.0,
    message="--layer_decay must be in (0, 1].")


def rate_multiplier(variables, decay):
  """name → the factor of lr for that variable, for a model with these variables (L read off their names)."""
  num_layers = layering.num_layers(variables)
  if not num_layers:
    raise errors.UserError("--optimizer=adamw_llrd needs an encoder whose variables are named "
                     "transformer/layer_<l>/... (official's BERT); found none.")

  def multiplier(name):
    depth = layering.encoder_depth(name)  # embeddings 0, transformer/layer_<i> i + 1; None: pooler or head
    return decay ** (num_layers - (num_layers if depth is None else depth))

  return multiplier


class LayerwiseAdamWeightDecay(legacy_adamw.AdamWeightDecay):
  """Official's AdamWeightDecay with a per-variable learning-rate factor, `multiplier(variable.name)`."""

  def __init__(self, multiplier, **kwargs):
    super().__init__(**kwargs)
    self._multiplier = multiplier

  def _scaled_state(self, var, apply_state):
    """apply_state with this variable's lr_t (and Adam's bias-corrected lr) times its factor."""
    factor = self._multiplier(var.name)
    if factor == 1.0:
      return apply_state
    key = (var.device, var.dtype.base_dtype)
    apply_state = dict(apply_state or {})
    coefficients = dict(apply_state.get(key) or self._fallback_apply_state(*key))
    # AdamWeightDecay decays by lr_t · wd · w and legacy Adam steps by lr_t (dense) or lr (sparse): scaling
    # both scales the whole update, weight decay included.
    coefficients["lr_t"] = coefficients["lr_t"] * factor
    coefficients["lr"] = coefficients["lr"] * factor
    apply_state[key] = coefficients
    return apply_state

  def _resource_apply_dense(self, grad, var, apply_state=None):
    return super()._resource_apply_dense(grad, var, apply_state=self._scaled_state(var, apply_state))

  def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
    return super()._resource_apply_sparse(grad, var, indices, apply_state=self._scaled_state(var, apply_state))


def create_optimizer(learning_rate, train_steps, warmup_steps, model, options):
  """The optimizer table's entry: official's AdamW schedule and settings, layer-wise rates for `model`."""
  if model is None:
    raise ValueError("--optimizer=adamw_llrd needs the model (its variable names give the layers).")
  decay = options.get("layer_decay", 1.0)
  multiplier = rate_multiplier(model.trainable_variables, decay)
  probes = ["word_embeddings/embeddings"] + [f"transformer/layer_{l}/kernel"
                                             for l in range(layering.num_layers(model.trainable_variables))]
  logging.info("layer-wise lr factors (decay %g): %s; pooler %.4g; head 1", decay,
               ", ".join(f"{p.split('/')[-2]} {multiplier(p):.4g}" for p in probes),
               multiplier("pooler_transform/kernel"))
  # Built by official first, then copied: the same schedule, betas, epsilon, weight decay and exclusions.
  base = optimization.create_optimizer(init_lr=learning_rate, num_train_steps=train_steps,
                                       num_warmup_steps=warmup_steps, optimizer_type="adamw")
  return LayerwiseAdamWeightDecay(
      multiplier, learning_rate=base.learning_rate, beta_1=base.beta_1, beta_2=base.beta_2, epsilon=base.epsilon,
      weight_decay_rate=base.weight_decay_rate,
      exclude_from_weight_decay=base._exclude_from_weight_decay,  # pylint: disable=protected-access
      include_in_weight_decay=base._include_in_weight_decay)  # pylint: disable=protected-access
