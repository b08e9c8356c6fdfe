"""The 'auto' defaults of --dtype, --encoder_impl and --bucket_boundaries: the choice on faked machines, the
resolution in train.py, config.json, a resume on another machine, and eval.py."""
import json
import os
import platform
import subprocess
import sys

from absl import logging
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bertclf import distribute
from bertclf import encoders
from bertclf import errors
from bertclf import fast_path
from bertclf import flags as bertclf_flags
from bertclf import hardware
from harness import run_eval
from harness import run_train

AMX_CPU = frozenset({"fpu", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
PLAIN_CPU = frozenset({"fpu", "avx2", "avx512f"})


@pytest.mark.parametrize("cpu,gpus,impl,dtype", [
    (PLAIN_CPU, [(8, 0)], "native", "bf16"),            # A100
    (PLAIN_CPU, [(9, 0)], "native", "bf16"),            # H100
    (PLAIN_CPU, [(7, 0)], "native", "fp16"),            # V100
    (PLAIN_CPU, [(7, 5)], "native", "fp16"),            # T4
    (PLAIN_CPU, [(8, 0), (7, 5)], "native", "fp16"),    # mixed: the lowest decides
    (PLAIN_CPU, [(6, 0)], "native", "fp32"),            # P100
    (AMX_CPU, [], "native", "bf16"),
    (frozenset({"avx512f", "avx512_bf16"}), [], "native", "bf16"),
    (PLAIN_CPU, [], "native", "fp32"),                  # AVX-512 without its bf16 extension
    (frozenset(), [], "native", "fp32"),                # no /proc/cpuinfo
    (AMX_CPU, [(6, 0)], "native", "fp32"),              # the GPU trains, not the CPU
    (AMX_CPU, [], "hub", "fp32"),                       # float32 inside the SavedModel
    (PLAIN_CPU, [(8, 0)], "hub", "fp32"),
])
def test_choose_dtype(cpu, gpus, impl, dtype):
  chosen, reason = hardware.choose_dtype(cpu, gpus, impl)
  assert chosen == dtype, reason
  assert reason


@pytest.mark.parametrize("requested,num_gpus,onednn,threads", [
    (None, 0, True, 1),     # CPU-only with oneDNN: one op at a time
    (None, 2, True, 0),     # GPUs: TensorFlow's choice
    (None, 0, False, 0),    # TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's choice
    (4, 0, True, 4),        # the flag wins
    (0, 0, True, 0),
])
def test_choose_inter_op_threads(requested, num_gpus, onednn, threads):
  chosen, reason = hardware.choose_inter_op_threads(requested, num_gpus, onednn)
  assert chosen == threads, reason
  assert reason


SET_THREADS = """
import bertclf
import tensorflow as tf
from bertclf import distribute
distribute.set_inter_op_threads(None, 0)
tf.constant(1.0) + 1.0  # initializes TensorFlow with its pools
print("threads", tf.config.threading.get_inter_op_parallelism_threads())
distribute.set_inter_op_threads(3, 0)  # too late: kept, with a warning
print("threads", tf.config.threading.get_inter_op_parallelism_threads())
"""


@pytest.mark.parametrize("onednn,threads", [("1", 1), ("0", 0)])
def test_set_inter_op_threads_before_tensorflow_initializes(onednn, threads):
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, CUDA_VISIBLE_DEVICES="")
  out = subprocess.run([sys.executable, "-c", SET_THREADS], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__))))).stdout
  assert [l for l in out.splitlines() if l.startswith("threads")] == [f"threads {threads}"] * 2, out
  assert f"Inter-op threads stay {threads} (TensorFlow is already initialized), not 3" in out, out


def test_cpu_flags_reads_proc_cpuinfo(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx512f amx_bf16\n\n"
                     "processor\t: 1\nflags\t\t: fpu avx512f amx_bf16\n")
  assert hardware.cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "amx_bf16"}
  assert hardware.cpu_flags(str(tmp_path / "missing")) == frozenset()
  assert hardware.cpu_name(str(cpuinfo)) == "Xeon"
  assert hardware.cpu_name(str(tmp_path / "missing")) == platform.processor()


def test_devices_leave_out_gpus_the_strategy_does_not_use(monkeypatch):
  monkeypatch.setattr(hardware, "gpu_capabilities", lambda num_gpus=None: [(8, 0), (7, 5)][:num_gpus])
  assert fast_path.devices()[1] == [(8, 0), (7, 5)]
  assert fast_path.devices(num_gpus=1)[1] == [(8, 0)]
  assert fast_path.devices(num_gpus=0)[1] == []
  assert fast_path.devices(num_cpu_devices=2)[1] == []


