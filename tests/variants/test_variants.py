"""The research variants, each against what its paper says, on the tiny encoder and hand-made batches.

End-to-end runs (2 replicas, checkpoint resume) are in test_variants_train.py; the unchanged default step is
in test_variants_default.py.
"""
import functools
import os

from absl import flags
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bertclf import distribute
from bertclf import encoders
from bertclf.variants import fgm
from bertclf import flags as bertclf_flags
from bertclf.variants import freezing
from bertclf.variants import layering
from bertclf.variants import llrd
from bertclf.swaps import losses
from bertclf import model as model_lib
from bertclf.swaps import optim
from bertclf.variants import rdrop
from bertclf.swaps import steps

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOFTMAX = losses.LOSSES["softmax_ce"]


def _model(tiny_hub, dropout=0.0, num_logits=2):
  encoder = encoders.load_encoder_layer(encoders.resolve(tiny_hub))
  return model_lib.build_classifier(encoder, num_logits, "dense", dropout, encoder_dropout=False, seed=0)


def _batch(n, seq=12, seed=0, num_classes=2):
  """{name: [n, seq] int32} token ids (the tiny vocab has 200+ tokens), labels [n]."""
  rng = np.random.RandomState(seed)
  features = {"input_word_ids": tf.constant(rng.randint(1, 150, size=(n, seq)), tf.int32),
              "input_mask": tf.ones([n, seq], tf.int32), "input_type_ids": tf.zeros([n, seq], tf.int32)}
  return features, tf.constant(rng.randint(0, num_classes, size=n), tf.int32)


def _ctx(model, global_batch, loss_def=SOFTMAX, dtype="fp32", variables=None, **options):
  opt = optim.create_optimizer("adamw", 1e-3, 100, 0, dtype)
  return steps.StepContext(model, loss_def, opt, global_batch,
                           list(model.trainable_variables) if variables is None else variables, options)


def _dense(grads):
  return [tf.convert_to_tensor(g).numpy() for g in grads]


@pytest.fixture
def fp16_policy():
  distribute.set_precision("fp16")
  yield
  distribute.set_precision("fp32")


# ---------------------------------------------------------------- 1. Gradient accumulation
@pytest.mark.slow
@pytest.mark.parametrize("step", ["default", "rdrop"])
def test_k_micro_batches_give_the_update_of_one_big_batch(tiny_hub, step):
  model = _model(tiny_hub)
  features, labels = _batch(8)
  seen = []

  def run(k):
    ctx = _ctx(model, 8, grad_accum_steps=k, rdrop_alpha=1.0)
    logits_fn = ctx.logits
    ctx.logits = lambda f, training=True: seen.append(f["input_word_ids"].shape[0]) or logits_fn(f, training)
    return tf.function(functools.partial(steps.STEPS[step].fn, ctx))(features, labels)

  one = run(1)
  assert seen[-1] == (8 if step == "default" else 16)
  four = run(4)
  assert seen[-1] == (2 if step == "default" else 4)  # the model only ever saw micro-batches of 2
  np.testing.assert_allclose(four[0], one[0], rtol=1e-6)
  assert four[1].numpy() == one[1].numpy()  # correct counts add up
  for g4, g1, v in zip(_dense(four[2]), _dense(one[2]), model.trainable_variables):
    np.testing.assert_allclose(g4, g1, rtol=1e-4, atol=1e-7, err_msg=v.name)
  assert set(four[3]) == set(steps.STEPS[step].extras)
  for name in four[3]:
    np.testing.assert_allclose(four[3][name], one[3][name], rtol=1e-5, atol=1e-8)
  # A sequence length unknown when traced (--bucket_boundaries) splits the same way.
  ctx = _ctx(model, 8, grad_accum_steps=4, rdrop_alpha=1.0)
  spec = {name: tf.TensorSpec([8, None], tf.int32) for name in features}
  fn = tf.function(functools.partial(steps.STEPS[step].fn, ctx), input_signature=[spec, tf.TensorSpec([8], tf.int32)])
  np.testing.assert_allclose(fn(features, labels)[0], one[0], rtol=1e-6)


