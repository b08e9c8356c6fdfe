"""Scores a trained classifier, follows a running training job, classifies texts, and draws the plots.

  python eval.py --model_dir=runs/tiny                       # the best checkpoint (the export's) on the test split
  python eval.py --model_dir=runs/tiny --split=validation --checkpoint=runs/tiny/best/ckpt-80
  python eval.py --model_dir=runs/tiny --watch               # beside a running train.py
  python eval.py --export_dir=runs/tiny/export --predict="a great film" --predict="dull"

Which checkpoint: --checkpoint=<path> if given; else with --eval_checkpoint=export (the default) the weights
train.py exports, so eval_test.json scores the shipped model: the best validation checkpoint in <model_dir>/best/
(the latest while the run has validated none), or the latest for a run with --export_weights=final;
--eval_checkpoint=best or latest picks one of the two. --watch scores every new checkpoint as training writes it.
The first log line and eval_<split>.json name the checkpoint and the rule that chose it.

The run's own <model_dir>/config.json supplies the encoder, sequence length, classes and data flags; a flag
given on the command line wins, and one that contradicts the checkpoint (another encoder, other classes) is an
error.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads; keep it first)

import json
import os
import re
import time
import typing

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the export's tokenizer ops)

from bertclf import data
from bertclf import distribute
from bertclf import encoders
from bertclf import errors
from bertclf.swaps import eval_weights
from bertclf import evaluation
from bertclf import fast_path
from bertclf import flags as bertclf_flags
from bertclf.swaps import losses
from bertclf import model as model_lib
from bertclf import paths
from bertclf import pipeline
from bertclf import run_config
from bertclf import splits
from bertclf import summaries
from bertclf import token_cache
from bertclf.tools import predictions

FLAGS = flags.FLAGS


class CheckpointScorer:
  """The classifier rebuilt from the run's config; scores token-id splits from any of its checkpoints."""

  def __init__(self, cfg, class_names):
    self.strategy = distribute.get_strategy(FLAGS.strategy, FLAGS.num_gpus, FLAGS.num_cpu_devices,
                                            FLAGS.inter_op_threads)
    self.handles = encoders.resolve(cfg["encoder"], cfg["preprocess"])
    self.cfg, self.class_names = cfg, class_names
    self.loss_def = losses.LOSSES[cfg["loss"]]
    self.preprocess = encoders.load_preprocess(self.handles)
    with self.strategy.scope():  # the run's --encoder_impl and --dtype (from its config.json), or 'auto' resolved
      encoder, resolved = fast_path.load_encoder(self.handles, cfg["encoder_impl"], cfg["dtype"],
                                                 fast_path.devices(FLAGS.num_gpus, FLAGS.num_cpu_devices),
                                                 trainable=False, cls_only=cfg.get("cls_only_last_layer", True))
      logging.info("Scoring with encoder %s (%s), dtype %s (%s).", resolved.encoder_impl,
                   resolved.reasons["encoder_impl"], resolved.dtype, resolved.reasons["dtype"])
      self.model = model_lib.build_classifier(encoder, self.loss_def.num_logits(len(class_names)), cfg["head"])
    self.predict_fn = evaluation.make_predict_fn(
        self.strategy, self.model, self.loss_def, lambda lengths: bertclf_flags.bucket_boundaries(lengths, cfg))

  def restore(self, path):
    """Loads the evaluation weights of checkpoint `path` (the trained ones, or e.g. their moving average when
    the run validated that: bertclf/swaps/eval_weights.py); returns its training step."""
    tf.train.Checkpoint(model=self.model).restore(path).expect_partial().assert_existing_objects_matched()
    requested = FLAGS.weights_for_eval if FLAGS["weights_for_eval"].present else None
    run_used = None if requested else self.cfg.get("weights_for_eval")  # config.json's, to refuse unknown entries
    logging.info("Scoring the %s weights of %s.", eval_weights.load_for_eval(self.model, path, requested, run_used),
                 path)
    return _step_of(path)

  def tokenize(self, split, name=None):
    """Token ids of a split; a named split (one of the data's) goes through the run's --token_cache."""
    cfg = self.cfg
    cache = token_cache.TokenCache.from_flag(cfg["token_cache"], self.handles.preprocess, cfg["seq_length"])
    return pipeline.tokenize(split, self.preprocess, self.cfg["seq_length"], self.cfg["tokenize_batch_size"],
                             cache if name else None, name or "given")

  def probabilities(self, texts):
    split = data.Split(list(texts), np.zeros(len(texts), np.int32))
    return self.predict_fn(self.tokenize(split), bertclf_flags.eval_batch_size())[0]

  def score(self, tokenized):
    probs, per_example = self.predict_fn(tokenized, bertclf_flags.eval_batch_size())
    return evaluation.classification_metrics(probs, per_example, tokenized.labels, self.class_names), probs


