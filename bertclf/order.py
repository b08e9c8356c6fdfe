"""The training order: which examples make global batch s, as a pure function of (seed, step).

Epoch e = s // steps_per_epoch visits the examples in a pseudo-random permutation of range(N) keyed by (seed, e),
and step s takes the next global batch of it. The permutation is never built: `Shuffle` evaluates it at the G
positions a step needs (a keyed Feistel network, below), so the order costs the same memory at 10 million
examples as at 10 thousand, and resuming at step s needs nothing but s. Each epoch leaves out the N % G examples
at its last positions: a different few each epoch.

With length buckets, an epoch is cut into pools of `pool_batches` consecutive global batches; a pool's examples
are sorted by length (stably) and cut into batches again, so a batch holds similar lengths and is padded to its
bucket only; the order of the epoch's batches is itself a keyed permutation, so short and long batches alternate
at random. A step reads the lengths of its pool's examples (pool_batches * G of them), nothing more.

Every worker computes the same global batch at a step, takes its slice and pads it to the length of the whole
global batch (bertclf/pipeline.py), so all workers run one bucket at a step and the batch is the same whatever the
number of workers or replicas.
"""
import hashlib

import numpy as np

_ROUNDS = 6  # Feistel rounds; 4 make a pseudo-random permutation from a pseudo-random round function, 6 add margin


def _mix(x):
  """splitmix64's finalizer on uint64 arrays: a fast, well-mixed integer hash (wraps mod 2**64)."""
  with np.errstate(over="ignore"):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


class Shuffle:
  """A pseudo-random permutation of range(n) keyed by `key` (a string), evaluated at any positions.

  A balanced Feistel network permutes the 2k-bit integers (4**k >= n, so at most 4n of them); positions whose image
  falls at n or above are mapped again until it falls below n ("cycle walking"), which permutes range(n) itself.
  Each mapping is about a dozen vectorised integer operations per round, so a step's 32..4096 positions take
  microseconds, and nothing of size n is ever held.
  """

  def __init__(self, n, key):
    self.n = int(n)
    self.half = max(1, (max(self.n - 1, 1).bit_length() + 1) // 2)  # bits per half: 4**half >= n
    digest = hashlib.sha256(key.encode()).digest()  # 32 bytes → the round keys
    self.keys = [np.uint64(int.from_bytes(digest[4 * r:4 * r + 8], "little")) for r in range(_ROUNDS)]

  def _feistel(self, x):  # [M] uint64 < 4**half → [M] uint64 < 4**half, a bijection
    shift, mask = np.uint64(self.half), np.uint64((1 << self.half) - 1)
    left, right = x >> shift, x & mask
    for k in self.keys:
      left, right = right, left ^ (_mix(right ^ k) & mask)
    return (left << shift) | right

  def __call__(self, positions):
    """positions: [M] ints in [0, n) → [M] int64 in [0, n): where each position of the permutation points."""
    out = self._feistel(np.asarray(positions, np.uint64))
    walk = out >= self.n
    while walk.any():  # expected under 4 more mappings; a cycle always returns below n
      out[walk] = self._feistel(out[walk])
      walk[walk] = out[walk] >= self.n
    return out.astype(np.int64)


def _key(seed, epoch, what):
  return f"bertclf order {int(seed)} {int(epoch)} {what}"


def steps_per_epoch(num_examples, global_batch_size):
  """Full global batches per epoch: training drops the remainder (a different one each epoch)."""
  return num_examples // global_batch_size


def epoch_permutation(n, global_batch_size, seed, epoch):
  """The examples epoch `epoch` visits without buckets, in order: [steps_per_epoch * G] int64 (built whole: for
  tests and benchmarks that replay train.py's order, not for training)."""
  spe = steps_per_epoch(n, global_batch_size)
  return Shuffle(n, _key(seed, epoch, "examples"))(np.arange(spe * global_batch_size))


class TrainOrder:
  """Global batch s → (example indices [G] int32, padded length int32), for data of these token `lengths` [N]
  (an array or a memory-mapped one; only the rows a step needs are read).

  bucket_boundaries: the lengths batches are padded to below `seq_length` ([] or None: every batch is padded to
  seq_length, and lengths are not read).
  """

  def __init__(self, lengths, global_batch_size, seed, seq_length, bucket_boundaries=None, pool_batches=50):
    self.lengths, self.G, self.seed, self.seq_length = lengths, int(global_batch_size), int(seed), int(seq_length)
    self.n = len(lengths)
    self.spe = steps_per_epoch(self.n, self.G)
    self.bounds = np.array(sorted({int(b) for b in bucket_boundaries or () if b < seq_length} | {self.seq_length}))
    self.bucketed = len(self.bounds) > 1
    self.pool_batches = max(1, int(pool_batches))
    self._shuffles = {}  # (epoch, what) → Shuffle, the current epoch's only

  def _shuffle(self, epoch, what, n):
    if (epoch, what) not in self._shuffles:
      self._shuffles = {k: v for k, v in self._shuffles.items() if k[0] == epoch}
      self._shuffles[epoch, what] = Shuffle(n, _key(self.seed, epoch, what))
    return self._shuffles[epoch, what]

  def examples(self, step):
    """[G] int64: the examples of global batch `step`, in the order the replicas' slices take them."""
    epoch, j = divmod(int(step), self.spe)
    examples = self._shuffle(epoch, "examples", self.n)
    G = self.G  # pylint: disable=invalid-name
    if not self.bucketed:
      return examples(np.arange(j * G, (j + 1) * G))
    b = int(self._shuffle(epoch, "batches", self.spe)(np.array([j]))[0])  # this step's batch of the epoch
    pool, k = divmod(b, self.pool_batches)
    first = pool * self.pool_batches
    size = min(self.pool_batches, self.spe - first)  # the epoch's last pool may be smaller
    idx = examples(np.arange(first * G, (first + size) * G))  # [size * G] the pool's examples
    by_length = idx[np.argsort(np.asarray(self.lengths[idx]), kind="stable")]  # [size * G]
    return by_length[k * G:(k + 1) * G]

  def padded_length(self, examples):
    """The bucket of a global batch: the smallest boundary that holds its longest example (seq_length without
    buckets)."""
    if not self.bucketed:
      return self.seq_length
    longest = int(np.max(self.lengths[examples]))
    return int(self.bounds[np.searchsorted(self.bounds, longest)])

  def batch(self, step):
    """(examples [G] int32, padded length int32) of global batch `step`."""
    idx = self.examples(step)
    return idx.astype(np.int32), np.int32(self.padded_length(idx))
