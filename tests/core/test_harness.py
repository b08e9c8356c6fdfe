"""tests/harness.py's assertions: a failure names what differs."""
import numpy as np
import pytest

from harness import assert_same_tensors
from harness import tail


def test_same_tensors_pass_and_different_ones_are_named_with_their_max_abs_diff():
  a = {"model/kernel": np.zeros((2, 3), np.float32), "model/bias": np.ones(2, np.float32)}
  assert_same_tensors(a, {k: v.copy() for k, v in a.items()})
  b = {"model/kernel": np.zeros((2, 3), np.float32), "model/bias": np.float32([1.0, 1.5])}
  with pytest.raises(AssertionError,
                     match=r"weights: 1 of 2 differ \(bit for bit\):\n  model/bias: max abs diff 0\.5$"):
    assert_same_tensors(b, a, what="weights")


def test_tolerance_shapes_and_names():
  a = {"x": np.float32([1.0, 2.0])}
  assert_same_tensors({"x": np.float32([1.0, 2.0 + 1e-6])}, a, atol=1e-5)
  with pytest.raises(AssertionError, match=r"\(atol 1e-07\):\n  x: max abs diff 9"):
    assert_same_tensors({"x": np.float32([1.0, 2.0 + 1e-6])}, a, atol=1e-7)
  with pytest.raises(AssertionError, match=r"x: shape \(3,\) vs \(2,\)"):
    assert_same_tensors({"x": np.zeros(3)}, a)
  with pytest.raises(AssertionError, match=r"only in the first \['y'\], only in the second \[\]"):
    assert_same_tensors(dict(a, y=np.zeros(1)), a)


def test_tail_keeps_the_last_lines():
  text = "\n".join(f"line {i}" for i in range(100))
  assert tail(text).splitlines()[-30:] == [f"line {i}" for i in range(70, 100)]
  assert "line 69" not in tail(text)