@pytest.mark.slow
def test_grad_accum_under_fp16_loss_scaling(tiny_hub, fp16_policy):
  del fp16_policy
  model = _model(tiny_hub)
  features, labels = _batch(8)
  one, four = [tf.function(functools.partial(steps.STEPS["default"].fn, _ctx(model, 8, dtype="fp16",
                                                                            grad_accum_steps=k)))(features, labels)
               for k in (1, 4)]
  np.testing.assert_allclose(four[0], one[0], rtol=1e-3)
  g1, g4 = _dense(one[2]), _dense(four[2])
  assert all(np.all(np.isfinite(g)) for g in g4)
  # Unscaled: the same gradients as fp32 up to float16 rounding of the head (the Hub encoder stays float32).
  np.testing.assert_allclose(np.sqrt(sum((g ** 2).sum() for g in g4)), np.sqrt(sum((g ** 2).sum() for g in g1)),
                             rtol=1e-2)


def test_grad_accum_must_divide_the_replica_batch(tiny_hub):
  model = _model(tiny_hub)
  features, labels = _batch(6)
  with pytest.raises(ValueError, match="--grad_accum_steps=4 must divide each replica's batch of 6"):
    steps.STEPS["default"].fn(_ctx(model, 6, grad_accum_steps=4), features, labels)


# ---------------------------------------------------------------- 2. Layer-wise learning-rate decay
def test_layerwise_rates_follow_the_formula(tiny_hub):
  model = _model(tiny_hub)
  lr, decay, num_layers = 1e-3, 0.5, 2
  opt = optim.create_optimizer("adamw_llrd", lr, 1000, 0, "fp32", model=model, options={"layer_decay": decay})
  assert isinstance(opt, llrd.LayerwiseAdamWeightDecay)
  before = [v.numpy() for v in model.trainable_variables]
  # One step from a zero Adam state with gradient 1 everywhere: Adam moves every element by lr_var·s, where
  # s = √(1−β₂) / (√(1−β₂) + ε) (bias-corrected first step), after weight decay took lr_var·wd·w. As in
  # train.py, without official's own clipping (which would shrink the ones and make ε matter).
  opt.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_variables],
                      experimental_aggregate_gradients=False)
  s = np.sqrt(1 - 0.999) / (np.sqrt(1 - 0.999) + 1e-6)
  # L = 2: layer l (1-based) at lr·d^(L−l), embeddings as layer 0, pooler and head at the full rate.
  expected_factor = {"word_embeddings/embeddings:0": decay ** 2, "embeddings/layer_norm/gamma:0": decay ** 2,
                     "transformer/layer_0/intermediate/kernel:0": decay ** 1,
                     "transformer/layer_1/output/bias:0": 1.0, "pooler_transform/kernel:0": 1.0,
                     "classifier/kernel:0": 1.0}
  factors = {}
  for v, w0 in zip(model.trainable_variables, before):
    decayed = opt._do_use_weight_decay(v.name)  # pylint: disable=protected-access
    # w1 = w0 − f·lr·wd·w0 − f·lr·s  ⇒  f = (w0 − w1) / (lr·(wd·w0 + s)), element by element
    f = (w0 - v.numpy()) / (lr * ((0.01 * w0 if decayed else 0.0) + s))
    depth = layering.encoder_depth(v.name)
    depth = depth if depth is not None else num_layers  # pooler and head: the full rate
    np.testing.assert_allclose(f, decay ** (num_layers - depth), rtol=1e-3, err_msg=v.name)
    factors[v.name] = float(np.median(f))
  for name, factor in expected_factor.items():  # the table in bertclf/variants/llrd.py, spelled out
    assert factors[name] == pytest.approx(factor, rel=1e-3), name


