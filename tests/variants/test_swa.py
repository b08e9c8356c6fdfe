"""--weights_for_eval=swa: the average against the mean of its snapshots on 2 replicas, its refusal of a start
past the run's end, and through train.py/eval.py: the average of the checkpointed weights, 1 vs 2 replicas, an
exact resume of every checkpointed tensor, eval.py scoring it and refusing state it does not know."""
import json
import os

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from bertclf import errors
from bertclf import summaries
from bertclf.swaps import eval_weights
from bertclf.swaps import optim
from bertclf.variants import swa
from harness import _weights
from harness import assert_same_tensors
from harness import checkpoint_tensors
from harness import interrupted_copy
from harness import kernel_and_bias
from harness import run_eval
from harness import run_train
from harness import two_replicas

FLAGS = flags.FLAGS


def test_swa_average_is_the_mean_of_its_snapshots_on_two_replicas():
  strategy = two_replicas()
  rng = np.random.RandomState(0)
  with strategy.scope():
    variables = kernel_and_bias(rng)
    entry = eval_weights.create("swa", None, variables, {"swa_start_step": 3, "swa_every": 2})
  entry.begin(10)

  @tf.function
  def update(step):
    strategy.run(entry.update, args=(step,))

  snapshots = [[], []]
  for step in range(1, 11):
    for v in variables:
      v.assign(rng.normal(size=v.shape).astype(np.float32) * step)  # "the optimizer's update"
    update(tf.constant(step, tf.int64))
    if step in (5, 7, 9):  # after steps s + c, s + 2c, ...: 5, 7, 9 (11 is past the end)
      for v, h in zip(variables, snapshots):
        h.append(v.numpy())
    if step < 5:
      assert int(entry.updates.numpy()) == 0
  assert int(entry.updates.numpy()) == 3
  for a, h in zip(entry.averages, snapshots):
    for component in a.values:  # every replica's copy
      np.testing.assert_allclose(component.numpy(), np.mean(np.float64(h), axis=0), rtol=1e-6, atol=1e-6)
  assert not np.allclose(entry.averages[0].values[0].numpy(), variables[0].numpy())


@pytest.mark.parametrize("options, message", [
    ({"swa_start_step": 9, "swa_every": 2}, "--swa_start_step=9 and --swa_every=2 put the first snapshot at step "
     "11, after the run's last step 10"),
    ({"swa_start_fraction": 0.95, "swa_every": 2}, r"--swa_start_fraction=0.95 \(step 8\) and --swa_every=2 put "
     "the first snapshot at step 10"),
])
def test_swa_refuses_a_start_that_averages_nothing(options, message):
  entry = eval_weights.create("swa", None, [tf.Variable([1.0], name="w")], options)
  total = 10 if "swa_start_step" in options else 9
  with pytest.raises(errors.UserError, match=message):
    entry.begin(total)


def test_swa_flags_need_the_entry_and_one_start():
  for args, message in ((["--swa_every=2"], "--swa_every is read by --weights_for_eval=swa only"),
                        (["--weights_for_eval=swa", "--swa_schedule=constant"], "needs its rate: give "
                         "--swa_learning_rate"),
                        (["--weights_for_eval=swa", "--swa_learning_rate=0.1"], "--swa_learning_rate is read by "
                         "--swa_schedule=constant or --swa_schedule=cyclic only"),
                        (["--weights_for_eval=swa", "--swa_start_step=3", "--swa_start_fraction=0.5"],
                         "both set the start of SWA")):
    FLAGS.unparse_flags()
    with pytest.raises(flags.IllegalFlagValueError, match=message):
      FLAGS(["train.py", *args])
  FLAGS.unparse_flags()


# ---------------------------------------------------------------- through train.py and eval.py
RUN = dict(train_steps=8, steps_per_loop=2, log_every_steps=4, summary_every_steps=1, eval_every_steps=4,
           checkpoint_every_steps=2, max_to_keep=10, num_cpu_devices=2, weights_for_eval="swa", swa_start_step=4,
           swa_every=2, swa_schedule="cyclic", swa_learning_rate=2e-3)


