"""Helpers shared by the test modules: train.py's main run in this process on the tiny encoder, and assertions
that say what differs."""
import concurrent.futures
import contextlib
import fcntl
import glob
import os
import shutil

from absl import flags
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub

from bertclf import distribute
from bertclf import encoders
import eval as eval_lib
import train

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The runs' --token_cache: a folder of this pytest process's temporary files (tests/conftest.py sets it), so each
# split of the toy reviews is tokenized once per process and not once per run. "off" outside pytest.
TOKEN_CACHE = "off"


def _argv(model_dir, tiny_hub, toy_imdb, **overrides):
  """train.py's flags for a run of the tiny encoder on the toy reviews. fp32 unless a test asks otherwise: --dtype
  auto gives bf16 on a CPU with amx_bf16 or avx512_bf16 and fp32 elsewhere, and tests of learning, replicas and
  resumes must not depend on the machine (--encoder_impl and --bucket_boundaries keep their auto defaults). The
  token cache is TOKEN_CACHE, under pytest's temporary folder: nothing is written outside it (the cache's own
  tests are tests/core/test_token_cache.py).
  An override of None leaves that flag out (its default, e.g. dtype=None for --dtype=auto)."""
  args = dict(dataset=toy_imdb, encoder=tiny_hub, model_dir=model_dir, seq_length=24, batch_size=16,
              learning_rate=5e-3, epochs=2, steps_per_loop=5, log_every_steps=10, summary_every_steps=5,
              checkpoint_every_steps=10, dropout=0.0, encoder_dropout=False, export=False, dtype="fp32",
              token_cache=TOKEN_CACHE)
  args.update(overrides)
  return [f"--{k}={v}" for k, v in args.items() if v is not None]


_SAVED_MODELS = {}  # (path, saved_model.pb's mtime) -> the hub.load'ed object


@contextlib.contextmanager
def _saved_models_loaded_once():
  """Within it, encoders' `hub.load` of a local SavedModel (the preprocessing model, and the encoder that the
  native implementation copies its weights from) returns the object loaded the first time in this pytest run.

  Both are only read: the preprocessing model is a stateless function, and the native encoder is a new BertEncoder
  with its own variables, assigned from the SavedModel's. Loading the same files again takes seconds per run and
  proves nothing more. The Hub layer (--encoder_impl=hub), whose variables are trained, is still loaded each time.
  A load that fails (a missing or broken path) is never cached, so its error is the real one.
  """
  real = encoders._load  # pylint: disable=protected-access

  def load(handle, load_fn, flag):
    pb = os.path.join(handle, "saved_model.pb")
    if load_fn is not hub.load or not os.path.isfile(pb):
      return real(handle, load_fn, flag)
    key = (os.path.abspath(handle), os.stat(pb).st_mtime_ns)
    if key not in _SAVED_MODELS:
      # In a thread of its own: outside the caller's strategy scope (scopes are per thread), so its variables are
      # plain ones that any later run's strategy can read.
      with concurrent.futures.ThreadPoolExecutor(1) as pool:
        _SAVED_MODELS[key] = pool.submit(real, handle, load_fn, flag).result()
    return _SAVED_MODELS[key]

  encoders._load = load  # pylint: disable=protected-access
  try:
    yield
  finally:
    encoders._load = real  # pylint: disable=protected-access


def run_train(model_dir, tiny_hub, toy_imdb, **overrides):
  """train.main in this process (the CPU is already split into 2 logical devices by conftest)."""
  FLAGS.unparse_flags()
  FLAGS(["train.py"] + _argv(str(model_dir), tiny_hub, toy_imdb, **overrides))
  try:
    with _saved_models_loaded_once():
      train.main([])
  finally:
    distribute.set_precision("fp32")
  return str(model_dir)


def _weights(ckpt_prefix):
  reader = tf.train.load_checkpoint(ckpt_prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("model/") and "OPTIMIZER_SLOT" not in k}


def checkpoint_tensors(ckpt_prefix):
  """Every tensor of a checkpoint (model, optimizer, evaluation-weights state, step, ...) but the save count and
  the object graph, which differ between an uninterrupted and a resumed run by construction."""
  reader = tf.train.load_checkpoint(ckpt_prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if "save_counter" not in k and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def run_eval(**overrides):
  """eval.main in this process with these flags (the rest at their defaults)."""
  FLAGS.unparse_flags()
  FLAGS(["eval.py"] + [f"--{k}={v}" for k, v in overrides.items()])
  try:
    with _saved_models_loaded_once():
      eval_lib.main([])
  finally:
    distribute.set_precision("fp32")


def built_once(tmp_path_factory, name, build):
  """The folder `build(folder)` fills, built once per pytest run: the first xdist worker that needs it builds it,
  the others wait for it and read the same folder (the suite runs in 3 processes on 2 cores, so a fixture built in
  each costs CPU the other tests need). Only for what tests read and never change: a test that changes one works
  on a copy. A build that failed is started again from an empty folder by the next worker that needs it."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # the run's temporary folder; each worker's is a folder in it
  folder, done = base / f"built_once_{name}", base / f"built_once_{name}.done"
  with open(base / f"built_once_{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when this process dies
    if not done.exists():
      shutil.rmtree(folder, ignore_errors=True)
      folder.mkdir()
      build(str(folder))
      done.touch()
  return str(folder)


def copy_run(run, dst):
  """A copy of a finished run (a shared fixture's) that a test may continue or change."""
  shutil.copytree(run, dst)
  return str(dst)


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


def assert_same_tensors(got, want, atol=0.0, what="tensors"):
  """{name: array} against {name: array}: the same names, and every value within atol (0: bit for bit). The
  message lists each tensor that differs with its largest absolute difference, the worst first."""
  assert got.keys() == want.keys(), (f"{what}: names differ: only in the first {sorted(got.keys() - want.keys())}, "
                                     f"only in the second {sorted(want.keys() - got.keys())}")
  diffs = []
  for name in sorted(want):
    a, b = np.asarray(got[name]), np.asarray(want[name])
    if a.shape != b.shape:
      diffs.append((np.inf, f"{name}: shape {a.shape} vs {b.shape}"))
      continue
    same = np.array_equal(a, b) if atol == 0 else np.allclose(a, b, rtol=0, atol=atol)
    if not same:
      diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
      diffs.append((diff, f"{name}: max abs diff {diff:.3g}"))
  diffs.sort(key=lambda d: -d[0])
  assert not diffs, (f"{what}: {len(diffs)} of {len(want)} differ ({'bit for bit' if atol == 0 else f'atol {atol:g}'})"
                     ":\n  " + "\n  ".join(text for _, text in diffs[:20]))


def plain(record):
  """A record (bertclf.splits) with its arrays as lists, so two records compare with ==."""
  return tf.nest.map_structure(lambda v: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v, record)


def tail(text, lines=30):
  """The last `lines` lines of a child process's output, for an assertion message."""
  return "\n--- last lines of the output ---\n" + "\n".join(str(text).rstrip().splitlines()[-lines:])


def two_replicas():
  """A MirroredStrategy over the 2 logical CPUs conftest makes, reducing on one device (no NCCL on a CPU)."""
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


def kernel_and_bias(rng):
  """Two variables for an evaluation-weights entry, in the caller's strategy scope: a [3, 4] kernel drawn from
  `rng` (a numpy RandomState the test goes on drawing from) and a [2] bias."""
  return [tf.Variable(rng.normal(size=(3, 4)).astype(np.float32), name="kernel"),
          tf.Variable(np.float32([1.0, -2.0]), name="bias")]
