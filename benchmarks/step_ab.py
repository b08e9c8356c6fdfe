"""One change to train.py's step, timed against the step without it: whole steps, interleaved in one process.

  python benchmarks/step_ab.py --compare=last_layer --lengths=16,32,48 --rounds=30
  python benchmarks/step_ab.py --compare=dropout_masks,all --lengths=16,32,48 --rounds=30

Two classifiers on the same native encoder weights, each with train.py's step (bertclf.swaps.steps, densify, clip,
official AdamW), one with train.py's defaults and one with a single setting changed back (or, for `all`, every
setting below changed back). Their steps alternate (A, B, A, B, ...) on the same fixed batches, so a slow spell
of the machine hits both; per length: the median step time of each and their ratio. Whole-run throughput is
benchmarks/throughput.py's rows; this isolates the step from the run's other costs and noise.
  last_layer     --cls_only_last_layer=false: the last layer computes every row (bertclf/native.py)
  dropout_masks  --dropout_masks=keras: Keras's 32-bit uniform per element (bertclf/swaps/dropout.py)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from anywhere
import bertclf  # noqa: F401,E402  (selects tf_keras before TensorFlow loads)

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

DEFAULTS = {"last_layer": True, "dropout_masks": True}  # train.py's settings
FLAGS = flags.FLAGS
flags.DEFINE_string("encoder", "runs/minilm_hub", "Encoder (make demo converts MiniLM here).")
flags.DEFINE_enum("dtype", "bf16", list(distribute.POLICIES), "As train.py's --dtype.")
flags.DEFINE_integer("batch_size", 32, "Batch.")
flags.DEFINE_list("lengths", ["16", "32", "48"], "Sequence lengths of the batches (every position real).")
flags.DEFINE_integer("rounds", 30, "Timed A/B pairs per length (after 3 warm-up pairs).")
flags.DEFINE_list("compare", ["last_layer"], f"Settings to turn off, one comparison each: {list(DEFAULTS)} or all.")
flags.register_validator("compare", lambda v: all(c in (*DEFAULTS, "all") for c in v),
                         message=f"--compare takes {list(DEFAULTS)} or all.")


def make_step(handles, last_layer, dropout_masks):
  model = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native", cls_only=last_layer), 2)
  dropout.MASKS["16bit" if dropout_masks else "keras"](model)
  optimizer = optim.create_optimizer("adamw", 1e-5, 1000, 100, FLAGS.dtype)
  ctx = steps.StepContext(model, losses.LOSSES["softmax_ce"], optimizer, FLAGS.batch_size,
                          variables=model.trainable_variables)

  @tf.function
  def step(features, labels):  # as train.py: step, densify, clip the all-reduced gradient, update
    loss, _, grads, _ = steps.default_step(ctx, features, labels)
    grads, _ = tf.clip_by_global_norm(optim.densify(grads), optim.CLIP_NORM)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return step


def main(_):
  distribute.set_precision(FLAGS.dtype)
  handles = encoders.resolve(FLAGS.encoder)
  rng = np.random.default_rng(0)
  B = FLAGS.batch_size  # pylint: disable=invalid-name
  lines = [f"{handles.encoder}, --encoder_impl=native --dtype={FLAGS.dtype}, batch {B}, {os.cpu_count()} CPUs, "
           f"TF {tf.__version__}", "", f"Command: `python benchmarks/step_ab.py {' '.join(sys.argv[1:])}`",
           "", "| turned off | length | off, ms | on (train.py), ms | speed-up |", "|---|---|---|---|---|"]
  for name in FLAGS.compare:
    off = {k: (v and name not in (k, "all")) for k, v in DEFAULTS.items()}
    fns = {"off": make_step(handles, **off), "on": make_step(handles, **DEFAULTS)}
    for T in (int(t) for t in FLAGS.lengths):  # pylint: disable=invalid-name
      features = {"input_word_ids": tf.constant(rng.integers(1000, 30000, [B, T]), tf.int32),  # [B, T]
                  "input_mask": tf.ones([B, T], tf.int32), "input_type_ids": tf.zeros([B, T], tf.int32)}
      labels = tf.constant(rng.integers(0, 2, [B]), tf.int32)  # [B]
      times = {k: [] for k in fns}
      for i in range(FLAGS.rounds + 3):
        for key, fn in fns.items():
          start = time.perf_counter()
          fn(features, labels).numpy()
          if i >= 3:  # warm-up: tracing, first calls
            times[key].append(time.perf_counter() - start)
      med = {k: 1000 * float(np.median(v)) for k, v in times.items()}
      lines.append(f"| {name} | {T} | {med['off']:.0f} | {med['on']:.0f} | {med['off'] / med['on']:.2f}x |")
      print(lines[-1], flush=True)
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
