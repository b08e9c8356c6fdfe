"""The tokenized input pipeline: host tokenization, the step → batch mapping, replicas, eval coverage."""
import itertools
import os

from absl import flags
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from bertclf import data
from bertclf import distribute
from bertclf import flags as bertclf_flags
from bertclf import order as order_lib
from bertclf import pipeline
from bertclf import token_cache


@pytest.fixture(scope="module")
def tokenized(tiny_hub, toy_imdb):
  text_data = data.load_text_data(toy_imdb)
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  return pipeline.tokenize(text_data.train, pre, seq_length=24, batch_size=64), text_data.train


def _strategy(replicas):
  return distribute.get_strategy("mirrored", num_cpu_devices=replicas) if replicas > 1 else \
      distribute.get_strategy("mirrored", num_gpus=0)


def _global_batches(strategy, dataset_fn, num_steps):
  """[num_steps] list of (features, labels, weights) global batches, replicas concatenated in order."""
  it = iter(strategy.distribute_datasets_from_function(dataset_fn))
  out = []
  for _ in range(num_steps):
    features, labels, weights = next(it)
    for t in tf.nest.flatten(features):
      for local in strategy.experimental_local_results(t):
        assert local.dtype == tf.int32  # only token ids reach the replicas
    out.append((strategy.gather(features["input_word_ids"], 0).numpy(), strategy.gather(labels, 0).numpy(),
                strategy.gather(weights, 0).numpy()))
  return out


@pytest.mark.slow
def test_tokenize_keeps_order_and_labels(tokenized, tiny_hub):
  tok, split = tokenized
  assert len(tok) == len(split) == 320
  assert tok.features["input_word_ids"].shape == (320, 24) and tok.features["input_word_ids"].dtype == np.int32
  np.testing.assert_array_equal(tok.labels, split.labels)
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  one = pre.bert_pack_inputs([pre.tokenize(tf.constant([split.texts[123]]))], seq_length=24)
  np.testing.assert_array_equal(tok.features["input_word_ids"][123], one["input_word_ids"][0])


def test_tokenize_does_not_keep_the_texts(tiny_hub):
  """The texts can be freed once they are tokenized: tf.data keeps the generator's function alive, and it must not
  hold the list (a run would otherwise carry every text of its training split to the end)."""
  import gc
  import weakref

  class Texts(list):  # a list that can be referenced weakly
    pass

  texts = Texts(f"review number {i}" for i in range(100))
  gone = weakref.ref(texts)
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  tok = pipeline.tokenize(data.Split(texts, np.zeros(100, np.int32)), pre, seq_length=8, batch_size=16)
  del texts
  gc.collect()
  assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
  assert len(tok) == 100


def test_each_epoch_is_a_permutation_and_depends_on_the_seed(tokenized):
  tok, _ = tokenized
  strategy = _strategy(1)
  spe = pipeline.steps_per_epoch(len(tok), 32)  # 10
  batches = _global_batches(strategy, pipeline.train_dataset_fn(tok, 32, seed=3), 2 * spe)
  ids = tok.features["input_word_ids"]
  row_index = {row.tobytes(): i for i, row in enumerate(ids)}
  assert len(row_index) == len(ids), "toy texts must be distinct for this test"
  epoch0 = [row_index[r.tobytes()] for b in batches[:spe] for r in b[0]]
  epoch1 = [row_index[r.tobytes()] for b in batches[spe:] for r in b[0]]
  assert len(set(epoch0)) == len(epoch0) == 320 and len(set(epoch1)) == 320  # every example once per epoch
  assert epoch0 != epoch1  # a new order each epoch
  # epoch_permutation is this order (benchmarks/ablation.py's paired tutorial reads train.py's order from it)
  assert epoch0 == order_lib.epoch_permutation(len(tok), 32, 3, 0).tolist()
  assert epoch1 == order_lib.epoch_permutation(len(tok), 32, 3, 1).tolist()
  other_seed = _global_batches(strategy, pipeline.train_dataset_fn(tok, 32, seed=4), 1)
  assert not np.array_equal(other_seed[0][0], batches[0][0])