def _auto_buckets(lengths, seq_length):
  return bertclf_flags.resolve_bucket_boundaries(
      np.array(lengths), dict(bucket_boundaries=["auto"], num_buckets=16, seq_length=seq_length))


def test_auto_buckets_kept_for_short_texts():
  lengths = np.random.RandomState(0).randint(8, 40, size=1000)  # mean ~24 of 64
  bounds, reason = _auto_buckets(lengths, 64)
  assert 1 <= len(bounds) <= 15 and bounds == sorted(bounds) and bounds[-1] < 64
  padded = float(reason.split("mean padded ")[1].split(" of")[0])
  assert padded < 0.85 * 64
  assert bertclf_flags.bucket_boundaries(lengths, dict(bucket_boundaries=["auto"], num_buckets=16,
                                                       seq_length=64)) == bounds


def test_auto_buckets_dropped_when_texts_fill_the_window():
  lengths = np.full(1000, 128)
  lengths[:50] = 40  # 5% short ones: buckets would save 3.4% of the positions
  bounds, reason = _auto_buckets(lengths, 128)
  assert bounds == [] and "under the 15%" in reason, reason
  # Given boundaries are kept whatever they save.
  assert bertclf_flags.resolve_bucket_boundaries(
      lengths, dict(bucket_boundaries=["40"], num_buckets=16, seq_length=128))[0] == [40]


def test_embedding_slices_get_the_rows_of_a_full_length_batch():
  """Across workers a bucketed step's embedding gradient must keep one shape (distribute.fixed_rows): k passes over
  [b, length] ids give k * b * length rows, padded to k * b * seq_length, and the dense gradient is unchanged."""
  rng = np.random.RandomState(0)
  table_shape = [50, 3]
  for passes, b, length in [(1, 4, 8), (1, 4, 24), (2, 4, 8), (3, 2, 5)]:
    n = passes * b * length
    g = tf.IndexedSlices(tf.constant(rng.normal(size=(n, 3)), tf.float32),
                         tf.constant(rng.randint(0, 50, size=n), tf.int32), tf.constant(table_shape))
    dense_w = tf.ones([4, 3])
    padded, dense = distribute.fixed_rows([g, dense_w], tf.constant(length), 24)
    assert dense is dense_w
    assert padded.values.shape[0] == padded.indices.shape[0] == passes * b * 24, (passes, b, length)
    np.testing.assert_array_equal(tf.convert_to_tensor(padded).numpy(), tf.convert_to_tensor(g).numpy())


def test_mean_padded_length():
  from bertclf import pipeline  # pylint: disable=g-import-not-at-top
  assert pipeline.mean_padded_length([3, 5, 9, 20], [4, 8], 16) == (4 + 8 + 16 + 16) / 4
  assert pipeline.mean_padded_length([3, 5], [], 16) == 16


@pytest.mark.slow
def test_auto_encoder_is_native_with_the_machines_dtype(tiny_hub):
  try:
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
      encoder, resolved = fast_path.load_encoder(encoders.resolve(tiny_hub), "auto", "auto", (AMX_CPU, []))
    assert (resolved.encoder_impl, resolved.dtype) == ("native", "bf16")
    assert encoder.compute_dtype == "bfloat16"
    assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # for the head built next
    _, resolved = fast_path.load_encoder(encoders.resolve(tiny_hub), "auto", "fp32", (AMX_CPU, []))
    assert resolved.dtype == "fp32" and resolved.reasons["dtype"] == "given"  # an explicit --dtype wins
    _, resolved = fast_path.load_encoder(encoders.resolve(tiny_hub), "hub", "auto", (AMX_CPU, [(8, 0)]))
    assert (resolved.encoder_impl, resolved.dtype) == ("hub", "fp32")
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")


def _not_bert(tmp_path):
  module = tf.Module()
  module.v = tf.Variable(tf.zeros([3, 3]), name="albert_something")
  tf.saved_model.save(module, str(tmp_path))
  return encoders.Handles(str(tmp_path), "unused", "x")


