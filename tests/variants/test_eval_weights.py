"""--weights_for_eval: the moving average against its closed form, the exact swap, official's average and swap
for contrast, and through train.py/eval.py on 2 replicas: the best checkpoint and the export hold the average,
eval.py scores it, training is untouched by it, resume and switching it on at a resume."""
import os

from absl import flags
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import eval as eval_lib
from bertclf import distribute
from bertclf import summaries
from bertclf.swaps import eval_weights
from bertclf.variants import ema
from harness import _weights
from harness import assert_same_tensors
from harness import interrupted_copy
from harness import kernel_and_bias
from harness import run_train
from harness import two_replicas
from official.modeling.optimization import ema_optimizer

FLAGS = flags.FLAGS


def _closed_form(history, d):
  """a_k = Σ_i (1-d)·d^(k-i)·w_i / (1 - d^k) over the weights w_1 .. w_k after each update."""
  k = len(history)
  total = sum((1 - d) * d ** (k - i) * w.astype(np.float64) for i, w in enumerate(history, start=1))
  return total / (1 - d ** k)


def test_ema_is_the_bias_corrected_closed_form_on_two_replicas():
  strategy = two_replicas()
  rng = np.random.RandomState(0)
  with strategy.scope():
    variables = kernel_and_bias(rng)
    entry = eval_weights.create("ema", None, variables, {"ema_decay": 0.9})

  @tf.function
  def update():
    strategy.run(entry.update)

  history = [[], []]
  for k in range(1, 7):
    for v, h in zip(variables, history):
      v.assign(rng.normal(size=v.shape).astype(np.float32) * k)  # "the optimizer's update"
      h.append(v.numpy())
    update()
    if k == 1:  # β_1 = 1: the average starts at the weights, not at zero
      for v, a in zip(variables, entry.averages):
        np.testing.assert_array_equal(a.numpy(), v.numpy())
  assert int(entry.state.ema_updates.numpy()) == 6
  for a, h in zip(entry.averages, history):
    for component in a.values:  # every replica's copy
      np.testing.assert_allclose(component.numpy(), _closed_form(h, 0.9), rtol=1e-5, atol=1e-6)


def test_swap_is_exact_bit_for_bit_on_every_replica():
  strategy = two_replicas()
  rng = np.random.RandomState(1)
  with strategy.scope():
    v = tf.Variable(rng.normal(size=(50, 40)).astype(np.float32))
    entry = eval_weights.create("ema", None, [v], {"ema_decay": 0.99})
  for _ in range(3):
    v.assign(v + rng.normal(size=v.shape).astype(np.float32) * 1e-3)
    tf.function(lambda: strategy.run(entry.update))()
  # Replicas' copies that differ in the last bits (as rounding on different devices could make them): each must
  # come back as it was, not as the primary copy.
  c0, c1 = v.values
  c1.assign(c0.numpy() * np.float32(1 + 2 ** -20))
  before = [c.numpy().copy() for c in v.values]
  average = [c.numpy().copy() for c in entry.averages[0].values]
  assert not np.array_equal(before[0], average[0])
  with entry.swapped():
    for c, a in zip(v.values, average):
      np.testing.assert_array_equal(c.numpy(), a)
    assert bool(entry.state.ema_in_model.numpy())
  for c, b in zip(v.values, before):
    np.testing.assert_array_equal(c.numpy(), b)
  assert not bool(entry.state.ema_in_model.numpy())


