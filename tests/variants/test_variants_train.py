"""Every variant through train.py: 2 replicas, its scalars in TensorBoard, and an exact resume from a checkpoint.

Resume check: a run of 8 steps saves at 4 and 8; a copy of it loses checkpoint 8 (as if killed after step 4)
and is run again with the same flags. It must continue at step 4 and end with the same weights as the
uninterrupted run; so the variant's state (optimizer slots, frozen variables, ...) survives a restart and the
learning-rate schedule is the same. Dropout is off, so every step is deterministic (R-Drop's KL is then 0;
tests/variants/test_variants.py checks it with dropout on).
"""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from bertclf import encoders
from bertclf.variants import freezing
from bertclf import model as model_lib
from bertclf import summaries
from harness import _weights
from harness import assert_same_tensors
from harness import interrupted_copy
from harness import run_train


# The variants are independent swap points, so four runs cover ten of the twelve (and show they compose): each
# runs on 2 replicas, resumes, and is checked for its own effects. sam and fgm_global run through train.py in
# test_synchronised_steps.py.
COMBOS = {
    "sam_global+grad_accum+lookahead+ema": dict(step="sam_global", sam_rho=0.1, grad_accum_steps=2,
                                                optimizer_wrapper="lookahead", lookahead_steps=3,
                                                weights_for_eval="ema", ema_decay=0.9),
    "fgm+grad_accum+llrd": dict(step="fgm", fgm_epsilon=0.5, grad_accum_steps=2, optimizer="adamw_llrd",
                                layer_decay=0.5),
    "rdrop+freeze_layers+label_smoothing": dict(step="rdrop", rdrop_alpha=1.0, freeze="embeddings_and_layers",
                                                freeze_layers=1, loss="softmax_ce_smoothed",
                                                label_smoothing=0.1),
    "linear_probe": dict(freeze="encoder"),
}


def _train(model_dir, tiny_hub, toy_imdb, **overrides):
  """test_train's in-process run, 8 steps on 2 replicas with a checkpoint every 4 unless overridden."""
  args = dict(train_steps=8, steps_per_loop=4, log_every_steps=4, summary_every_steps=1, checkpoint_every_steps=4,
              num_cpu_devices=2)
  args.update(overrides)
  return run_train(model_dir, tiny_hub, toy_imdb, **args)


@pytest.mark.slow
@pytest.mark.parametrize("combo", list(COMBOS))
def test_variants_train_on_two_replicas_and_resume_exactly(tmp_path, tiny_hub, toy_imdb, combo):
  variant_flags = COMBOS[combo]
  full = _train(tmp_path / "full", tiny_hub, toy_imdb, **variant_flags)
  resumed = interrupted_copy(full, tmp_path / "resumed", at=4)
  shutil.rmtree(os.path.join(resumed, "train"))  # so the event files below are the second run's alone
  _train(resumed, tiny_hub, toy_imdb, **variant_flags)
  steps_run = [s for s, _ in summaries.read_scalars(os.path.join(resumed, "train"))["loss"]]
  assert steps_run == [5, 6, 7, 8]  # continued after step 4
  final = tf.train.latest_checkpoint(resumed)
  assert final.endswith("ckpt-8")
  assert_same_tensors(_weights(final), _weights(tf.train.latest_checkpoint(full)), atol=1e-6,
                      what="resumed vs uninterrupted weights")

  scalars = summaries.read_scalars(os.path.join(full, "train"))
  assert [s for s, _ in scalars["loss"]] == list(range(1, 9))
  assert all(np.isfinite(v) for _, v in scalars["loss"])
  if variant_flags.get("step") == "rdrop":  # its terms are logged; without dropout the KL is 0
    for (_, loss), (_, ce), (_, kl) in zip(scalars["loss"], scalars["rdrop_ce"], scalars["rdrop_kl"]):
      assert kl == pytest.approx(0.0, abs=1e-7) and loss == pytest.approx(ce, rel=1e-6)
  if variant_flags.get("step") == "sam_global":  # the loss at w + e is logged, above the loss at w
    assert all(p > loss for (_, loss), (_, p) in zip(scalars["loss"], scalars["sam_perturbed_loss"]))
  if variant_flags.get("step") == "fgm":  # its terms are logged; the loss is their sum
    for (_, loss), (_, clean), (_, adv) in zip(scalars["loss"], scalars["fgm_clean_loss"], scalars["fgm_adv_loss"]):
      assert adv != clean and loss == pytest.approx(clean + adv, rel=1e-5)
  if "freeze" in variant_flags:
    _check_frozen(final, tiny_hub, variant_flags)


def _check_frozen(ckpt, tiny_hub, variant_flags):
  """Frozen variables are bit-identical to where train.py started; all the others moved."""
  # As train.py builds it with --encoder_impl=auto (the tiny encoder rebuilds natively): the same start.
  encoder = encoders.load_encoder_layer(encoders.resolve(tiny_hub), impl="native", cls_only=True)
  model = model_lib.build_classifier(encoder, 2, "dense", 0.0, encoder_dropout=False, seed=0)
  trained = {v.ref() for v in freezing.trainable_variables(model, variant_flags["freeze"], variant_flags)}
  before = {v.name: v.numpy() for v in model.trainable_variables}
  tf.train.Checkpoint(model=model).restore(ckpt).expect_partial()
  frozen = [v for v in model.trainable_variables if v.ref() not in trained]
  # linear probe: all 39 encoder variables; embeddings_and_layers k=1: 5 embedding + 16 layer_0 variables.
  assert len(frozen) == (39 if variant_flags["freeze"] == "encoder" else 5 + 16)
  for v in model.trainable_variables:
    if v.ref() in trained:
      assert not np.array_equal(v.numpy(), before[v.name]), f"{v.name} did not move"
    else:
      np.testing.assert_array_equal(v.numpy(), before[v.name], err_msg=v.name)


@pytest.mark.slow
def test_grad_accum_on_two_replicas_gives_the_one_replica_update(tmp_path, tiny_hub, toy_imdb):
  one = _train(tmp_path / "one", tiny_hub, toy_imdb, train_steps=1, num_cpu_devices=1)
  accum = _train(tmp_path / "accum", tiny_hub, toy_imdb, train_steps=1, grad_accum_steps=4)  # 2 x 4 x 2 examples
  # The accumulated gradient is the one-replica gradient: same loss and global norm, to float rounding.
  for tag in ("loss", "grad_norm"):
    (s1, v1), = summaries.read_scalars(os.path.join(one, "train"))[tag]
    (s2, v2), = summaries.read_scalars(os.path.join(accum, "train"))[tag]
    assert s1 == s2 == 1 and v2 == pytest.approx(v1, rel=1e-5), tag
  # And so the same update.
  assert_same_tensors(_weights(tf.train.latest_checkpoint(accum)), _weights(tf.train.latest_checkpoint(one)),
                      atol=2e-5, what="2 replicas x 4 micro-batches vs 1 replica")


@pytest.mark.slow
def test_fp16_loss_scaling_with_fgm_and_grad_accum(tmp_path, tiny_hub, toy_imdb):
  run = _train(tmp_path / "run", tiny_hub, toy_imdb, dtype="fp16", train_steps=4, step="fgm", fgm_epsilon=0.5,
               grad_accum_steps=2)
  scalars = summaries.read_scalars(os.path.join(run, "train"))
  assert "loss_scale" in scalars
  assert all(np.isfinite(v) for _, v in scalars["loss"])
  assert all(adv != clean for (_, clean), (_, adv) in zip(scalars["fgm_clean_loss"], scalars["fgm_adv_loss"]))