class ExportScorer:
  """An exported SavedModel (raw strings → probabilities); needs nothing from bertclf to run."""

  def __init__(self, export_dir):
    _check_export_dir(export_dir)
    loaded = tf.saved_model.load(export_dir)
    self.serve = loaded.signatures["serving_default"]
    self.class_names = [c.decode() for c in loaded.classes().numpy()]

  def probabilities(self, texts, batch_size=256):
    return np.concatenate([self.serve(tf.constant(texts[i:i + batch_size]))["probabilities"].numpy()
                           for i in range(0, len(texts), batch_size)]) if texts else np.zeros([0, 0])

  def score(self, split):
    probs = self.probabilities(split.texts)
    per_example = -np.log(np.clip(probs[np.arange(len(probs)), split.labels], 1e-12, 1.0))
    return evaluation.classification_metrics(probs, per_example, split.labels, self.class_names), probs


def main(argv):
  """eval.py; a user error about a value the run's config.json supplied says so (the user never typed it)."""
  try:
    return _main(argv)
  except errors.UserError as err:
    raise errors.UserError(_say_which_came_from_config(str(err))) from err


def _main(_):
  # Inputs that fail fast: before minutes of loading and predicting.
  paths.check_writable_file("--predict_output", FLAGS.predict_output)
  _check_predict_file(FLAGS.predict_file)
  if FLAGS.export_dir:
    _check_export_dir(FLAGS.export_dir)
  run_dir = _run_dir()
  saved = _wait_for_run_config() if FLAGS.watch else run_config.read(run_dir) if run_dir else None
  saved, path_notes = run_config.resolve_paths(saved, run_dir)
  cfg = bertclf_flags.with_run_config(saved)
  if not FLAGS.export_dir and not saved:
    if FLAGS.checkpoint and not FLAGS["model_dir"].present:
      raise errors.UserError(f"--checkpoint={FLAGS.checkpoint}: its run folder {run_dir} has no config.json; pass "
                             "--model_dir=<the train.py run it belongs to>.")
    raise errors.UserError(f"--model_dir={FLAGS.model_dir} has no config.json: it is not a train.py run. Pass the "
                           "--model_dir of a training run, or --export_dir=<export> to use an exported model.")
  chosen = _choose_what_to_score(saved)  # the checkpoint, None for --export_dir and --watch
  if saved and cfg["encoder_impl"] == "auto":  # the checkpoint holds the variables of what its run built
    cfg = dict(cfg, encoder_impl=saved.get("encoder_impl", "auto"))
  if saved and not FLAGS.export_dir:  # flags given now must describe the same model as the run's checkpoints
    now = dict(saved, seq_length=cfg["seq_length"], head=cfg["head"], loss=cfg["loss"],
               encoder_impl=cfg["encoder_impl"],
               encoder_handle=encoders.resolve(cfg["encoder"], cfg["preprocess"]).encoder)
    try:
      run_config.check_compatible(saved, now, f"--model_dir={run_dir}")
    except ValueError as err:  # the refusal names the flags and the fix: a user error, not a bug
      raise errors.UserError(str(err)) from None
  for note in path_notes:
    logging.info("%s", note)

  # ============================================================== Prediction
  if FLAGS.predict or FLAGS.predict_file:
    texts = list(FLAGS.predict or []) + (_read_predict_file(FLAGS.predict_file, cfg["text_column"])
                                         if FLAGS.predict_file else [])
    if FLAGS.export_dir:
      scorer, source = ExportScorer(FLAGS.export_dir), FLAGS.export_dir
    else:
      scorer = CheckpointScorer(cfg, saved["class_names"])
      source = chosen.path
      scorer.restore(source)
    _write_predictions(texts, scorer.probabilities(texts), scorer.class_names, source)
    return

  # ============================================================== Data: the split to score
  if FLAGS.export_dir and not FLAGS["dataset"].present:  # never the flag's default: a silent IMDB download
    if not saved:
      raise errors.UserError(f"--export_dir={FLAGS.export_dir}: pass --dataset=<data to score it on> (and its data "
                             "flags), or --predict/--predict_file to classify texts; there is no training run's "
                             "config.json beside the export to take them from.")
    logging.info("Data: the data flags of %s, the run the export belongs to (--dataset overrides them).",
                 os.path.join(run_dir, run_config.CONFIG_FILE))
  text_data = data.load_text_data(cfg["dataset"], **bertclf_flags.data_kwargs(cfg))
  split = getattr(text_data, FLAGS.split)
  # The run's record of its splits: in --model_dir, or beside --export_dir=<run>/export.
  record_dir = run_dir if saved else os.path.dirname(os.path.normpath(FLAGS.export_dir))
  if split is None or len(split) == 0:
    raise errors.UserError(f"{text_data.source} has no {FLAGS.split} split. {_held_out_advice(record_dir)}")
  # How many of its examples the run trained or selected on (None: no splits.json to tell); into eval_<split>.json.
  overlap = splits.check_not_trained_on(record_dir, FLAGS.split, split, _held_out_advice(record_dir),
                                        allow=FLAGS.allow_split_overlap)
  expected_classes = saved["class_names"] if saved else None
  if expected_classes and text_data.class_names != expected_classes:
    raise errors.UserError(f"The data's classes {text_data.class_names} differ from the run's {expected_classes} "
                           f"(in {run_dir}/config.json); pass the data the model was trained on, or "
                           "--class_names in the run's order.")

  # ============================================================== Score: export, one checkpoint, or --watch
  out_dir = FLAGS.export_dir if FLAGS.export_dir and not FLAGS["model_dir"].present else run_dir
  if FLAGS.export_dir:
    scorer = ExportScorer(FLAGS.export_dir)
    if scorer.class_names != text_data.class_names:
      raise errors.UserError(f"{FLAGS.export_dir} predicts {scorer.class_names}; the data has "
                             f"{text_data.class_names}. Score it on data with the same classes.")
    metrics, probs = scorer.score(split)
    _report(out_dir, split, metrics, probs, step=None, source=FLAGS.export_dir, text_data=text_data,
            encoder=(saved or {}).get("encoder_handle"), overlap=overlap)
    return
  scorer = CheckpointScorer(cfg, saved["class_names"])
  tokenized = scorer.tokenize(split, FLAGS.split)
  if not FLAGS.watch:
    step = scorer.restore(chosen.path)
    metrics, probs = scorer.score(tokenized)
    _report(out_dir, split, metrics, probs, step, chosen.path, text_data, saved["encoder_handle"], overlap, chosen)
    return
  for path in tf.train.checkpoints_iterator(FLAGS.model_dir, min_interval_secs=1, timeout=FLAGS.watch_timeout):
    try:
      step = scorer.restore(path)
      metrics, probs = scorer.score(tokenized)
    except (tf.errors.NotFoundError, tf.errors.DataLossError, AssertionError) as err:
      # max_to_keep deleted it, or it is half-written: the next one will come.
      logging.warning("Skipping %s (deleted or still being written): %s", path, str(err).splitlines()[0])
      continue
    _report(out_dir, split, metrics, probs, step, path, text_data, saved["encoder_handle"], overlap,
            Chosen(path, "--watch", ""))
    if step >= saved["total_steps"]:
      logging.info("Scored the final step %d; stopping.", step)
      return
  logging.warning("No new checkpoint in %d s (--watch_timeout); stopping.", FLAGS.watch_timeout)


