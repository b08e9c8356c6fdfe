"""Checks a TensorFlow fault on this machine: a batched matmul whose batch dimensions broadcast, run through oneDNN.

  python tools/onednn_check.py            # prints one line per case; exit 1 if any case is wrong or crashes

TensorFlow 2.20.0 (oneDNN v3.7.3) computes tf.matmul([2, 1, 40, 20], [1, 1, 20, 40]) wrongly on a 2-core AMD
EPYC (AVX-512 with AVX512_BF16, no AMX), off by up to 18 against NumPy, and repeating it ends in a segmentation
fault; with TF_ENABLE_ONEDNN_OPTS=0 the same product is exact and never crashes. The same holds for a matmul of a
rank-4 tensor by a matrix, whose batch dimensions broadcast too (tensorflow/tensorflow#117700, reported upstream
as heap corruption). bertclf's training and evaluation
graphs never run such a matmul (docs/TRAINING.md, "Native crashes"); a research variant that writes one (an
attention bias or a projection shared across the batch by broadcasting) would. Each case runs in its own process,
so a crash is reported rather than taken.
"""
import os
import subprocess
import sys

CASE = """
import numpy as np, tensorflow as tf
a = tf.random.normal({a}, seed=1); b = tf.random.normal({b}, seed=2)
f = tf.function(lambda x, y: tf.matmul(x, y))
want = np.matmul(a.numpy(), b.numpy())
worst = max(float(np.abs(f(a, b).numpy() - want).max()) for _ in range({repeats}))
print(f"{{worst:.3g}}")
"""
CASES = {"broadcast batch [2,1,40,20] x [1,1,20,40]": ([2, 1, 40, 20], [1, 1, 20, 40]),
         # tensorflow/tensorflow#117700: heap corruption (glibc aborts, segmentation faults) from a rank-4 x rank-2
         # matmul with oneDNN on.
         "rank-4 x rank-2 [13,1,3,4] x [4,16]": ([13, 1, 3, 4], [4, 16]),
         "same batch [2,2,40,20] x [2,2,20,40]": ([2, 2, 40, 20], [2, 2, 20, 40])}


def run(a, b, onednn, repeats):
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", CASE.format(a=a, b=b, repeats=repeats)], env=env, text=True,
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=600)
  if proc.returncode:
    return f"crashed (exit {proc.returncode})", False
  worst = float(proc.stdout.split()[-1])
  return f"max abs error {worst:.3g}", worst < 1e-3


def main():
  repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
  ok = True
  for name, (a, b) in CASES.items():
    for onednn in ("1", "0"):
      what, good = run(a, b, onednn, repeats)
      ok &= good
      print(f"{name}, TF_ENABLE_ONEDNN_OPTS={onednn}, {repeats} calls: {what}", flush=True)
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
