"""benchmarks/rounds.py: round order and per-round ratios of the interleaved throughput benchmark."""
import pytest

from benchmarks import rounds


def test_each_row_goes_first_in_turn():
  orders = [rounds.rotated(["0", "5"], k) for k in range(3)]
  assert orders == [["0", "5"], ["5", "0"], ["0", "5"]]
  firsts = [rounds.rotated(["0", "1", "3", "5"], k)[0] for k in range(4)]
  assert firsts == ["0", "1", "3", "5"]


def test_ratio_is_taken_within_each_round():
  row0 = [[10, 11, 9], [20, 22, 18]]  # the machine is twice as fast in round 2
  row5 = [[30, 33, 27], [60, 66, 54]]
  stats = rounds.row_stats(row5, reference=row0)
  assert stats["ratios"] == pytest.approx([3.0, 3.0])
  assert stats["ratio_to_0"] == pytest.approx(3.0)
  assert stats["ratio_spread"] == pytest.approx([3.0, 3.0])
  assert stats["examples_per_sec"] == pytest.approx(43.5)  # median of all six windows: (33 + 54) / 2
  assert stats["spread"] == [27.0, 66.0]
  assert stats["per_round"] == [30.0, 60.0]


def test_ratio_is_the_median_of_round_ratios_not_a_ratio_of_pooled_medians():
  row0 = [[10], [30], [40]]
  row5 = [[30], [60], [44]]
  stats = rounds.row_stats(row5, reference=row0)
  assert stats["ratios"] == pytest.approx([3.0, 2.0, 1.1])
  assert stats["ratio_to_0"] == pytest.approx(2.0)  # pooled medians would give 44 / 30 = 1.47
  assert stats["ratio_spread"] == pytest.approx([1.1, 3.0])


def test_mfu_uses_each_rounds_peak():
  stats = rounds.row_stats([[10.0], [10.0], [20.0]], flops_per_example=1e9, peaks=[1e11, 2e11, 1e11])
  assert stats["mfu"] == pytest.approx(0.1)  # per round 0.1, 0.05, 0.2
  assert stats["mfu_spread"] == pytest.approx([0.05, 0.2])
  assert "ratio_to_0" not in stats


def test_rounds_must_line_up():
  with pytest.raises(ValueError):
    rounds.row_stats([[1.0], [2.0]], reference=[[1.0]])
