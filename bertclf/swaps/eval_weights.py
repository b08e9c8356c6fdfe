"""Which weights validation, the best checkpoint, the export and eval.py use: a swap point (--weights_for_eval).

An entry is a class `Entry(model, variables, options)`, built under the strategy's scope from the variables
that train, with
  begin(total_steps)  before training: the run's planned last step (an entry refuses settings that would do
                  nothing, e.g. an average that would start after it, with an errors.UserError);
  learning_rate(schedule, learning_rate)  after begin(), before the optimizer is built: the --optimizer entry's
                  learning-rate schedule as the entry wants it (SWA's constant or cyclic tail), or unchanged;
  update(step)    called by train.py's train_step in replica context after each optimizer update; `step` is the
                  number of the step just taken (1-based);
  swapped()       a context manager (and decorator) in which the model holds the evaluation weights; on exit
                  the trained weights are back bit for bit. train.py validates (and saves the best checkpoint)
                  inside it, so <model_dir>/best holds the evaluation weights;
  assign_to_model()  the model keeps the evaluation weights (train.py's export, after the last save);
  track(checkpoint, latest)  adds the entry's state to the tf.train.Checkpoint under `eval_weights` once
                  train.py restored `latest`, restoring the state from there when it holds it. A run may switch
                  an entry on when it resumes: the state then starts at that step (logged);
  scalars()       {name: scalar tensor} logged to TensorBoard (train/), names declared in the class's SCALARS.
An entry with state puts it under `eval_weights/<name>_` in checkpoints and offers the class methods
`holds_state(path)`, `load_into_model(model, path)` and `average_in_model(path)` that eval.py reads a checkpoint
with; averages of the weights get all of it from bertclf/variants/averaging.py and write one `_update`.
Entries without state add nothing to checkpoints.
  raw   the trained weights (the default)
  ema   an exponential moving average of them, bias-corrected: --ema_decay (bertclf/variants/ema.py)
  swa   the equal-weight average of late snapshots (SWA): --swa_start_fraction, --swa_every (bertclf/variants/swa.py)

eval.py scores the evaluation weights of the entry whose state a checkpoint holds (what the run used when it
saved that checkpoint); its --weights_for_eval=raw scores the trained weights instead. State under
`eval_weights/` that no entry here claims is an error, never a fallback to the trained weights.
"""
import contextlib

from absl import logging
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import tensorflow as tf

from bertclf import errors
from bertclf.variants import ema
from bertclf.variants import swa


class Raw:
  """The trained weights themselves: no state, no swap."""

  SCALARS = ()

  def __init__(self, model, variables, options):
    del model, variables, options

  def begin(self, total_steps):
    del total_steps

  def learning_rate(self, schedule, learning_rate):
    del learning_rate
    return schedule

  def update(self, step=None):
    del step

  @contextlib.contextmanager
  def swapped(self):
    yield

  def assign_to_model(self):
    pass

  def track(self, checkpoint, latest):
    del checkpoint, latest

  def scalars(self):
    return {}


WEIGHTS_FOR_EVAL = {"raw": Raw, "ema": ema.ExponentialMovingAverage, "swa": swa.StochasticWeightAveraging}


def create(name, model, variables, options=None):
  """The --weights_for_eval entry for the variables that train. Call under the strategy's scope."""
  return WEIGHTS_FOR_EVAL[name](model, list(variables), options or {})


def held_entry(path):
  """The name of the entry whose state checkpoint `path` holds ('raw': none). State under `eval_weights/` that
  no entry claims (a variant this code does not have) is an errors.UserError."""
  keys = [k for k in tf.train.load_checkpoint(path).get_variable_to_shape_map() if k.startswith("eval_weights/")]
  if not keys:
    return "raw"
  stateful = {name: entry for name, entry in WEIGHTS_FOR_EVAL.items() if hasattr(entry, "holds_state")}
  held = [name for name, entry in stateful.items() if any(k.startswith(entry.prefix()) for k in keys)]
  unknown = sorted(k.split("/.ATTRIBUTES")[0] for k in keys
                   if not any(k.startswith(stateful[name].prefix()) for name in held))
  if unknown or len(held) != 1:
    raise errors.UserError(
        f"{path} holds evaluation-weights state that no --weights_for_eval entry here ({', '.join(stateful)}) "
        f"reads alone: {', '.join(unknown[:3]) or ', '.join(held)}{' ...' if len(unknown) > 3 else ''}. Score it "
        "with the code that trained it, or pass --weights_for_eval=raw to score the trained weights.")
  return held[0]


def load_for_eval(model, path, requested=None, run_used=None):
  """eval.py, after restoring `model/` from checkpoint `path`: puts the evaluation weights into the model.

  requested: --weights_for_eval given to eval.py, or None for what the checkpoint's run used (the entry whose
  state it holds). run_used: the run's --weights_for_eval from its config.json, if known. Returns the name of the
  entry scored."""
  if run_used is not None and run_used not in WEIGHTS_FOR_EVAL:
    raise errors.UserError(f"{path}: its run validated --weights_for_eval={run_used} (config.json), an entry this "
                           f"code does not have ({', '.join(WEIGHTS_FOR_EVAL)}). Score it with the code that "
                           "trained it, or pass --weights_for_eval=raw to score the trained weights.")
  if requested == "raw":
    for entry in WEIGHTS_FOR_EVAL.values():
      if hasattr(entry, "average_in_model") and entry.average_in_model(path):
        raise errors.UserError(f"{path} holds the {entry.DESCRIPTION} only (saved while it was swapped in for "
                               "validation: the best checkpoint). Score a checkpoint of --model_dir itself for the "
                               "trained weights, or leave out --weights_for_eval=raw.")
    return "raw"
  held = held_entry(path)
  name = requested or held
  if held != name:
    raise errors.UserError(f"--weights_for_eval={name}: {path} holds no state of it (its run trained with "
                           f"--weights_for_eval={held}). Leave the flag out to score what the run used.")
  if name == "raw":
    if run_used not in (None, "raw"):
      logging.info("%s holds no state of --weights_for_eval=%s (its run switched it on after this checkpoint): "
                   "its validation used the trained weights, and so does this score.", path, run_used)
    return name
  entry = WEIGHTS_FOR_EVAL[name]
  if hasattr(entry, "updates_in") and entry.updates_in(path) == 0:
    logging.info("%s: the %s holds no update yet (validation then used the trained weights): scoring the "
                 "trained weights.", path, entry.DESCRIPTION)
    return "raw"
  if not entry.load_into_model(model, path):
    raise errors.UserError(f"{path} holds a {entry.DESCRIPTION} for none of the model's variables; is it a "
                           "checkpoint of this model?")
  return name