def _read(path, prefix):
  reader = tf.train.load_checkpoint(path)
  return {k[len(prefix):]: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def swa_run(tmp_path_factory, tiny_hub, toy_imdb):
  return run_train(tmp_path_factory.mktemp("swa") / "run", tiny_hub, toy_imdb, export=True, export_weights="final",
                   **RUN)


@pytest.mark.slow
def test_swa_averages_the_weights_of_its_snapshot_steps(swa_run):
  w6, w8 = (_weights(os.path.join(swa_run, f"ckpt-{s}")) for s in (6, 8))
  averages = _read(os.path.join(swa_run, "ckpt-8"), swa.StochasticWeightAveraging.prefix() + "average/")
  assert swa.StochasticWeightAveraging.updates_in(os.path.join(swa_run, "ckpt-8")) == 2
  assert swa.StochasticWeightAveraging.updates_in(os.path.join(swa_run, "ckpt-4")) == 0
  checked = 0
  for key in w8:
    if np.array_equal(w6[key], w8[key]):
      continue  # not a training variable
    expected = (w6[key].astype(np.float64) + w8[key]) / 2
    assert any(a.shape == expected.shape and np.allclose(a, expected, rtol=1e-6, atol=1e-7)
               for a in averages.values()), key
    checked += 1
  assert checked > 30
  snapshots = summaries.read_scalars(os.path.join(swa_run, "train"))["swa_snapshots"]
  assert snapshots == [(s, float((s > 4) * ((s - 4) // 2))) for s in range(1, 9)]
  # The cyclic schedule: each snapshot step (6, 8) ends a cycle at --swa_learning_rate; steps up to 4 decay.
  rates = dict(summaries.read_scalars(os.path.join(swa_run, "train"))["learning_rate"])
  assert rates[6] == rates[8] == pytest.approx(2e-3) and rates[4] != pytest.approx(2e-3), rates


def test_swa_learning_rate_is_constant_or_cycles_after_the_start():
  base = lambda u: 1.0 - tf.cast(u, tf.float32) / 100  # pylint: disable=unnecessary-lambda-assignment
  cyclic = swa.SWALearningRate(base, start=4, swa_rate=0.1, peak=1.0, cycle=3)
  constant = swa.SWALearningRate(base, start=4, swa_rate=0.1, peak=1.0)
  # Update u is step u + 1: steps 1-4 keep the run's schedule; then t = 1/3, 2/3, 1 per cycle of 3, so the
  # updates of steps 7 and 10 (a snapshot after each, with --swa_every=3) use the SWA rate.
  want = [1.0, 0.99, 0.98, 0.97, 0.7, 0.4, 0.1, 0.7, 0.4, 0.1]
  np.testing.assert_allclose([float(cyclic(u)) for u in range(10)], want, rtol=1e-6)
  np.testing.assert_allclose([float(constant(u)) for u in range(10)], want[:4] + [0.1] * 6, rtol=1e-6)
  # Through --weights_for_eval=swa's entry and the optimizer: the rate an update uses.
  entry = eval_weights.create("swa", None, [tf.Variable([1.0], name="w")],
                              {"swa_start_step": 4, "swa_every": 3, "swa_schedule": "cyclic",
                               "swa_learning_rate": 0.1})
  entry.begin(10)
  opt = optim.create_optimizer("adamw", 1.0, 100, 0, "fp32", options={},
                               schedule=lambda s: entry.learning_rate(s, 1.0))
  opt.iterations.assign(6)
  assert float(optim.learning_rate(opt)) == pytest.approx(0.1)
  opt.iterations.assign(4)
  assert float(optim.learning_rate(opt)) == pytest.approx(0.7)


@pytest.mark.slow
def test_eval_scores_the_swa_weights_and_refuses_state_it_does_not_know(swa_run, monkeypatch):
  ckpt8 = os.path.join(swa_run, "ckpt-8")
  val = dict(summaries.read_scalars(os.path.join(swa_run, "validation"))["loss"])

  def score(**flags_):
    run_eval(model_dir=swa_run, plots="false", split="validation", **flags_)
    with open(os.path.join(swa_run, "eval_validation.json")) as f:
      return json.load(f)["loss"]

  assert score(checkpoint=ckpt8) == pytest.approx(val[8], abs=1e-6)  # validation scored the average
  raw = score(checkpoint=ckpt8, weights_for_eval="raw")
  assert abs(raw - val[8]) > 2e-5
  # Step 4: no snapshot yet; validation and eval.py both used the trained weights.
  assert score(checkpoint=os.path.join(swa_run, "ckpt-4")) == pytest.approx(val[4], abs=1e-6)
  # Code without the swa entry must refuse, not score the trained weights.
  without_swa = {k: v for k, v in eval_weights.WEIGHTS_FOR_EVAL.items() if k != "swa"}
  monkeypatch.setattr(eval_weights, "WEIGHTS_FOR_EVAL", without_swa)
  with pytest.raises(errors.UserError, match="no --weights_for_eval entry here"):
    eval_weights.held_entry(ckpt8)
  with pytest.raises(errors.UserError, match="validated --weights_for_eval=swa .config.json., an entry this code"):
    score(checkpoint=ckpt8)


@pytest.mark.slow
def test_swa_resume_restores_every_checkpointed_tensor_exactly(swa_run, tmp_path, tiny_hub, toy_imdb):
  resumed = run_train(interrupted_copy(swa_run, tmp_path / "resumed", at=6, drop_events=True), tiny_hub, toy_imdb,
                      **RUN)
  full = checkpoint_tensors(os.path.join(swa_run, "ckpt-8"))
  assert sum(k.startswith("eval_weights/swa_") for k in full) > 30
  assert_same_tensors(checkpoint_tensors(os.path.join(resumed, "ckpt-8")), full, what="resumed vs uninterrupted")


@pytest.mark.slow
def test_swa_on_one_and_two_replicas(swa_run, tmp_path, tiny_hub, toy_imdb):
  one = run_train(tmp_path / "one", tiny_hub, toy_imdb, **dict(RUN, num_cpu_devices=1))
  prefix = swa.StochasticWeightAveraging.prefix() + "average/"
  a1, a2 = (_read(os.path.join(run, "ckpt-8"), prefix) for run in (one, swa_run))
  assert a1.keys() == a2.keys()
  for k in a1:
    np.testing.assert_allclose(a2[k], a1[k], atol=2e-5, err_msg=k)


@pytest.mark.slow
def test_export_weights_final_exports_the_last_average(swa_run):
  val = dict(summaries.read_scalars(os.path.join(swa_run, "validation"))["loss"])
  run_eval(model_dir=swa_run, plots="false", split="validation", export_dir=os.path.join(swa_run, "export"))
  with open(os.path.join(swa_run, "eval_validation.json")) as f:
    # The SWA average of step 8 (the trained weights of step 8 score differently: the test above).
    assert json.load(f)["loss"] == pytest.approx(val[8], rel=1e-4)
