"""--profile_steps=A,B: a TensorFlow profiler trace of training steps A..B for TensorBoard's Profile tab.

train.py runs steps in calls of up to --steps_per_loop inside one tf.function, and the profiler can only start
and stop between calls, so the trace holds the whole calls that cover A..B (the steps it holds are logged).
`tf.profiler.experimental.start(logdir)` writes <logdir>/plugins/profile/<date_time>/<host>.xplane.pb; with
logdir = <model_dir>/train, `tensorboard --logdir=<model_dir>` (or a parent folder) lists the trace as run
`train/<date_time>` in the Profile tab (the tensorboard-plugin-profile package).
"""
import contextlib
import os

from absl import logging
import tensorflow as tf


class StepTrace:
  """Starts the profiler before the first call that runs a step in [first, last] and stops it after the call
  that reaches `last` (or the run's last step). Inactive when `steps` is None or `enabled` is False."""

  def __init__(self, steps, logdir, start_step, total_steps, enabled=True):
    self.first, self.last = steps if steps and enabled else (None, None)
    self.logdir, self.total_steps = logdir, total_steps
    if self.first is not None and (start_step >= self.last or self.first > total_steps):
      logging.warning("--profile_steps=%d,%d: no trace, the run goes from step %d to %d.", self.first, self.last,
                      start_step, total_steps)
      self.first = self.last = None
    self.started_at = None  # the first step in the trace while the profiler runs, else None
    self.captured = None  # (first, last) step of the finished trace

  @contextlib.contextmanager
  def call(self, s, n):
    """Around one train_loop call that runs steps s+1..s+n (its outputs read inside, so the work is done)."""
    if self.first is not None and self.captured is None and self.started_at is None and \
        s + 1 <= self.last and s + n >= self.first:
      tf.profiler.experimental.start(self.logdir)
      self.started_at = s + 1
    yield
    if self.started_at is not None and s + n >= min(self.last, self.total_steps):
      self.stop(s + n)

  def stop(self, s):
    """Stops and saves a running trace whose last step is s (also when the loop ends early: a signal, an error)."""
    if self.started_at is None:
      return
    tf.profiler.experimental.stop()
    self.captured, self.started_at = (self.started_at, s), None
    logging.info("--profile_steps=%d,%d: traced steps %d-%d (whole --steps_per_loop calls) into %s; "
                 "`tensorboard --logdir=<model_dir>` shows it in the Profile tab.", self.first, self.last,
                 *self.captured, os.path.join(self.logdir, "plugins", "profile"))
