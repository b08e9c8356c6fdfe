"""Which weights validation, the best checkpoint, the export and eval.py use: a swap point (--weights_for_eval).

An entry is a class `Entry(model, variables, options)`, built under the strategy's scope from the variables
that train, with
  update()        called by train.py's train_step in replica context after each optimizer update;
  swapped()       a context manager (and decorator) in which the model holds the evaluation weights; on exit
                  the trained weights are back bit for bit. train.py validates (and saves the best checkpoint)
                  inside it, so <model_dir>/best holds the evaluation weights;
  assign_to_model()  the model keeps the evaluation weights (train.py's export, after the last save);
  track(checkpoint, latest)  adds the entry's state to the tf.train.Checkpoint under `eval_weights` once
                  train.py restored `latest`, restoring the state from there when it holds it. A run may switch
                  an entry on when it resumes: the state then starts at that step (logged).
Entries without state add nothing to checkpoints.
  raw   the trained weights (the default)
  ema   an exponential moving average of them, bias-corrected: --ema_decay (bertclf/variants/ema.py)

eval.py scores the evaluation weights of the entry whose state a checkpoint holds (what the run used when it
saved that checkpoint); its --weights_for_eval=raw scores the trained weights instead.
"""
import contextlib

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)

from bertclf import errors
from bertclf.variants import ema


class Raw:
  """The trained weights themselves: no state, no swap."""

  def __init__(self, model, variables, options):
    del model, variables, options

  def update(self):
    return None

  @contextlib.contextmanager
  def swapped(self):
    yield

  def assign_to_model(self):
    pass

  def track(self, checkpoint, latest):
    del checkpoint, latest


WEIGHTS_FOR_EVAL = {"raw": Raw, "ema": ema.ExponentialMovingAverage}


def create(name, model, variables, options=None):
  """The --weights_for_eval entry for the variables that train. Call under the strategy's scope."""
  return WEIGHTS_FOR_EVAL[name](model, list(variables), options or {})


def load_for_eval(model, path, requested=None):
  """eval.py, after restoring `model/` from checkpoint `path`: puts the evaluation weights into the model.

  requested: --weights_for_eval given to eval.py, or None for what the checkpoint's run used (the entry whose
  state it holds). Returns the name of the entry scored."""
  held = "ema" if ema.holds_state(path) else "raw"
  name = requested or held
  if name == "raw":
    if ema.average_in_model(path):
      raise errors.UserError(f"{path} holds the moving average only (saved while it was swapped in for "
                             "validation: the best checkpoint). Score a checkpoint of --model_dir itself for the "
                             "trained weights, or leave out --weights_for_eval=raw.")
    return name
  if held != name:
    raise errors.UserError(f"--weights_for_eval={name}: {path} holds no state of it (its run trained with "
                           f"--weights_for_eval={held}). Leave the flag out to score what the run used.")
  if not ema.load_into_model(model, path):
    raise errors.UserError(f"{path} holds a moving average for none of the model's variables; is it a "
                           "checkpoint of this model?")
  return name