def test_resume_at_step_k_continues_the_same_stream(tokenized):
  tok, _ = tokenized
  strategy = _strategy(1)
  full = _global_batches(strategy, pipeline.train_dataset_fn(tok, 32, seed=0), 25)
  resumed = _global_batches(strategy, pipeline.train_dataset_fn(tok, 32, seed=0, start_step=13), 12)
  for a, b in zip(full[13:], resumed):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_two_replicas_get_halves_of_the_same_global_batch(tokenized):
  tok, _ = tokenized
  one = _global_batches(_strategy(1), pipeline.train_dataset_fn(tok, 32, seed=0), 3)
  two_strategy = _strategy(2)
  assert two_strategy.num_replicas_in_sync == 2
  it = iter(two_strategy.distribute_datasets_from_function(pipeline.train_dataset_fn(tok, 32, seed=0)))
  features, _, _ = next(it)
  per_replica = two_strategy.experimental_local_results(features["input_word_ids"])
  assert [t.shape[0] for t in per_replica] == [16, 16]  # the per-replica batch
  np.testing.assert_array_equal(np.concatenate([t.numpy() for t in per_replica]), one[0][0])
  two = _global_batches(two_strategy, pipeline.train_dataset_fn(tok, 32, seed=0), 3)
  for a, b in zip(one, two):
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("replicas", [1, 2])
def test_eval_covers_every_example_once_with_a_partial_last_batch(tokenized, replicas):
  tok, _ = tokenized
  strategy = _strategy(replicas)
  dataset_fn, num_batches = pipeline.eval_dataset_fn(tok, 48)  # 320 = 6 x 48 + 32
  assert num_batches == 7
  batches = _global_batches(strategy, dataset_fn, num_batches)
  ids = np.concatenate([b[0] for b in batches])
  weights = np.concatenate([b[2] for b in batches])
  assert weights.sum() == 320 and np.all(weights[:320] == 1) and np.all(weights[320:] == 0)
  np.testing.assert_array_equal(ids[:320], tok.features["input_word_ids"])
  np.testing.assert_array_equal(np.concatenate([b[1] for b in batches])[:320], tok.labels)


@pytest.mark.parametrize("mapped", [False, True], ids=["in_memory", "memory_mapped"])
@pytest.mark.parametrize("form", ["single_text", "two_segments", "mask_with_a_hole"])
def test_compact_ids_rebuild_the_features_of_every_batch(form, mapped, tmp_path):
  """Tokenized keeps word ids and lengths; each batch's mask and segment ids are rebuilt from them, and a
  preprocessing model's packing that is not a single text's is stored whole instead. The same from a token cache
  entry, whose [N, T] arrays are memory-mapped and read per batch."""
  rng = np.random.RandomState(0)
  T = 8  # pylint: disable=invalid-name
  lengths = rng.randint(3, T + 1, size=40)
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)  # [40, T]
  features = {"input_word_ids": rng.randint(1, 30000, size=[40, T]) * mask, "input_mask": mask,
              "input_type_ids": np.zeros_like(mask)}
  if form == "two_segments":
    features["input_type_ids"] = (np.arange(T)[None] >= 3) * mask
  elif form == "mask_with_a_hole":
    features["input_mask"] = mask * (np.arange(T)[None] != 1)
  tok = pipeline.Tokenized.from_features(features, np.arange(40) % 2)
  assert tok.word_ids.dtype == np.uint16
  assert sorted(tok.stored) == {"single_text": [], "two_segments": ["input_type_ids"],
                                "mask_with_a_hole": ["input_mask"]}[form]
  if mapped:
    cache = token_cache.TokenCache(tmp_path, "unused", T)
    tok = pipeline.Tokenized.from_arrays(cache.load(os.path.basename(cache.store("k", tok.arrays())), 40), tok.labels)
    assert isinstance(tok.word_ids, token_cache.RowFile)
    assert all(isinstance(v, token_cache.RowFile) for v in tok.stored.values())
  for name, values in tok.features.items():
    np.testing.assert_array_equal(values, features[name], err_msg=name)
  strategy = _strategy(2)
  for boundaries in (None, [4, 6]):  # every batch at T, or cut to its bucket
    dataset_fn, num_batches = pipeline.eval_dataset_fn(tok, 8, boundaries)
    order = pipeline.eval_order(tok, boundaries)
    seen = 0
    for batch in itertools.islice(strategy.distribute_datasets_from_function(dataset_fn), num_batches):
      got = {k: strategy.gather(v, 0).numpy() for k, v in batch[0].items()}
      rows = order[seen:seen + 8]
      for name, values in got.items():
        assert values.dtype == np.int32
        np.testing.assert_array_equal(values, features[name][rows, :values.shape[1]], err_msg=name)
        assert not features[name][rows, values.shape[1]:].any()  # the cut holds only padding
      seen += 8
    assert seen == 40


