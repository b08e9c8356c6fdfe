"""Interleaved benchmark rounds: the order of each round and a row's numbers over rounds (no TensorFlow, no flags).

A shared machine drifts during a benchmark. Running every row once per round, in an order rotated each round,
spreads the drift over all rows; a ratio computed within one round compares rows measured minutes apart, not a
whole benchmark apart.
"""
import numpy as np


def rotated(rows, round_index):
  """The order of round `round_index`: `rows` rotated left by round_index, so no row always goes first."""
  k = round_index % len(rows)
  return list(rows[k:]) + list(rows[:k])


def row_stats(windows, reference=None, flops_per_example=None, peaks=None):
  """One row's numbers from its timed windows.

  windows: [R][W] examples/s of the row's timed windows in each of R rounds; reference: the same for row (0)
  (ratios are per round: medians of the same round); flops_per_example and peaks [R] (FLOP/s of the row's dtype
  in each round): MFU per round. Returns medians over windows (examples/s) or rounds (ratio, MFU) with min-max.
  """
  per_round = [float(np.median(w)) for w in windows]
  every = np.concatenate([np.asarray(w, np.float64) for w in windows])
  out = {"examples_per_sec": float(np.median(every)), "spread": [float(every.min()), float(every.max())],
         "per_round": per_round}
  if reference is not None:
    ratios = [m / float(np.median(r)) for m, r in zip(per_round, reference, strict=True)]
    out.update(ratio_to_0=float(np.median(ratios)), ratio_spread=[min(ratios), max(ratios)], ratios=ratios)
  if flops_per_example is not None and peaks is not None:
    mfus = [m * flops_per_example / p for m, p in zip(per_round, peaks, strict=True)]
    out.update(mfu=float(np.median(mfus)), mfu_spread=[min(mfus), max(mfus)])
  return out
