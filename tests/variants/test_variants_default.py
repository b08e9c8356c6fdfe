"""The default step is unchanged by the swap-point refactor: step-for-step equal to a run of the code before it.

tests/data/default_step_reference.json holds the per-step `loss` and `grad_norm` of train.py at commit 8aa98b3
(before bertclf/swaps/steps.py existed) on a seeded tiny encoder; this test re-runs today's train.py with the same
flags on the same assets and compares. Three changes since were made on purpose, and the reference runs 8aa98b3
with them applied (tests/data/default_step_reference.patch, `git apply`-ed to the checkout): the head starts
from GlorotUniform (bertclf/swaps/heads.py), the step densifies embedding gradients before their norm
(optim.densify), and the training order is bertclf/order.py's keyed permutation. Regenerate the reference (it
records its command, commit and the patch's sha1) with:

  git worktree add /tmp/pre_refactor 8aa98b3
  python tests/variants/test_variants_default.py --worktree=/tmp/pre_refactor \
      --out=tests/data/default_step_reference.json
  git worktree remove --force /tmp/pre_refactor

The conftest `tiny_hub` draws its weights from unseeded Keras initializers, which differ from process to process
even after `tf.random.set_seed`; so both sides here build the encoder from a NumPy RandomState instead.
"""
import hashlib
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(ROOT, "tests", "data", "default_step_reference.json")
PATCH = os.path.join(ROOT, "tests", "data", "default_step_reference.patch")  # the changes made on purpose since
# fp32, no dropout anywhere: every step is a deterministic function of the assets and the flags.
FLAGS = dict(seq_length=24, batch_size=16, learning_rate=5e-3, train_steps=10, steps_per_loop=5,
             log_every_steps=5, summary_every_steps=1, checkpoint_every_steps=10, dropout=0.0,
             encoder_dropout=False, export=False, dtype="fp32")
RUNS = {"one_replica": {}, "two_replicas": {"num_cpu_devices": 2}}
# What the reference's train.py did, which today's defaults (auto) would change: the Hub layer, no buckets. Passed
# to today's train.py only (the reference's has neither flag).
TODAY = dict(encoder_impl="hub", bucket_boundaries="")


def build_assets(root):
  """<root>/hub: the conftest's tiny encoder with NumPy-seeded weights; <root>/imdb: the conftest's reviews."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bertclf.tools import hub_export  # pylint: disable=g-import-not-at-top
  from bertclf.tools import toydata  # pylint: disable=g-import-not-at-top

  def init(encoder):
    rng = np.random.RandomState(1)
    for v in encoder.weights:
      if v.shape.rank >= 2:  # kernels and embedding tables; biases and LayerNorms keep their constant init
        v.assign(np.clip(rng.normal(0.0, 0.02, v.shape), -0.04, 0.04).astype(np.float32))

  hub = os.path.join(root, "hub")
  tf.io.gfile.makedirs(hub)
  vocab = os.path.join(hub, "vocab.txt")
  size = hub_export.write_tiny_vocab(vocab)
  hub_export.export_hub_format(hub, bert_config=hub_export.tiny_bert_config(size, dropout=0.0),
                               vocab_file=vocab, default_seq_length=16, init_fn=init)
  imdb = toydata.write_imdb_like(os.path.join(root, "imdb"), num_train=400, num_test=100)
  return hub, imdb


def train_argv(hub, imdb, model_dir, extra):
  return [f"--{k}={v}" for k, v in dict(dataset=imdb, encoder=hub, model_dir=model_dir, **FLAGS, **extra).items()]


def per_step(model_dir):
  """{"steps": [1, 2, ...], "loss": [...], "grad_norm": [...]} from the run's train event files."""
  from bertclf import summaries  # pylint: disable=g-import-not-at-top
  scalars = summaries.read_scalars(os.path.join(model_dir, "train"))
  out = {"steps": [s for s, _ in scalars["loss"]]}
  for tag in ("loss", "grad_norm"):
    assert [s for s, _ in scalars[tag]] == out["steps"], tag
    out[tag] = [v for _, v in scalars[tag]]
  return out


@pytest.fixture(scope="module")
def seeded_assets(tmp_path_factory):
  return build_assets(str(tmp_path_factory.mktemp("seeded")))


@pytest.mark.slow
@pytest.mark.parametrize("run", sorted(RUNS))
def test_default_step_matches_the_pre_refactor_loop(tmp_path, seeded_assets, run):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from bertclf import distribute  # pylint: disable=g-import-not-at-top
  import train  # pylint: disable=g-import-not-at-top
  with open(REFERENCE) as f:
    reference = json.load(f)["runs"][run]
  hub, imdb = seeded_assets
  flag_values = flags.FLAGS
  flag_values.unparse_flags()
  flag_values(["train.py"] + train_argv(hub, imdb, str(tmp_path), {**RUNS[run], **TODAY}))
  try:
    train.main([])
  finally:
    distribute.set_precision("fp32")
  now = per_step(str(tmp_path))
  assert now["steps"] == reference["steps"] == list(range(1, 11))
  for tag in ("loss", "grad_norm"):
    np.testing.assert_allclose(now[tag], reference[tag], rtol=0, atol=1e-5, err_msg=tag)


def _sha1(path):
  with open(path, "rb") as f:
    return hashlib.sha1(f.read()).hexdigest()


def make_reference(worktree, out, scratch):
  """Applies PATCH to `worktree` (a checkout of the pre-refactor commit), runs its train.py twice per run and
  writes the JSON."""
  commit = subprocess.check_output(["git", "-C", worktree, "rev-parse", "HEAD"], text=True).strip()
  subprocess.run(["git", "-C", worktree, "apply", PATCH], check=True)
  hub, imdb = build_assets(os.path.join(scratch, "assets"))
  runs = {}
  for name, extra in RUNS.items():
    results = []
    for attempt in (1, 2):  # twice: the reference is only trusted when it reproduces
      model_dir = os.path.join(scratch, f"{name}_{attempt}")
      argv = train_argv(hub, imdb, model_dir, extra)
      subprocess.run([sys.executable, "train.py"] + argv, cwd=worktree, check=True, capture_output=True)
      results.append(per_step(model_dir))
    if results[0] != results[1]:
      raise RuntimeError(f"{name}: two runs of the reference differ: {results}")
    command = " ".join(["python", "train.py"] + argv)
    runs[name] = dict(command=command.replace(scratch, "$SCRATCH"), **results[0])
  text = json.dumps({"commit": commit, "patch": f"{os.path.relpath(PATCH, ROOT)} (sha1 {_sha1(PATCH)})",
                     "generated_by": "python tests/variants/test_variants_default.py "
                     "--worktree=<checkout of commit> (assets: build_assets($SCRATCH/assets))", "flags": FLAGS,
                     "runs": runs}, indent=1)
  with open(out, "w") as f:
    f.write(re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text) + "\n")


if __name__ == "__main__":
  import argparse  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, ROOT)
  import bertclf  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  parser = argparse.ArgumentParser()
  parser.add_argument("--worktree", required=True, help="A checkout of the pre-refactor commit (8aa98b3).")
  parser.add_argument("--out", default=REFERENCE)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    make_reference(os.path.abspath(args.worktree), args.out, tmp)