def _run_dir():
  """The train.py run whose config.json supplies the flags left out: --model_dir; without it, the run of
  --checkpoint (<run>/ckpt-N or <run>/best/ckpt-N) or of --export_dir (<run>/export), or None."""
  if FLAGS["model_dir"].present or not (FLAGS.checkpoint or FLAGS.export_dir):
    return FLAGS.model_dir
  if FLAGS.checkpoint:
    folder = os.path.dirname(os.path.abspath(FLAGS.checkpoint))
    return os.path.dirname(folder) if os.path.basename(folder) == "best" else folder
  parent = os.path.dirname(os.path.normpath(FLAGS.export_dir))
  return parent if run_config.read(parent) is not None else None


def _say_which_came_from_config(message):
  """`message` with each --flag=value that the run's config.json supplied (a path flag left out) marked as such."""
  run_dir = _run_dir()
  saved = run_config.read(run_dir) if run_dir else None
  if not saved:
    return message
  config = os.path.join(run_dir, run_config.CONFIG_FILE)
  resolved, _ = run_config.resolve_paths(saved, run_dir)
  for name in run_config.PATH_FLAGS:
    if FLAGS[name].present or saved.get(name) is None:
      continue
    for value in dict.fromkeys((resolved[name], saved[name])):
      flag = re.escape(f"--{name}={value}")
      message = re.sub(flag + r"(?=$|[\s:;,)])", lambda m, n=name: f"{m.group(0)} (from {config}; pass --{n} to "
                       "override it)", message, count=1)
  return message


