"""Where one training step's time goes: forward, backward, optimizer update, and the top op types.

  python benchmarks/step_profile.py --dtype=bf16 --seq_length=32      # writes docs/benchmarks/step_profile_*.md
  python benchmarks/step_profile.py --dtype=fp32 --seq_length=64 --encoder_impl=hub

The model and step are train.py's (bertclf.model + official AdamW + clip), on one fixed random batch, so the
numbers separate the parts of a step; throughput.py measures whole runs. Each part: median of --repeats calls
after two warm-up calls. The op table comes from one TensorFlow profiler trace of --trace_steps steps; its times
are summed over the op threads (so they add up to more than the wall time; IDLE is threads waiting).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
import bertclf  # noqa: F401,E402  (selects tf_keras before TensorFlow loads)

import collections  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from bertclf import distribute
from bertclf.swaps import dropout
from bertclf import encoders
from bertclf.swaps import losses
from bertclf import model as model_lib
from bertclf.swaps import optim
from bertclf.swaps import steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = flags.FLAGS
flags.DEFINE_string("encoder", "runs/minilm_hub", "Encoder (make demo converts MiniLM here).")
flags.DEFINE_enum("encoder_impl", "native", ["hub", "native"], "As train.py's --encoder_impl.")
flags.DEFINE_bool("cls_only_last_layer", True, "As train.py's --cls_only_last_layer (native only).")
flags.DEFINE_enum("dropout_masks", "16bit", list(dropout.MASKS), "As train.py's --dropout_masks.")
flags.DEFINE_enum("dtype", "bf16", list(distribute.POLICIES), "As train.py's --dtype.")
flags.DEFINE_integer("batch_size", 32, "Batch.")
flags.DEFINE_integer("seq_length", 32, "Sequence length of the batch (every position real).")
flags.DEFINE_bool("jit_compile", False, "Compile the forward + backward with XLA (as train.py --jit_compile).")
flags.DEFINE_integer("repeats", 10, "Timed calls per part.")
flags.DEFINE_integer("trace_steps", 5, "Steps in the profiler trace (0: no op table).")
flags.DEFINE_string("out", "docs/benchmarks/step_profile", "Writes <out>_<dtype>_<impl>[_xla]_T<seq>.md "
                    "(empty: no file).")


def median_ms(fn):
  fn()
  fn()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn())  # wait for the result
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def op_table(step, steps):
  """{op type: thread-milliseconds per step} from one profiler trace (needs TF's bundled xprof converter)."""
  from tensorflow.python.profiler.internal import _pywrap_profiler_plugin  # pylint: disable=g-import-not-at-top
  logdir = tempfile.mkdtemp(prefix="bertclf_trace_")
  tf.profiler.experimental.start(logdir)
  for _ in range(steps):
    step().numpy()
  tf.profiler.experimental.stop()
  xplane = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[-1]
  data, _ = _pywrap_profiler_plugin.xspace_to_tools_data([xplane], "framework_op_stats", {})
  table = json.loads(data)[0]
  cols = [c["id"] for c in table["cols"]]
  per_type = collections.Counter()
  for row in table["rows"]:
    r = dict(zip(cols, [c.get("v") for c in row["c"]]))
    per_type[r["type"]] += (r["total_self_time"] or 0) / 1000 / steps
  return per_type


def main(_):
  distribute.set_precision(FLAGS.dtype)
  handles = encoders.resolve(FLAGS.encoder)
  model = model_lib.build_classifier(encoders.load_encoder_layer(
      handles, impl=FLAGS.encoder_impl, cls_only=FLAGS.cls_only_last_layer), 2)
  dropout.MASKS[FLAGS.dropout_masks](model)
  optimizer = optim.create_optimizer("adamw", 1e-5, 1000, 100, FLAGS.dtype)
  B, T = FLAGS.batch_size, FLAGS.seq_length  # pylint: disable=invalid-name
  rng = np.random.default_rng(0)
  features = {"input_word_ids": tf.constant(rng.integers(1000, 30000, [B, T]), tf.int32),  # [B, T]
              "input_mask": tf.ones([B, T], tf.int32), "input_type_ids": tf.zeros([B, T], tf.int32)}
  labels = tf.constant(rng.integers(0, 2, [B]), tf.int32)  # [B]
  # train.py's default step (bertclf/swaps/steps.py), and the same step with the model in inference mode: no dropout.
  ctx = steps.StepContext(model, losses.LOSSES["softmax_ce"], optimizer, B, variables=model.trainable_variables)
  no_dropout = steps.StepContext(lambda f, training: model(f, training=False), losses.LOSSES["softmax_ce"],
                                 optimizer, B, variables=model.trainable_variables)

  def loss_and_grads(training=True):
    loss, _, grads, _ = steps.default_step(ctx if training else no_dropout, features, labels)
    return loss, grads

  jit = FLAGS.jit_compile
  forward = tf.function(lambda: model(features, training=True), jit_compile=jit)
  # Returns a scalar of every gradient, so no part of the backward pass is pruned away.
  forward_backward = tf.function(lambda: tf.linalg.global_norm(loss_and_grads()[1]), jit_compile=jit)
  forward_backward_no_dropout = tf.function(lambda: tf.linalg.global_norm(loss_and_grads(training=False)[1]),
                                            jit_compile=jit)
  compute_gradients = tf.function(loss_and_grads, jit_compile=jit)  # as train.py: XLA around the gradients
  fixed_grads = optim.densify(loss_and_grads()[1])

  @tf.function
  def update():
    optimizer.apply_gradients(zip(fixed_grads, model.trainable_variables))

  @tf.function
  def step():
    loss, grads = compute_gradients()
    grads, _ = tf.clip_by_global_norm(optim.densify(grads), optim.CLIP_NORM)  # as train.py
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  parts = {"forward": median_ms(forward), "forward + backward": median_ms(forward_backward),
           "forward + backward, dropout off": median_ms(forward_backward_no_dropout),
           "optimizer update (AdamW)": median_ms(update), "whole step (+ clip)": median_ms(step)}
  title = (f"{handles.encoder}, --encoder_impl={FLAGS.encoder_impl} --dtype={FLAGS.dtype}"
           f"{' --jit_compile' if jit else ''}"
           f"{' --cls_only_last_layer' if FLAGS.cls_only_last_layer and FLAGS.encoder_impl == 'native' else ''}"
           f" --dropout_masks={FLAGS.dropout_masks}, batch {B} x {T} "
           f"tokens, {os.cpu_count()} CPUs, TF {tf.__version__}")
  lines = [f"Step profile: {title}", "", f"Command: `python benchmarks/step_profile.py {' '.join(sys.argv[1:])}`",
           "", "| part | ms (median) |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in parts.items()]
  lines.append(f"\nWhole step: {B / parts['whole step (+ clip)'] * 1000:.1f} examples/s.")
  if FLAGS.trace_steps:
    per_type = op_table(step, FLAGS.trace_steps)
    total = sum(per_type.values())
    lines += ["", f"Top op types (thread-ms per step, summed over threads; total {total:.0f}):", "",
              "| op type | thread-ms / step | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.1f} | {100 * v / total:.1f}% |" for k, v in per_type.most_common(15)]
  text = "\n".join(lines) + "\n"
  print(text)
  if FLAGS.out:
    out = os.path.join(ROOT, f"{FLAGS.out}_{FLAGS.dtype}_{FLAGS.encoder_impl}{'_xla' if jit else ''}"
                       f"{'' if FLAGS.cls_only_last_layer or FLAGS.encoder_impl == 'hub' else '_allrows'}"
                       f"{'_kerasdrop' if FLAGS.dropout_masks == 'keras' else ''}_T{T}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
      f.write(text)


if __name__ == "__main__":
  app.run(main)