def test_chunks_concatenate_in_order_in_the_widest_type_and_are_released():
  """Tokenized.concatenate copies the chunks into one [N, T] array of the widest chunk's type and empties the
  list as it goes (so a split's ids are not held twice)."""
  rng = np.random.RandomState(1)
  chunks = [rng.randint(1, top, size=[n, 6]) for n, top in ((5, 200), (3, 60000), (4, 100))]
  parts = [pipeline.Tokenized.from_features({"input_word_ids": c, "input_mask": np.ones_like(c),
                                             "input_type_ids": np.zeros_like(c)}, []) for c in chunks]
  assert [p.word_ids.dtype for p in parts] == [np.uint8, np.uint16, np.uint8]
  out = pipeline.Tokenized.concatenate(parts, np.arange(12) % 2)
  assert parts == [] and out.word_ids.dtype == np.uint16
  np.testing.assert_array_equal(out.word_ids, np.concatenate(chunks))
  np.testing.assert_array_equal(out.lengths, [6] * 12)


def test_too_small_training_split_is_a_clear_error(tokenized):
  tok, _ = tokenized
  with pytest.raises(ValueError, match="fewer than one global batch"):
    pipeline.train_dataset_fn(tok, 1000, seed=0)


def _per_step_shapes_and_ids(strategy, dataset_fn, num_steps):
  """[(padded length, global batch ids [G, length], masks), ...] with the replicas' shapes checked equal."""
  it = iter(strategy.distribute_datasets_from_function(dataset_fn))
  out = []
  for _ in range(num_steps):
    features, _, _ = next(it)
    shapes = {t.shape for t in strategy.experimental_local_results(features["input_word_ids"])}
    assert len(shapes) == 1, shapes  # every replica runs the same shape
    out.append((shapes.pop()[1], strategy.gather(features["input_word_ids"], 0).numpy(),
                strategy.gather(features["input_mask"], 0).numpy()))
  return out


@pytest.mark.parametrize("replicas", [1, 2])
def test_bucketing_pads_each_batch_to_its_bucket_and_keeps_every_token(tokenized, replicas):
  tok, _ = tokenized
  bounds = [8, 16]
  spe = pipeline.steps_per_epoch(len(tok), 32)
  steps = _per_step_shapes_and_ids(_strategy(replicas), pipeline.train_dataset_fn(tok, 32, 0, 0, bounds), spe)
  lengths = {row.tobytes(): n for row, n in zip(tok.features["input_word_ids"], tok.lengths)}
  seen = []
  for padded, ids, mask in steps:
    assert padded in (8, 16, 24)  # a boundary, or the full --seq_length
    real = mask.sum(1)
    assert real.max() <= padded and (padded == 8 or real.max() > [8, 16, 24][[8, 16, 24].index(padded) - 1])
    for row, m in zip(ids, real):  # no real token cut: the row padded back to T is the tokenized example
      full = np.zeros(24, np.int32)
      full[:padded] = row
      assert lengths[full.tobytes()] == m
      seen.append(full.tobytes())
  assert len(set(seen)) == spe * 32  # still every example once per epoch
  assert len({p for p, _, _ in steps}) >= 2  # the toy reviews (8-20 tokens) really spread over buckets


def test_bucket_pool_of_one_batch_keeps_the_unbucketed_batches(tokenized):
  """pool_batches=1 sorts within each batch only: the same examples per step as without bucketing (the order of
  the steps is shuffled), while a larger pool groups lengths and pads less."""
  tok, _ = tokenized
  strategy = _strategy(1)
  spe = pipeline.steps_per_epoch(len(tok), 32)
  full = lambda padded, ids: np.pad(ids, [(0, 0), (0, 24 - padded)])  # noqa: E731
  as_set = lambda steps: sorted(tuple(sorted(r.tobytes() for r in full(p, i))) for p, i, _ in steps)  # noqa: E731
  plain = _per_step_shapes_and_ids(strategy, pipeline.train_dataset_fn(tok, 32, 2), spe)
  pool1 = _per_step_shapes_and_ids(strategy, pipeline.train_dataset_fn(tok, 32, 2, 0, [8, 16], pool_batches=1), spe)
  pool10 = _per_step_shapes_and_ids(strategy, pipeline.train_dataset_fn(tok, 32, 2, 0, [8, 16], pool_batches=10),
                                    spe)
  assert as_set(pool1) == as_set(plain) != as_set(pool10)
  assert sum(p for p, _, _ in pool10) < sum(p for p, _, _ in pool1)


