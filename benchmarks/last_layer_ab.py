"""What --cls_only_last_layer buys: whole training steps with and without it, interleaved in one process.

  python benchmarks/last_layer_ab.py --lengths=16,32,48 --rounds=30

Two classifiers on the same native encoder weights, one whose last layer computes every row and one whose last
layer computes only the [CLS] row (official's output_range=1), each with train.py's step (bertclf.steps + clip
+ official AdamW). Their steps alternate (A, B, A, B, ...) on the same fixed batches, so a slow spell of the
machine hits both; per length: the median step time of each and their ratio. Whole-run throughput is
benchmarks/throughput.py's rows (3) and (3a); this isolates the step from the run's other costs and noise.
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
from bertclf import encoders
from bertclf import losses
from bertclf import model as model_lib
from bertclf import optim
from bertclf import steps

FLAGS = flags.FLAGS
flags.DEFINE_string("encoder", "runs/minilm_hub", "Encoder (make demo converts MiniLM here).")
flags.DEFINE_enum("dtype", "bf16", list(distribute.POLICIES), "As train.py's --dtype.")
flags.DEFINE_integer("batch_size", 32, "Batch.")
flags.DEFINE_list("lengths", ["16", "32", "48"], "Sequence lengths of the batches (every position real).")
flags.DEFINE_integer("rounds", 30, "Timed A/B pairs per length (after 3 warm-up pairs).")


def make_step(cls_only, handles):
  model = model_lib.build_classifier(encoders.load_encoder_layer(handles, impl="native", cls_only=cls_only), 2)
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
  fns = {"all rows": make_step(False, handles), "[CLS] row only": make_step(True, handles)}
  rng = np.random.default_rng(0)
  B = FLAGS.batch_size  # pylint: disable=invalid-name
  lines = [f"{handles.encoder}, --encoder_impl=native --dtype={FLAGS.dtype}, batch {B}, {os.cpu_count()} CPUs, "
           f"TF {tf.__version__}", "", f"Command: `python benchmarks/last_layer_ab.py {' '.join(sys.argv[1:])}`",
           "", "| length | all rows, ms | [CLS] row only, ms | speed-up |", "|---|---|---|---|"]
  for T in (int(t) for t in FLAGS.lengths):  # pylint: disable=invalid-name
    features = {"input_word_ids": tf.constant(rng.integers(1000, 30000, [B, T]), tf.int32),  # [B, T]
                "input_mask": tf.ones([B, T], tf.int32), "input_type_ids": tf.zeros([B, T], tf.int32)}
    labels = tf.constant(rng.integers(0, 2, [B]), tf.int32)  # [B]
    times = {k: [] for k in fns}
    for i in range(FLAGS.rounds + 3):
      for name, fn in fns.items():
        start = time.perf_counter()
        fn(features, labels).numpy()
        if i >= 3:  # warm-up: tracing, first calls
          times[name].append(time.perf_counter() - start)
    med = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    lines.append(f"| {T} | {med['all rows']:.0f} | {med['[CLS] row only']:.0f} | "
                 f"{med['all rows'] / med['[CLS] row only']:.2f}x |")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