def test_official_average_starts_at_zero_and_its_swap_rounds():
  """Why bertclf/variants/ema.py does not use official's ExponentialMovingAverage for the average or the swap."""
  d, k = 0.9, 20
  model = tf_keras.Sequential([tf_keras.layers.Dense(64, input_shape=(64,))])
  official = ema_optimizer.ExponentialMovingAverage(tf_keras.optimizers.legacy.SGD(0.01), average_decay=d,
                                                   dynamic_decay=False)
  official.shadow_copy(model)
  ours = eval_weights.create("ema", model, model.trainable_variables, {"ema_decay": d})
  rng = np.random.RandomState(2)
  history = []
  for _ in range(k):
    official.apply_gradients([(tf.constant(rng.normal(size=v.shape), tf.float32), v)
                              for v in model.trainable_variables])
    ours.update()
    history.append(model.trainable_variables[0].numpy())
  kernel_average = _closed_form(history, d)
  np.testing.assert_allclose(ours.averages[0].numpy(), kernel_average, rtol=1e-5, atol=1e-6)
  # Official's average is the uncorrected one, (1 - d^k) times the average: 88% of it after 20 steps of d = 0.9.
  np.testing.assert_allclose(official._average_weights[0].numpy(), (1 - d ** k) * kernel_average, rtol=1e-4,
                             atol=1e-6)
  before = model.trainable_variables[0].numpy().copy()
  for _ in range(2):  # swap and back: a+b, a-b, a-b twice (what swap_weights runs under a strategy)
    official._swap_weights()  # pylint: disable=protected-access
  changed = np.sum(model.trainable_variables[0].numpy() != before)
  assert changed > 0  # rounding moved some weights (132 of 4096 when written)
  before = model.trainable_variables[0].numpy().copy()
  with ours.swapped():
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), ours.averages[0].numpy())
  np.testing.assert_array_equal(model.trainable_variables[0].numpy(), before)


# ---------------------------------------------------------------- through train.py and eval.py, 2 replicas
RUN = dict(train_steps=8, steps_per_loop=4, log_every_steps=4, summary_every_steps=1, eval_every_steps=4,
           checkpoint_every_steps=4, num_cpu_devices=2)


RAW_CHECKPOINTS = dict(checkpoint_every_steps=1, max_to_keep=10)


def _read(path, prefix):
  reader = tf.train.load_checkpoint(path)
  return {k[len(prefix):]: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def ema_and_raw_runs(tmp_path_factory, tiny_hub, toy_imdb):
  root = tmp_path_factory.mktemp("ema")
  ema_run = run_train(root / "ema", tiny_hub, toy_imdb, weights_for_eval="ema", ema_decay=0.5, export=True, **RUN)
  # A checkpoint after every step (the weights are the same: saving changes nothing), for
  # test_switching_the_average_on_at_a_resume.
  raw_run = run_train(root / "raw", tiny_hub, toy_imdb, **dict(RUN, **RAW_CHECKPOINTS))
  return ema_run, raw_run


def _score(model_dir, **flags_):
  FLAGS.unparse_flags()
  FLAGS(["eval.py", f"--model_dir={model_dir}", "--plots=false"] + [f"--{k}={v}" for k, v in flags_.items()])
  try:
    eval_lib.main([])
  finally:
    distribute.set_precision("fp32")
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(model_dir, f"eval_{flags_.get('split', 'test')}.json")) as f:
    return json.load(f)


@pytest.mark.slow
def test_training_is_untouched_by_the_average(ema_and_raw_runs):
  ema_run, raw_run = ema_and_raw_runs
  w_ema, w_raw = _weights(os.path.join(ema_run, "ckpt-8")), _weights(os.path.join(raw_run, "ckpt-8"))
  # The swaps for validation at steps 4 and 8 gave every weight back exactly.
  assert_same_tensors(w_ema, w_raw, what="--weights_for_eval=ema vs raw: trained weights")
  assert not any(k.startswith("eval_weights") for k in tf.train.load_checkpoint(
      os.path.join(raw_run, "ckpt-8")).get_variable_to_shape_map())  # raw adds nothing to checkpoints