def _check_predict_file(path):
  """A missing file or a folder fails at open() with a traceback that names no flag."""
  if path and os.path.isdir(path):
    raise errors.UserError(f"--predict_file={path} is a folder; pass a file of texts (one per line, or JSONL with "
                           "--text_column).")
  if path and not os.path.exists(path):
    raise errors.UserError(f"--predict_file={path}: no such file. Pass a file of texts (one per line, or JSONL "
                           "with --text_column).")


def _check_export_dir(export_dir):
  """A run folder or an encoder given as --export_dir fails inside TensorFlow with an error that names neither."""
  if not tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb")):
    if run_config.read(export_dir) is not None:
      raise errors.UserError(f"--export_dir={export_dir} is a training run's folder; pass its export: "
                             f"--export_dir={os.path.join(export_dir, 'export')} (or --model_dir={export_dir} to "
                             "use its checkpoints).")
    raise errors.UserError(f"--export_dir={export_dir}: no saved_model.pb there. Pass the export/ folder that "
                           "train.py writes into its --model_dir.")
  if "classes" not in encoders.saved_model_objects(export_dir)[0]:
    raise errors.UserError(f"--export_dir={export_dir} is a SavedModel but not a train.py export (it has no "
                           "classes()); an encoder goes to --encoder. Pass <model_dir>/export of a training run.")


def _wait_for_run_config():
  """--watch may start before train.py has written <model_dir>/config.json: wait for it."""
  deadline = time.time() + FLAGS.watch_timeout
  while (saved := run_config.read(FLAGS.model_dir)) is None and time.time() < deadline:
    time.sleep(1)
  return saved


def _held_out_advice(record_dir):
  """What to score instead of a split the run saw: only routes that cannot overlap its training data."""
  record = splits.read(record_dir)
  if record and "test" in record["splits"]:
    return ("Score the test split the run held out: give eval.py the run's data flags (its config.json supplies "
            "them when they are left out).")
  return ("The run held out no test split, so every example of its data was in its training or validation "
          "split. Score a separate test set: --test_file=<file> for a .csv/.tsv/.jsonl dataset, or a test/ folder "
          "beside train/, with texts the run did not train on; or train a run that holds one out (train.py "
          "--test_fraction).")