def test_bucketing_resume_is_exact(tokenized):
  tok, _ = tokenized
  strategy = _strategy(1)
  full = _per_step_shapes_and_ids(strategy, pipeline.train_dataset_fn(tok, 32, 5, 0, [12, 16]), 25)
  resumed = _per_step_shapes_and_ids(strategy, pipeline.train_dataset_fn(tok, 32, 5, 17, [12, 16]), 8)
  for a, b in zip(full[17:], resumed):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


def test_bucketed_eval_scores_every_example(tokenized):
  tok, _ = tokenized
  dataset_fn, num_batches = pipeline.eval_dataset_fn(tok, 48, [12, 16])
  steps = _per_step_shapes_and_ids(_strategy(2), dataset_fn, num_batches)
  ids = np.concatenate([np.pad(i, [(0, 0), (0, 24 - p)]) for p, i, _ in steps])[:320]
  order = pipeline.eval_order(tok, [12, 16])
  assert sorted(order.tolist()) == list(range(320))
  assert np.all(np.diff(tok.lengths[order]) >= 0)  # by length: similar lengths share a batch
  np.testing.assert_array_equal(ids, tok.features["input_word_ids"][order])
  assert [p for p, _, _ in steps] == sorted(p for p, _, _ in steps)


def _padding(lengths, boundaries, seq_length):
  """Σ over examples of (smallest boundary that holds it − its length), seq_length the last boundary."""
  bounds = np.array(sorted(boundaries) + [seq_length])
  return int(np.sum(bounds[np.searchsorted(bounds, lengths)] - lengths))


@pytest.mark.parametrize("seed", range(6))
def test_fewest_padding_boundaries_match_a_brute_force_search(seed):
  rng = np.random.default_rng(seed)
  seq_length = 16
  lengths = rng.integers(2, seq_length + 1, rng.integers(5, 60))
  candidates = sorted(set(lengths.tolist()) - {seq_length})
  for num_buckets in (2, 3, 4, 6):
    got = pipeline.fewest_padding_boundaries(lengths, num_buckets, seq_length)
    assert got == sorted(set(got)) and all(2 <= b < seq_length for b in got) and len(got) <= num_buckets - 1
    best = min(_padding(lengths, list(c), seq_length) for k in range(num_buckets)
               for c in itertools.combinations(candidates, k))
    assert _padding(lengths, got, seq_length) == best, (num_buckets, got)


def test_fewest_padding_boundaries_edge_cases():
  assert pipeline.fewest_padding_boundaries([5, 5, 9], 8, 16) == [5, 9]  # fewer lengths than buckets: each its own
  assert pipeline.fewest_padding_boundaries([16, 16], 4, 16) == []  # all full length: nothing to bucket
  assert pipeline.fewest_padding_boundaries([3, 40], 4, 16) == [3]  # longer than the window counts as the window
  # On the toy reviews: more buckets never pad more, and 2 buckets already pad less than none.
  lengths = np.array([8, 9, 10, 12, 12, 13, 20, 21, 24, 24])
  pads = [_padding(lengths, pipeline.fewest_padding_boundaries(lengths, k, 24), 24) for k in (2, 3, 4, 5)]
  assert pads == sorted(pads, reverse=True) and pads[0] < _padding(lengths, [], 24)


@pytest.mark.parametrize("args, message", [
    (["--num_buckets=8", "--bucket_boundaries=16,32"], "--num_buckets is read by --bucket_boundaries=auto only"),
    (["--num_buckets=8", "--bucket_boundaries="], "--num_buckets is read by --bucket_boundaries=auto only"),
    (["--bucket_boundaries=16,128"], "--bucket_boundaries must all be below --seq_length"),
    (["--bucket_boundaries=auto,16"], "--bucket_boundaries must be 'auto' or increasing integers"),
    (["--bucket_boundaries=auto", "--num_buckets=1"], "num_buckets"),
])
def test_bucket_flags_refuse_bad_settings(args, message):
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  FLAGS.unparse_flags()
  with pytest.raises(flags.IllegalFlagValueError, match=message):
    FLAGS(["train.py", *args])
  FLAGS.unparse_flags()
  FLAGS(["train.py", "--bucket_boundaries=auto", "--num_buckets=4", "--seq_length=64"])  # and take good ones
  assert bertclf_flags.bucket_boundaries(np.array([10, 10, 30, 50, 64])) == [10, 30, 50]
  FLAGS.unparse_flags()
