"""bertclf.order: the training order as a pure function of (seed, step), without anything of size N held."""
import numpy as np
import pytest

from bertclf import order


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100, 1000, 4097, 65_537])
def test_shuffle_is_a_permutation_of_range_n(n):
  got = order.Shuffle(n, "k")(np.arange(n))
  assert got.dtype == np.int64
  np.testing.assert_array_equal(np.sort(got), np.arange(n))


def test_shuffle_depends_on_the_key_and_looks_random():
  n = 100_000
  a, b = order.Shuffle(n, "seed 0")(np.arange(n)), order.Shuffle(n, "seed 1")(np.arange(n))
  assert np.mean(a == b) < 0.01  # two keys agree about as often as two random permutations (1/n)
  assert abs(np.corrcoef(np.arange(n), a)[0, 1]) < 0.02  # no trace of the identity
  assert np.mean(a[:-1] < a[1:]) == pytest.approx(0.5, abs=0.01)  # rises as often as it falls
  # Any positions, in any order, give the same images as the whole.
  pos = np.random.RandomState(0).randint(0, n, size=500)
  np.testing.assert_array_equal(order.Shuffle(n, "seed 0")(pos), a[pos])


class _CountingLengths:
  """An [N] lengths array that records how many rows each read asks for (a memory-mapped one reads just those)."""

  def __init__(self, lengths):
    self.lengths, self.reads = lengths, []

  def __len__(self):
    return len(self.lengths)

  def __getitem__(self, idx):
    self.reads.append(np.size(self.lengths[idx]))
    return self.lengths[idx]


@pytest.mark.parametrize("pool_batches", [1, 3, 50])
def test_bucketed_order_visits_every_example_once_per_epoch_and_reads_only_a_pool(pool_batches):
  rng = np.random.RandomState(0)
  lengths = _CountingLengths(rng.randint(3, 65, size=2003).astype(np.int32))
  G = 16  # pylint: disable=invalid-name
  train_order = order.TrainOrder(lengths, G, seed=7, seq_length=64, bucket_boundaries=[16, 32, 48],
                                 pool_batches=pool_batches)
  spe = train_order.spe  # 125: 3 examples left out each epoch
  epochs = []
  for epoch in range(2):
    batches = [train_order.batch(s) for s in range(epoch * spe, (epoch + 1) * spe)]
    idx = np.concatenate([b[0] for b in batches])
    assert len(np.unique(idx)) == len(idx) == spe * G
    for b, length in batches:  # padded to the bucket of its longest example
      longest = lengths.lengths[b].max()
      assert length == min(x for x in (16, 32, 48, 64) if x >= longest)
    epochs.append(idx)
  assert not np.array_equal(epochs[0], epochs[1])
  assert max(lengths.reads) <= pool_batches * G  # never the whole split
  # Resuming at any step gives the same batch: nothing but the step and the seed decide it.
  again = order.TrainOrder(lengths, G, seed=7, seq_length=64, bucket_boundaries=[16, 32, 48],
                           pool_batches=pool_batches)
  for step in (0, 1, spe - 1, spe, 2 * spe + 5):
    np.testing.assert_array_equal(again.batch(step)[0], train_order.batch(step)[0])


def test_pools_group_lengths_so_buckets_pad_less():
  lengths = np.random.RandomState(1).randint(3, 65, size=5000).astype(np.int32)
  padded = {}
  for pool in (1, 50):
    train_order = order.TrainOrder(lengths, 32, seed=0, seq_length=64, bucket_boundaries=[16, 24, 32, 48],
                                   pool_batches=pool)
    padded[pool] = np.mean([train_order.batch(s)[1] for s in range(train_order.spe)])
  assert padded[50] < padded[1] - 5  # sorted pools: most batches fit a smaller bucket


def test_without_buckets_lengths_are_not_read():
  lengths = _CountingLengths(np.full(100, 5, np.int32))
  train_order = order.TrainOrder(lengths, 8, seed=0, seq_length=64)
  idx, length = train_order.batch(3)
  assert length == 64 and lengths.reads == []
  np.testing.assert_array_equal(idx, order.epoch_permutation(100, 8, 0, 0)[24:32])