@pytest.mark.slow
def test_layer_decay_one_is_plain_adamw(tiny_hub):
  weights = []
  for name, options in (("adamw", {}), ("adamw_llrd", {"layer_decay": 1.0})):
    model = _model(tiny_hub)
    opt = optim.create_optimizer(name, 1e-3, 10, 2, "fp32", model=model, options=options)
    rng = np.random.RandomState(0)
    for _ in range(3):  # warmup steps included: the schedule is official's too
      opt.apply_gradients([(tf.constant(rng.normal(size=v.shape), tf.float32), v)
                           for v in model.trainable_variables], experimental_aggregate_gradients=False)
    weights.append([v.numpy() for v in model.trainable_variables])
  for a, b in zip(*weights):
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- 3. Freezing (the variable lists; train.py runs
# are in test_variants_train.py)
def test_freeze_tables_pick_the_documented_variables(tiny_hub):
  model = _model(tiny_hub)
  names = lambda variables: {v.name for v in variables}  # noqa: E731
  all_names = names(model.trainable_variables)
  assert names(freezing.trainable_variables(model, "encoder")) == {"classifier/kernel:0", "classifier/bias:0"}
  k1 = names(freezing.trainable_variables(model, "embeddings_and_layers", {"freeze_layers": 1}))
  assert k1 == {n for n in all_names if "transformer/layer_1/" in n or n.startswith(("pooler", "classifier"))}
  k0 = names(freezing.trainable_variables(model, "embeddings_and_layers", {}))
  assert k0 == {n for n in all_names if "embedding" not in n}
  with pytest.raises(ValueError, match="freeze_layers must be at most"):
    freezing.trainable_variables(model, "embeddings_and_layers", {"freeze_layers": 3})


# ---------------------------------------------------------------- 4. R-Drop
@pytest.mark.parametrize("loss", ["softmax_ce", "sigmoid_ce"])
def test_rdrop_objective_is_the_papers_equation(loss):
  loss_def = losses.LOSSES[loss]
  rng = np.random.RandomState(0)
  n = loss_def.num_logits(2)
  z1, z2 = rng.normal(size=(5, n)).astype(np.float32), rng.normal(size=(5, n)).astype(np.float32)
  labels = np.array([0, 1, 1, 0, 1], np.int32)
  total, ce, kl = [t.numpy() for t in rdrop.objective(loss_def, tf.constant(labels), z1, z2, alpha=0.7)]

  def probs(z):
    if n == 1:
      p1 = 1 / (1 + np.exp(-z[:, 0].astype(np.float64)))
      return np.stack([1 - p1, p1], -1)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  p, q = probs(z1), probs(z2)
  ce_np = -0.5 * (np.log(p[np.arange(5), labels]) + np.log(q[np.arange(5), labels]))
  kl_np = 0.5 * ((p * np.log(p / q)).sum(-1) + (q * np.log(q / p)).sum(-1))
  np.testing.assert_allclose(ce, ce_np, rtol=1e-5)
  np.testing.assert_allclose(kl, kl_np, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(total, ce_np + 0.5 * 0.7 * kl_np, rtol=1e-5)  # half of Eq. 3 (see rdrop.py)


def _recording(ctx):
  """ctx whose logits() also keeps what it returned (eager)."""
  seen = []
  logits_fn = ctx.logits
  ctx.logits = lambda f, training=True: seen.append(logits_fn(f, training)) or seen[-1]
  return ctx, seen


@pytest.mark.slow
def test_rdrop_kl_is_zero_without_dropout(tiny_hub):
  model = _model(tiny_hub, dropout=0.0)
  features, labels = _batch(4)
  ctx = _ctx(model, 4, rdrop_alpha=1.0)
  loss, _, _, extras = steps.STEPS["rdrop"].fn(ctx, features, labels)
  assert abs(float(extras["rdrop_kl"])) < 1e-9
  default_loss = steps.default_step(_ctx(model, 4), features, labels)[0]
  np.testing.assert_allclose(loss, default_loss, rtol=1e-6)


@pytest.mark.slow
def test_rdrop_with_dropout_matches_the_hand_computed_loss(tiny_hub):
  model = _model(tiny_hub, dropout=0.5)
  features, labels = _batch(4)
  alpha, g = 2.0, 8  # this replica's 4 examples are half of a global batch of 8
  ctx, seen = _recording(_ctx(model, g, rdrop_alpha=alpha))
  tf.random.set_seed(3)
  loss, correct, grads, extras = steps.STEPS["rdrop"].fn(ctx, features, labels)
  (logits,) = [t.numpy().astype(np.float64) for t in seen]  # one forward pass over [2B]
  assert logits.shape == (8, 2)
  z1, z2 = logits[:4], logits[4:]
  assert not np.allclose(z1, z2)  # two different dropout masks
  log_p = lambda z: z - np.log(np.exp(z).sum(-1, keepdims=True))  # noqa: E731
  lp, lq = log_p(z1), log_p(z2)
  y = labels.numpy()
  ce = -0.5 * (lp[np.arange(4), y] + lq[np.arange(4), y])
  kl = 0.5 * ((np.exp(lp) * (lp - lq)).sum(-1) + (np.exp(lq) * (lq - lp)).sum(-1))
  assert kl.min() > 0
  np.testing.assert_allclose(float(extras["rdrop_ce"]), ce.sum() / g, rtol=1e-5)
  np.testing.assert_allclose(float(extras["rdrop_kl"]), kl.sum() / g, rtol=1e-4)
  np.testing.assert_allclose(float(loss), (ce + alpha / 2 * kl).sum() / g, rtol=1e-5)
  assert float(correct) == float((z1.argmax(-1) == y).sum())
  assert all(g is not None for g in grads)


# ---------------------------------------------------------------- 5. FGM
@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_fgm_perturbs_by_epsilon_along_the_gradient_and_restores_exactly(tiny_hub, dtype):
  if dtype == "fp16":
    distribute.set_precision("fp16")
  try:
    model = _model(tiny_hub)
    features, labels = _batch(4)
    epsilon = 0.5
    table = fgm.word_embeddings(model)
    original = table.numpy().copy()
    snapshots = []
    ctx = _ctx(model, 4, dtype=dtype, fgm_epsilon=epsilon)
    logits_fn = ctx.logits
    ctx.logits = lambda f, training=True: snapshots.append(table.numpy().copy()) or logits_fn(f, training)
    loss, _, grads, extras = steps.STEPS["fgm"].fn(ctx, features, labels)

    clean_table, adv_table = snapshots
    np.testing.assert_array_equal(clean_table, original)
    r = adv_table - original
    np.testing.assert_allclose(np.linalg.norm(r), epsilon, rtol=1e-4 if dtype == "fp32" else 1e-3)
    np.testing.assert_array_equal(table.numpy(), original)  # restored bit for bit
    # r points along the clean gradient of the table (unscaled under fp16).
    clean = steps.default_step(_ctx(model, 4, dtype=dtype), features, labels)
    index = [i for i, v in enumerate(model.trainable_variables) if v is table][0]
    g = _dense(clean[2])[index]
    np.testing.assert_allclose(r, epsilon * g / np.linalg.norm(g), atol=1e-3 * epsilon if dtype == "fp16" else 1e-6)
    np.testing.assert_allclose(float(extras["fgm_clean_loss"]), float(clean[0]), rtol=1e-6)
    np.testing.assert_allclose(float(loss), float(extras["fgm_clean_loss"] + extras["fgm_adv_loss"]), rtol=1e-6)
    if dtype == "fp32":
      # The returned gradients are clean + adversarial: the adversarial ones taken at table + r.
      table.assign_add(r)
      adv = steps.default_step(_ctx(model, 4), features, labels)
      table.assign(original)
      for got, c, a, v in zip(_dense(grads), _dense(clean[2]), _dense(adv[2]), model.trainable_variables):
        np.testing.assert_allclose(got, c + a, rtol=1e-5, atol=1e-8, err_msg=v.name)
  finally:
    distribute.set_precision("fp32")


@pytest.mark.slow
def test_fgm_adversarial_loss_rises_by_epsilon_times_the_gradient_norm(tiny_hub):
  # To first order L(table + r) − L(table) = g·r = ε‖g‖: the perturbation is the steepest ascent of size ε.
  model = _model(tiny_hub)
  features, labels = _batch(4)
  epsilon = 1e-3
  _, _, _, extras = steps.STEPS["fgm"].fn(_ctx(model, 4, fgm_epsilon=epsilon), features, labels)
  clean = steps.default_step(_ctx(model, 4), features, labels)
  index = [i for i, v in enumerate(model.trainable_variables) if v is fgm.word_embeddings(model)][0]
  rise = float(extras["fgm_adv_loss"]) - float(extras["fgm_clean_loss"])
  np.testing.assert_allclose(rise, epsilon * np.linalg.norm(_dense(clean[2])[index]), rtol=0.01)


@pytest.mark.slow
def test_fgm_in_a_tf_function_with_accumulation_and_a_frozen_table(tiny_hub):
  model = _model(tiny_hub)
  features, labels = _batch(4)
  table = fgm.word_embeddings(model)
  original = table.numpy().copy()
  variables = freezing.trainable_variables(model, "embeddings_and_layers", {})  # the table is frozen
  ctx = _ctx(model, 4, variables=variables, fgm_epsilon=1.0, grad_accum_steps=2)
  loss, _, grads, extras = tf.function(functools.partial(steps.STEPS["fgm"].fn, ctx))(features, labels)
  np.testing.assert_array_equal(table.numpy(), original)
  assert len(grads) == len(variables)  # the table's gradient was only used for the perturbation
  assert float(extras["fgm_adv_loss"]) != float(extras["fgm_clean_loss"])
  np.testing.assert_allclose(float(loss), float(extras["fgm_adv_loss"] + extras["fgm_clean_loss"]), rtol=1e-6)


# ---------------------------------------------------------------- 6. Label smoothing
def test_label_smoothing_matches_the_closed_form():
  rng = np.random.RandomState(0)
  logits = rng.normal(size=(6, 3)).astype(np.float32) * 3
  labels = np.array([0, 2, 1, 1, 0, 2], np.int32)
  eps = 0.2
  loss_def = losses.bind(losses.LOSSES["softmax_ce_smoothed"], {"label_smoothing": eps})
  got = loss_def.per_example(tf.constant(labels), tf.constant(logits)).numpy()
  z = logits.astype(np.float64)
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  target = (1 - eps) * np.eye(3)[labels] + eps / 3
  np.testing.assert_allclose(got, -(target * log_p).sum(-1), rtol=1e-6)
  keras = tf_keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=eps, reduction="none")
  np.testing.assert_allclose(got, keras(np.eye(3)[labels], logits).numpy(), rtol=1e-5)
  # Unbound (evaluation) and ε = 0: the plain cross-entropy.
  plain = SOFTMAX.per_example(tf.constant(labels), tf.constant(logits)).numpy()
  np.testing.assert_allclose(losses.LOSSES["softmax_ce_smoothed"].per_example(labels, logits), plain, rtol=1e-6)


@pytest.mark.slow
def test_the_step_trains_on_the_smoothed_loss(tiny_hub):
  model = _model(tiny_hub, num_logits=3)
  features, labels = _batch(4, num_classes=3)
  ctx = _ctx(model, 4, loss_def=losses.LOSSES["softmax_ce_smoothed"], label_smoothing=0.3)
  loss = steps.default_step(ctx, features, labels)[0]
  log_p = tf.nn.log_softmax(model(features)).numpy()
  y = labels.numpy()
  expected = (0.7 * -log_p[np.arange(4), y] + 0.3 * -log_p.mean(-1)).mean()
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert steps.StepContext(model, SOFTMAX, ctx.optimizer, 4, []).loss_def is SOFTMAX  # no settings: untouched


# ---------------------------------------------------------------- Flags
def _parse(*args):
  FLAGS.unparse_flags()
  FLAGS(["train.py", *args])


@pytest.mark.parametrize("args, message", [
    (["--rdrop_alpha=1"], "--rdrop_alpha is read by --step=rdrop only"),
    (["--fgm_epsilon=1", "--step=rdrop"], "--fgm_epsilon is read by --step=fgm or --step=fgm_global only"),
    (["--layer_decay=0.8"], "--layer_decay is read by --optimizer=adamw_llrd only"),
    (["--freeze_layers=2", "--freeze=encoder"], "--freeze_layers is read by --freeze=embeddings_and_layers"),
    (["--label_smoothing=0.1"], "--label_smoothing is read by --loss=softmax_ce_smoothed only"),
    (["--grad_accum_steps=3", "--batch_size=16"], "--grad_accum_steps must divide --batch_size"),
    (["--layer_decay=0", "--optimizer=adamw_llrd"], "--layer_decay must be in"),
    (["--sam_rho=0.1", "--step=fgm"], "--sam_rho is read by --step=sam or --step=sam_global only"),
    (["--ema_decay=0.9"], "--ema_decay is read by --weights_for_eval=ema only"),
    (["--lookahead_steps=3"], "--lookahead_steps is read by --optimizer_wrapper=lookahead only"),
    (["--lookahead_alpha=0.3"], "--lookahead_alpha is read by --optimizer_wrapper=lookahead only"),
    (["--ema_decay=1", "--weights_for_eval=ema"], "--ema_decay must be in"),
    (["--jit_compile", "--step=sam_global"], "--jit_compile compiles a per-replica step"),
    (["--jit_compile", "--step=fgm_global", "--fgm_epsilon=1"], "--jit_compile compiles a per-replica step"),
])
def test_variant_flags_refuse_settings_nothing_reads(args, message):
  with pytest.raises(flags.IllegalFlagValueError, match=message):
    _parse(*args)
  FLAGS.unparse_flags()


FLAGFILES = {
    "grad_accum": {"grad_accum_steps": 4},
    "llrd": {"optimizer": "adamw_llrd", "layer_decay": 0.8},
    "freeze_layers": {"freeze": "embeddings_and_layers", "freeze_layers": 1},
    "linear_probe": {"freeze": "encoder"},
    "rdrop": {"step": "rdrop", "rdrop_alpha": 1.0},
    "fgm": {"step": "fgm", "fgm_epsilon": 1.0},
    "label_smoothing": {"loss": "softmax_ce_smoothed", "label_smoothing": 0.1},
    "ema": {"weights_for_eval": "ema", "ema_decay": 0.99},
    "lookahead": {"optimizer_wrapper": "lookahead", "lookahead_steps": 5, "lookahead_alpha": 0.5},
    "sam_global": {"step": "sam_global", "sam_rho": 0.05},
    "swa": {"weights_for_eval": "swa", "swa_start_fraction": 0.5, "swa_every": 2, "export_weights": "final"},
    "agc": {"optimizer_wrapper": "agc", "agc_clip": 0.01, "clip_norm": 0.0},
}


@pytest.mark.parametrize("cfg", sorted(FLAGFILES))
def test_variant_flagfiles_parse(cfg, monkeypatch):
  monkeypatch.chdir(ROOT)
  _parse(f"--flagfile=flags/variant_{cfg}.cfg")
  try:
    assert FLAGS.model_dir == f"runs/variant_{cfg}" and FLAGS.encoder == "runs/tiny_assets/hub"
    for name, value in FLAGFILES[cfg].items():
      assert FLAGS[name].value == value, name
    options = bertclf_flags.step_options()
    assert set(options) == set(bertclf_flags.variant_flag_names())
  finally:
    FLAGS.unparse_flags()


@pytest.mark.parametrize("cfg", ["demo", "tiny", "imdb_small_bert", "imdb_multi_gpu", "imdb_multi_worker"])
def test_presets_parse_and_pass_the_validators(cfg, monkeypatch):
  monkeypatch.chdir(ROOT)
  _parse(f"--flagfile=flags/{cfg}.cfg")
  try:
    assert FLAGS["model_dir"].present  # every preset names its run folder
    if cfg == "demo":  # the defaults: on a bf16 CPU they resolve to docs/BENCHMARKS.md's row (5)
      assert (FLAGS.encoder_impl, FLAGS.dtype, FLAGS.bucket_boundaries) == ("auto", "auto", ["auto"])
  finally:
    FLAGS.unparse_flags()