class Chosen(typing.NamedTuple):
  """The checkpoint eval.py scores, the rule that chose it (eval_<split>.json's checkpoint_rule) and why."""
  path: str
  rule: str  # --checkpoint, best, latest, --watch (eval_<split>.json says --export_dir for the export)
  why: str


def _choose_what_to_score(saved):
  """The checkpoint to score (--checkpoint, else --eval_checkpoint's pick in --model_dir), or None for the export
  and --watch; what and why is eval.py's first log line. saved: the run's config.json (its --export_weights)."""
  if FLAGS.export_dir:
    logging.info("Scoring the export %s (--export_dir).", FLAGS.export_dir)
    return None
  exports_final = (saved or {}).get("export_weights") == "final"
  exported = "the final weights (--export_weights=final)" if exports_final else "the best validation checkpoint"
  if FLAGS.watch:
    logging.info("Scoring each new checkpoint of %s as train.py writes it (--watch follows training; the export "
                 "holds %s).", FLAGS.model_dir, exported)
    return None
  if FLAGS.checkpoint:
    chosen = Chosen(FLAGS.checkpoint, "--checkpoint", "given by --checkpoint")
  else:
    best = tf.train.latest_checkpoint(os.path.join(FLAGS.model_dir, "best"))
    latest = tf.train.latest_checkpoint(FLAGS.model_dir)
    rule = FLAGS.eval_checkpoint
    if rule == "export":  # the weights train.py exports
      rule = "latest" if exports_final else "best"
    if not latest and not (rule == "best" and best):
      raise errors.UserError(f"No checkpoint in --model_dir={FLAGS.model_dir}. Train first (train.py "
                             "--model_dir=...), pass --checkpoint=<path>, or --export_dir=<export>.")
    if rule == "best" and best:
      path, rule, why = best, "best", ("the best validation checkpoint, step {}: the weights the export holds; "
                                       "--eval_checkpoint=latest scores the latest")
    elif rule == "best":
      path, rule, why = latest, "latest", ("the latest checkpoint, step {}: {best_dir} holds none yet (the run has "
                                           "not validated)")
    elif exports_final:
      path, why = latest, ("the latest checkpoint, step {}: the run exports its final weights "
                           "(--export_weights=final); --eval_checkpoint=best scores the best validation checkpoint")
    else:
      path, why = latest, ("the latest checkpoint, step {} (--eval_checkpoint=latest); the export holds the best "
                           "validation checkpoint")
    chosen = Chosen(path, rule, why.format(_step_of(path), best_dir=os.path.join(FLAGS.model_dir, "best")))
  _check_checkpoint(chosen.path)
  logging.info("Scoring %s (%s).", chosen.path, chosen.why)
  return chosen