@pytest.mark.slow
def test_best_checkpoint_and_validation_are_the_average(ema_and_raw_runs):
  ema_run, raw_run = ema_and_raw_runs
  best = tf.train.latest_checkpoint(os.path.join(ema_run, "best"))
  step = int(best.rsplit("-", 1)[1])
  latest = os.path.join(ema_run, f"ckpt-{step}")
  averages = _read(latest, ema.PREFIX + "average/")
  assert int(_read(latest, ema.PREFIX + "updates")["/.ATTRIBUTES/VARIABLE_VALUE"]) == step
  best_model = tf.train.load_checkpoint(best)
  # model/ of the best checkpoint is the average of the same step, bit for bit, for every averaged variable
  model_keys = {k for k in best_model.get_variable_to_shape_map() if k.startswith("model/")
                and "OPTIMIZER_SLOT" not in k}
  matched = 0
  trained = _weights(latest)
  for key, average in averages.items():
    same = [k for k in model_keys if best_model.get_tensor(k).shape == average.shape
            and np.array_equal(best_model.get_tensor(k), average)]
    assert same, key
    assert not np.array_equal(trained[same[0]], average), key  # and not the trained weights
    matched += 1
  assert matched == len(averages) > 30
  assert bool(_read(best, ema.PREFIX + "in_model")["/.ATTRIBUTES/VARIABLE_VALUE"])
  # Validation scored the average: its logged loss differs from the raw run's, and eval.py reproduces it.
  val_ema = dict(summaries.read_scalars(os.path.join(ema_run, "validation"))["loss"])
  val_raw = dict(summaries.read_scalars(os.path.join(raw_run, "validation"))["loss"])
  assert abs(val_ema[8] - val_raw[8]) > 2e-5  # eval.py below reproduces each to 1e-6
  assert _score(ema_run, split="validation", checkpoint=latest)["loss"] == pytest.approx(val_ema[step], abs=1e-6)
  ckpt8 = os.path.join(ema_run, "ckpt-8")
  assert _score(ema_run, split="validation", checkpoint=ckpt8)["loss"] == pytest.approx(val_ema[8], abs=1e-6)
  assert _score(ema_run, split="validation", checkpoint=ckpt8, weights_for_eval="raw")["loss"] == \
      pytest.approx(val_raw[8], abs=1e-6)
  with pytest.raises(ValueError, match="holds the moving average only"):
    _score(ema_run, split="validation", checkpoint=best, weights_for_eval="raw")
  with pytest.raises(ValueError, match="holds no state of it"):
    _score(raw_run, split="validation", checkpoint=os.path.join(raw_run, "ckpt-8"), weights_for_eval="ema")


@pytest.mark.slow
def test_export_holds_the_average(ema_and_raw_runs):
  ema_run, _ = ema_and_raw_runs
  best_step = int(tf.train.latest_checkpoint(os.path.join(ema_run, "best")).rsplit("-", 1)[1])
  val = dict(summaries.read_scalars(os.path.join(ema_run, "validation"))["loss"])
  result = _score(ema_run, split="validation", export_dir=os.path.join(ema_run, "export"))
  assert result["loss"] == pytest.approx(val[best_step], rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_resume_continues_the_average_exactly(tmp_path, tiny_hub, toy_imdb, dtype):
  args = dict(RUN, weights_for_eval="ema", ema_decay=0.5, dtype=dtype, optimizer_wrapper="lookahead",
              lookahead_steps=3)
  full = run_train(tmp_path / "full", tiny_hub, toy_imdb, **args)
  resumed = run_train(interrupted_copy(full, tmp_path / "resumed", at=4, drop_events=True), tiny_hub, toy_imdb,
                      **args)
  a_full, a_resumed = (_read(os.path.join(run, "ckpt-8"), ema.PREFIX) for run in (full, resumed))
  assert a_full.keys() == a_resumed.keys() and len(a_full) > 30
  assert_same_tensors(a_resumed, a_full, atol=1e-6, what="resumed vs uninterrupted moving averages")


@pytest.mark.slow
def test_switching_the_average_on_at_a_resume(tmp_path, tiny_hub, toy_imdb, ema_and_raw_runs, caplog):
  args = dict(RUN, **RAW_CHECKPOINTS)
  _, raw = ema_and_raw_runs
  resumed = interrupted_copy(raw, tmp_path / "on", at=4, drop_events=True)
  with caplog.at_level("WARNING"):
    run_train(resumed, tiny_hub, toy_imdb, weights_for_eval="ema", ema_decay=0.8, **args)
  assert "holds no moving average" in caplog.text
  trained = [_weights(os.path.join(resumed, f"ckpt-{s}")) for s in range(5, 9)]  # w_5 .. w_8
  averages = _read(os.path.join(resumed, "ckpt-8"), ema.PREFIX + "average/")
  assert int(_read(os.path.join(resumed, "ckpt-8"), ema.PREFIX + "updates")["/.ATTRIBUTES/VARIABLE_VALUE"]) == 4
  checked = 0
  for key in trained[0]:
    name = key[len("model/"):]
    if np.array_equal(trained[0][key], trained[-1][key]):
      continue  # not a training variable (the encoder's non-trainable ones): nothing averaged
    candidates = [a for a in averages.values() if a.shape == trained[0][key].shape]
    expected = _closed_form([w[key] for w in trained], 0.8)
    assert any(np.allclose(a, expected, rtol=1e-5, atol=1e-6) for a in candidates), name
    checked += 1
  assert checked > 30
