"""Shared test fixtures: a tiny TF Hub-format encoder and a generated aclImdb-layout folder, built once per run.

The host CPU is split into 2 logical devices before TensorFlow initializes, so any test can build a
1-replica strategy (on /cpu:0) or a 2-replica MirroredStrategy in the same process.
"""
import os

# One intra-op thread per TensorFlow process (this one and every train.py/eval.py a test starts, which inherit it):
# the tiny test models give a second thread almost nothing to do, and its spin-waiting takes CPU from the other
# pytest worker and the child processes. On the 2-core VM, tests/variants/test_swa.py alone took 99 s with
# TensorFlow's default (a thread per core) and 55 s with one (docs/TESTING.md). Set before TensorFlow makes its pools.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import pytest
import tensorflow as tf

from bertclf import distribute
from bertclf import flags as bertclf_flags
from bertclf.tools import hub_export
from bertclf.tools import toydata

distribute.split_cpu(2)
bertclf_flags.define_flags()


# Fixtures that train (or start train.py): a test that uses one is marked slow, whatever its own time, because under
# `make test-fast` the training would land in it.
TRAINING_FIXTURES = {"ten_step_run", "one_replica_run", "trained", "past_best", "two_worker_run", "ema_and_raw_runs",
                     "swa_run"}


def pytest_collection_modifyitems(items):
  for item in items:
    if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def shared_token_cache(tmp_path_factory):
  """One token cache for the runs of this pytest process (harness.TOKEN_CACHE): the toy splits are tokenized once,
  not by each of the ~60 runs (about 1 s of a 5 s run of the tiny encoder)."""
  import harness  # pylint: disable=g-import-not-at-top
  harness.TOKEN_CACHE = str(tmp_path_factory.mktemp("token_cache"))
  yield harness.TOKEN_CACHE
  harness.TOKEN_CACHE = "off"


def _export_tiny_hub(root):
  vocab = os.path.join(root, "vocab.txt")
  size = hub_export.write_tiny_vocab(vocab)
  tf.random.set_seed(1)
  hub_export.export_hub_format(root, bert_config=hub_export.tiny_bert_config(size, dropout=0.0),
                               vocab_file=vocab, default_seq_length=16)


@pytest.fixture(scope="session")
def tiny_hub(tmp_path_factory):
  """A 2-layer, hidden-32 BERT encoder and its preprocessing model, both TF Hub format; no dropout inside, so
  training is deterministic. One copy for the pytest workers (harness.built_once): never write into it."""
  import harness  # pylint: disable=g-import-not-at-top
  return harness.built_once(tmp_path_factory, "tiny_hub", _export_tiny_hub)


@pytest.fixture(scope="session")
def toy_imdb(tmp_path_factory):
  """Generated reviews in aclImdb layout: train/{neg,pos} (400) and test/{neg,pos} (100). One copy for the pytest
  workers (harness.built_once): never write into it."""
  import harness  # pylint: disable=g-import-not-at-top
  root = harness.built_once(tmp_path_factory, "toy_imdb", lambda d: toydata.write_imdb_like(
      os.path.join(d, "aclImdb"), num_train=400, num_test=100))
  return os.path.join(root, "aclImdb")


@pytest.fixture(scope="session")
def ten_step_run(tmp_path_factory, tiny_hub, toy_imdb):
  """harness.run_train's defaults for 10 steps (a checkpoint at 10) and an export: shared by the tests that continue
  or rerun a finished run. Never modify it: continue a harness.copy_run of it."""
  from harness import run_train  # pylint: disable=g-import-not-at-top
  return run_train(tmp_path_factory.mktemp("ten_steps") / "run", tiny_hub, toy_imdb, train_steps=10, export=True)


@pytest.fixture()
def policy():
  """distribute.set_precision for one test; the policy goes back to fp32 after it."""
  yield distribute.set_precision
  distribute.set_precision("fp32")