@pytest.mark.parametrize("impl", ["auto", "native"])
def test_non_bert_encoder_gets_the_hub_layer_in_fp32(tmp_path, monkeypatch, caplog, impl):
  """auto: the reason goes into the one fast-path line; an explicit native also warns (what it loses)."""
  hub_layer = object()
  monkeypatch.setattr(encoders, "load_hub_encoder", lambda handles, trainable=True: hub_layer)
  try:
    with caplog.at_level(logging.WARNING):
      encoder, resolved = fast_path.load_encoder(_not_bert(tmp_path), impl, "auto", (AMX_CPU, []))
    assert encoder is hub_layer and (resolved.encoder_impl, resolved.dtype) == ("hub", "fp32")
    assert "not a BERT encoder" in resolved.reasons["encoder_impl"]
    assert tf_keras.mixed_precision.global_policy().name == "float32"  # set before the Hub layer is built
    assert ("falling back to the TF Hub layer, so mixed precision will not reach the encoder" in caplog.text) == \
        (impl == "native")
  finally:
    tf_keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_train_resolves_auto_records_it_and_a_resume_keeps_it(tmp_path, tiny_hub, toy_imdb, monkeypatch, caplog):
  """--dtype, --encoder_impl and --bucket_boundaries at their auto defaults through train.py and eval.py."""
  expected, _ = hardware.choose_dtype(hardware.cpu_flags(), [], "native")
  with caplog.at_level(logging.INFO, logger="absl"):
    run = run_train(tmp_path / "auto", tiny_hub, toy_imdb, dtype=None, train_steps=10, verbosity=0)
  with open(os.path.join(run, "config.json")) as f:
    config = json.load(f)
  assert (config["encoder_impl"], config["dtype"]) == ("native", expected)
  assert config["policy"] == {"fp32": "float32", "bf16": "mixed_bfloat16"}[expected]
  # The toy reviews fill ~19 of 24 positions: buckets save over 15%, so auto keeps them.
  assert config["bucket_boundaries"] and [int(b) for b in config["bucket_boundaries"]] + [24] == \
      config["train_bucket_lengths"]
  assert set(config["fast_path"]) == {"encoder_impl", "dtype", "bucket_boundaries"}
  line = [m for m in caplog.messages if m.startswith("fast path: ")]
  assert len(line) == 1 and "encoder native (BertEncoder rebuilt" in line[0] and f"dtype {expected} (" in line[0]
  assert f"buckets {len(config['train_bucket_lengths'])} lengths (mean padded" in line[0]

  # The same run continued on a machine whose CPU has no bf16: config.json's values, and the log says so.
  other = "bf16" if expected == "fp32" else "fp32"
  monkeypatch.setattr(hardware, "cpu_flags", lambda path=None: AMX_CPU if other == "bf16" else PLAIN_CPU)
  caplog.clear()
  with caplog.at_level(logging.INFO, logger="absl"):
    run_train(run, tiny_hub, toy_imdb, dtype=None, train_steps=20, verbosity=0)
  line = [m for m in caplog.messages if m.startswith("fast path: ")]
  assert f"dtype {expected} (from the run's config.json: {config['fast_path']['dtype']}; this machine alone would " \
      f"choose {other}" in line[0]
  with open(os.path.join(run, "history.jsonl")) as f:
    restart = [json.loads(l) for l in f][-1]
  assert restart["start_step"] == 10 and set(restart["changed"]) == {"train_steps", "total_steps", "warmup_steps"}

  # eval.py builds the run's encoder under the run's dtype.
  caplog.clear()
  with caplog.at_level(logging.INFO, logger="absl"):
    run_eval(model_dir=run, split="validation", plots=False, verbosity=0)
  assert any(m.startswith("Scoring with encoder native") and f"dtype {expected}" in m for m in caplog.messages)


@pytest.mark.slow
def test_train_without_buckets_when_texts_fill_the_window(tmp_path, tiny_hub, toy_imdb):
  # At --seq_length=8 every toy review is truncated to the window: buckets would save nothing.
  run = run_train(tmp_path / "full", tiny_hub, toy_imdb, seq_length=8, train_steps=5, encoder_impl="hub", dtype=None)
  with open(os.path.join(run, "config.json")) as f:
    config = json.load(f)
  assert config["bucket_boundaries"] == [] and config["train_bucket_lengths"] == []
  assert "under the 15%" in config["fast_path"]["bucket_boundaries"]
  assert (config["encoder_impl"], config["dtype"]) == ("hub", "fp32")  # the Hub layer: fp32 on any machine