def _step_of(path):
  return int(tf.train.load_checkpoint(path).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def _check_checkpoint(path):
  if tf.io.gfile.exists(path + ".index"):
    return
  if tf.io.gfile.isdir(path):
    inside = tf.train.latest_checkpoint(path)
    raise errors.UserError(f"--checkpoint={path} is a folder; pass a checkpoint in it"
                           f"{f', e.g. --checkpoint={inside}' if inside else ' (it holds none)'}.")
  raise errors.UserError(f"--checkpoint={path}: no such checkpoint (expected {path}.index).")


def _report(out_dir, split, metrics, probs, step, source, text_data, encoder, overlap, chosen=None):
  """Logs the metrics, writes eval_<split>.json, TensorBoard scalars at the checkpoint's step, and plots.

  overlap: {"train": n, "validation": m} examples of the split in the run's recorded splits, or None (unknown).
  chosen: the checkpoint scored and the rule that chose it (None: the export).
  """
  name = f"eval_{FLAGS.split}"
  result = {"split": FLAGS.split, "step": step, "source": source, "encoder": encoder,
            "data_source": text_data.source, "class_names": text_data.class_names,
            "overlap_with_training": overlap, **metrics}
  logging.info("%s step %s: loss %.4f accuracy %.4f macro F1 %.4f on %d examples%s", name, step,
               metrics["loss"], metrics["accuracy"], metrics["macro_f1"], metrics["num_examples"],
               f" ROC AUC {metrics['roc_auc']:.4f}" if "roc_auc" in metrics else "")
  if metrics["num_examples"] != len(split):
    raise RuntimeError(f"Scored {metrics['num_examples']} of {len(split)} examples.")
  # Which weights the numbers belong to: the export's (the best checkpoint), the latest, or another.
  result.update(checkpoint=chosen.path if chosen else None, checkpoint_rule=chosen.rule if chosen else "--export_dir")
  tf.io.gfile.makedirs(out_dir)
  with tf.io.gfile.GFile(os.path.join(out_dir, name + ".json"), "w") as f:
    f.write(json.dumps(result, indent=2))
  if FLAGS.predictions_output:
    predictions.write(FLAGS.predictions_output, split.texts, split.labels, probs)
  if step is not None:
    summaries.write_scalars(summaries.writer(out_dir, name), step,
                            {k: metrics[k] for k in ("loss", "accuracy", "macro_f1", "roc_auc") if k in metrics})
  if FLAGS.plots:
    from bertclf import plots  # pylint: disable=g-import-not-at-top  (matplotlib only when plotting)
    plot_dir = os.path.join(out_dir, "plots")
    made = [plots.plot_confusion_matrix(np.array(metrics["confusion_matrix"]), text_data.class_names,
                                        os.path.join(plot_dir, f"confusion_matrix_{FLAGS.split}.png"))]
    if "roc_auc" in metrics:
      made.append(plots.plot_roc(split.labels, probs[:, 1], os.path.join(plot_dir, f"roc_{FLAGS.split}.png")))
    if tf.io.gfile.exists(os.path.join(out_dir, "train")):
      made.append(plots.plot_training_curves(out_dir, os.path.join(plot_dir, "training_curves.png")))
    logging.info("Plots: %s", ", ".join(made))


def _read_predict_file(path, text_column):
  """One text per line, or JSONL objects with --text_column. Empty and undecodable lines are errors."""
  texts = []
  try:
    f = open(path, "rb")  # pylint: disable=consider-using-with
  except OSError as err:
    raise errors.UserError(f"--predict_file={path}: cannot read it ({err.strerror}).") from None
  with f:
    for number, raw in enumerate(f, 1):
      try:
        line = raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as err:
        raise errors.UserError(f"{path}:{number}: not UTF-8 ({err.reason} at byte {err.start}); re-save the file as "
                               "UTF-8.") from err
      if path.endswith(".jsonl") and line.strip():
        try:
          line = json.loads(line)[text_column]
        except (ValueError, KeyError, TypeError) as err:
          raise errors.UserError(f"{path}:{number}: expected a JSON object with key {text_column!r} "
                                 "(--text_column).") from err
      if not str(line).strip():
        raise errors.UserError(f"{path}:{number}: empty text; remove the line or put a text on it.")
      texts.append(str(line))
  if not texts:
    raise errors.UserError(f"--predict_file={path} holds no texts.")
  return texts


def _write_predictions(texts, probs, class_names, source):
  rows = [{"text": t, "label": int(p.argmax()), "class_name": class_names[int(p.argmax())],
           "probabilities": {c: float(x) for c, x in zip(class_names, p)}} for t, p in zip(texts, probs)]
  if FLAGS.predict_output:
    with open(FLAGS.predict_output, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    logging.info("Wrote %d predictions from %s to %s", len(rows), source, FLAGS.predict_output)
  else:
    for r in rows:
      probs_text = " ".join(f"{c}={v:.4f}" for c, v in r["probabilities"].items())
      print(f"{r['class_name']}\t{probs_text}\t{r['text']}")


if __name__ == "__main__":
  bertclf_flags.define_flags()
  errors.run(main)
