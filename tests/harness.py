"""Helpers shared by the test modules: train.py's main run in this process on the tiny encoder."""
import glob
import os
import shutil

from absl import flags
import tensorflow as tf

from bertclf import distribute
import eval as eval_lib
import train

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _argv(model_dir, tiny_hub, toy_imdb, **overrides):
  """train.py's flags for a run of the tiny encoder on the toy reviews. fp32 unless a test asks otherwise: --dtype
  auto gives bf16 on a CPU with amx_bf16 or avx512_bf16 and fp32 elsewhere, and tests of learning, replicas and
  resumes must not depend on the machine (--encoder_impl and --bucket_boundaries keep their auto defaults).
  An override of None leaves that flag out (its default, e.g. dtype=None for --dtype=auto)."""
  args = dict(dataset=toy_imdb, encoder=tiny_hub, model_dir=model_dir, seq_length=24, batch_size=16,
              learning_rate=5e-3, epochs=2, steps_per_loop=5, log_every_steps=10, summary_every_steps=5,
              checkpoint_every_steps=10, dropout=0.0, encoder_dropout=False, export=False, dtype="fp32")
  args.update(overrides)
  return [f"--{k}={v}" for k, v in args.items() if v is not None]


def run_train(model_dir, tiny_hub, toy_imdb, **overrides):
  """train.main in this process (the CPU is already split into 2 logical devices by conftest)."""
  FLAGS.unparse_flags()
  FLAGS(["train.py"] + _argv(str(model_dir), tiny_hub, toy_imdb, **overrides))
  try:
    train.main([])
  finally:
    distribute.set_precision("fp32")
  return str(model_dir)


def _weights(ckpt_prefix):
  reader = tf.train.load_checkpoint(ckpt_prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def run_eval(**overrides):
  """eval.main in this process with these flags (the rest at their defaults)."""
  FLAGS.unparse_flags()
  FLAGS(["eval.py"] + [f"--{k}={v}" for k, v in overrides.items()])
  try:
    eval_lib.main([])
  finally:
    distribute.set_precision("fp32")


def interrupted_copy(run, dst, at, drop_events=False):
  """A copy of `run` whose checkpoints after step `at` are gone, as if it had been killed right after `at`
  (drop_events: without its train/ event files too, so the resumed run writes every step again)."""
  shutil.copytree(run, dst)
  for path in glob.glob(os.path.join(dst, "ckpt-*")):
    if int(os.path.basename(path).split(".")[0].split("-")[1]) > at:
      os.remove(path)
  kept = os.path.join(dst, f"ckpt-{at}")
  tf.compat.v1.train.update_checkpoint_state(dst, kept, all_model_checkpoint_paths=[kept])
  if drop_events:
    shutil.rmtree(os.path.join(dst, "train"))
  return str(dst)
