"""Fine-tunes a BERT-family encoder for text classification with an explicit tf.distribute training loop.

  python train.py --flagfile=flags/tiny.cfg
  python train.py --flagfile=flags/imdb_small_bert.cfg --model_dir=runs/imdb

Reads top to bottom: setup → data → fast path → model → step functions → restore → loop → export. Shapes: B =
per-replica batch, G = global batch, T = sequence length, H = hidden size, L = logits, C = classes.
"""
import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads; keep it first)

import functools
import os
import signal
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from bertclf import checkpointing
from bertclf import distribute
from bertclf.swaps import dropout
from bertclf import encoders
from bertclf import errors
from bertclf.swaps import eval_weights
from bertclf import evaluation
from bertclf import export as export_lib
from bertclf import fast_path
from bertclf import flags as bertclf_flags
from bertclf.variants import freezing
from bertclf.swaps import losses
from bertclf import model as model_lib
from bertclf import paths
from bertclf.swaps import optim
from bertclf import pipeline
from bertclf import profiling
from bertclf import run_config
from bertclf import splits
from bertclf.swaps import steps
from bertclf import summaries
from bertclf import token_cache

FLAGS = flags.FLAGS
# A progress line at least this often (and after the first call), whatever --log_every_steps says: a short or slow
# run shows it is alive and how fast it goes.
PROGRESS_EVERY_SECS = 30


def main(argv):
  del argv
  # ============================================================== Setup: strategy, encoder handles
  paths.check_writable_dir("--model_dir", FLAGS.model_dir)  # a file, read-only or full disk: before any slow work
  strategy = distribute.get_strategy(FLAGS.strategy, FLAGS.num_gpus, FLAGS.num_cpu_devices,
                                     FLAGS.inter_op_threads)
  num_replicas = strategy.num_replicas_in_sync
  G = FLAGS.batch_size  # pylint: disable=invalid-name
  for name, size in (("batch_size", G), ("eval_batch_size", bertclf_flags.eval_batch_size())):
    if size % num_replicas:
      raise errors.UserError(f"--{name}={size} is a global batch and must divide by the {num_replicas} replicas.")
  tf.random.set_seed(FLAGS.seed)
  handles = encoders.resolve(FLAGS.encoder, FLAGS.preprocess)
  if handles.max_seq_length and FLAGS.seq_length > handles.max_seq_length:
    raise errors.UserError(f"--seq_length={FLAGS.seq_length} exceeds the encoder's maximum of "
                           f"{handles.max_seq_length} positions.")
  model_dir = FLAGS.model_dir
  saved = run_config.read(model_dir)  # a run to continue: its config.json

  # ============================================================== Data: load, tokenize once on the host
  loss_def = losses.LOSSES[FLAGS.loss]

  def check_classes(class_names):  # before any tokenizing
    if (problem := loss_def.check(len(class_names))):
      raise errors.UserError(problem)

  preprocess = functools.cache(lambda: encoders.load_preprocess(handles))  # loaded when first needed
  cache = token_cache.TokenCache.from_flag(FLAGS.token_cache, handles.preprocess, FLAGS.seq_length)
  # With --token_cache, a CSV/TSV/JSONL dataset loaded and tokenized before is read back without parsing a text.
  prepared = pipeline.load_and_tokenize(FLAGS.dataset, bertclf_flags.data_kwargs(), preprocess, FLAGS.seq_length,
                                        FLAGS.tokenize_batch_size, cache, check_classes)  # logs the data report
  num_classes = len(prepared.class_names)
  train_data, val_data = prepared.train, prepared.validation  # pipeline.Tokenized
  steps_per_epoch = pipeline.steps_per_epoch(len(train_data), G)
  total_steps = FLAGS.train_steps or FLAGS.epochs * steps_per_epoch
  warmup_steps = int(FLAGS.warmup_fraction * total_steps)

  # ============================================================== Fast path: encoder, precision, buckets
  # 'auto' (the default of all three) resolves here, once; a run being continued keeps the values its
  # config.json holds (bertclf/fast_path.py). The policy is set before the encoder, head and optimizer are built.
  wanted = fast_path.requested(saved)  # {flag: (value, where it came from)}
  machine = fast_path.devices(FLAGS.num_gpus, FLAGS.num_cpu_devices)
  with strategy.scope():
    encoder, resolved = fast_path.load_encoder(handles, wanted["encoder_impl"][0], wanted["dtype"][0], machine,
                                               trainable=True, cls_only=FLAGS.cls_only_last_layer)
  dtype = resolved.dtype
  # Padded lengths of the training batches, picked from these lengths by 'auto'; [] without bucketing.
  bucket_boundaries, bucket_reason = bertclf_flags.resolve_bucket_boundaries(
      train_data.lengths, dict(bertclf_flags.flag_values(), bucket_boundaries=wanted["bucket_boundaries"][0]))
  sources = {name: source for name, (_, source) in wanted.items()}
  why = fast_path.notes(resolved, bucket_reason, sources, saved)  # {flag: reason}, into config.json
  logging.info("%s", fast_path.summary(resolved, bucket_boundaries, why, sources, machine))

  config = {**bertclf_flags.flag_values(), "encoder_impl": resolved.encoder_impl, "dtype": dtype,
            "bucket_boundaries": [str(b) for b in bucket_boundaries],
            "fast_path": why,
            "encoder_handle": handles.encoder, "preprocess_handle": handles.preprocess,
            "encoder_config": handles.config, "class_names": prepared.class_names,
            "data_source": prepared.source, "num_replicas": num_replicas,
            "num_workers": checkpointing.num_workers(strategy), "strategy_class":
            type(strategy).__name__, "policy": distribute.POLICIES[dtype], "steps_per_epoch":
            steps_per_epoch, "total_steps": total_steps, "warmup_steps": warmup_steps,
            "num_train_examples": len(train_data), "num_validation_examples": len(val_data),
            "train_bucket_lengths": bucket_boundaries + [FLAGS.seq_length] if bucket_boundaries else []}
  config = run_config.absolute_paths(config)  # eval.py, run from any directory, finds the data and the encoder
  if saved and tf.train.latest_checkpoint(model_dir):
    run_config.check_compatible(saved, config, f"--model_dir={model_dir}")
  data_record = splits.check_same_data(model_dir, prepared.fingerprints, FLAGS.resume_on_new_data)
  chief = checkpointing.is_chief(strategy)
  if chief:
    checkpointing.remove_stale_temp_folders(model_dir)
    if not saved:  # config.json: what the run started with; each restart is appended to history.jsonl
      run_config.write(model_dir, config)
    splits.write(model_dir, data_record)
  # One line of the choices that matter most; every value is in config.json and TensorBoard's Text tab.
  shown = _hparam_keys() + ("encoder_impl", "strategy_class", "total_steps", "num_train_examples")
  logging.info("run: %s (all %d values: %s)", ", ".join(f"{k}={config[k]}" for k in shown if k in config),
               len(config), os.path.join(model_dir, run_config.CONFIG_FILE))

  if resolved.encoder_impl == "hub" and FLAGS.encoder_dropout:
    logging.warning("The TF Hub encoder's own dropout draws from stateful random ops inside its SavedModel: "
                    "after a resume it does not redraw the same masks, and replicas may share them. "
                    "--encoder_impl=native (any BERT encoder it can rebuild) or --encoder_dropout=false "
                    "avoids both.")

  # ============================================================== Model, optimizer, checkpoint
  variant_options = bertclf_flags.step_options()  # settings of the research variants (docs/VARIANTS.md)
  with strategy.scope():
    model = model_lib.build_classifier(encoder, loss_def.num_logits(num_classes), FLAGS.head, FLAGS.dropout,
                                       FLAGS.encoder_dropout, FLAGS.seed)
    changed = dropout.MASKS[FLAGS.dropout_masks](model)  # where the Dropout layers' random numbers come from
    logging.info("--dropout_masks=%s: %d Keras Dropout layers changed", FLAGS.dropout_masks, changed)
    # The weights validation, the best checkpoint and the export use (--weights_for_eval; raw: the trained ones).
    weights_for_eval = eval_weights.create(FLAGS.weights_for_eval, model,
                                           freezing.trainable_variables(model, FLAGS.freeze, variant_options),
                                           variant_options)
    weights_for_eval.begin(total_steps)  # refuses settings that would do nothing in this run (e.g. SWA's start)
    optimizer = optim.create_optimizer(FLAGS.optimizer, FLAGS.learning_rate, total_steps, warmup_steps,
                                       dtype, model=model, options=variant_options,
                                       schedule=lambda s: weights_for_eval.learning_rate(s, FLAGS.learning_rate))
    # Training steps taken: the loop counter, and with the recovery count the input position (see pipeline.py).
    # The run's own counter, not the optimizer's `iterations`, which optimizer wrappers count in their own way.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    # The best validation (accuracy, -loss) so far: kept in the checkpoint so a resumed run remembers it.
    best_val = tf.Variable([-1.0, -np.inf], dtype=tf.float32, trainable=False, name="best_val")
    # --recovery_max_trials: recoveries so far and the batches they skipped (the data position is
    # step + skipped). Recoveries also reseed dropout, so a retried stretch does not repeat the failed one.
    recovery = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="recovery")
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step, best_val=best_val,
                                   recovery=recovery)
  writable = functools.partial(checkpointing.writable_dir, strategy)  # the chief's folders, or a private one
  manager = tf.train.CheckpointManager(checkpoint, writable(model_dir), max_to_keep=FLAGS.max_to_keep,
                                       step_counter=step)
  best_manager = tf.train.CheckpointManager(checkpoint, writable(os.path.join(model_dir, "best")),
                                            max_to_keep=1, step_counter=step)

  # ============================================================== Step functions
  step_def = steps.STEPS[FLAGS.step]
  ctx = steps.StepContext(model, loss_def, optimizer, G, options=variant_options,
                          variables=freezing.trainable_variables(model, FLAGS.freeze, variant_options))
  with strategy.scope():
    optim.build(optimizer, ctx.variables)  # before the loop's first call, which is then traced once, not twice

  @steps.compiled(step_def, jit_compile=FLAGS.jit_compile)  # a synchronised step is not nested: it may all-reduce
  def compute_gradients(features, labels, mask_seed, first_row):
    """The --step variant, with dropout masks drawn for (seed, step, global row): see bertclf/swaps/dropout.py."""
    with dropout.masks_for_step(mask_seed, first_row):
      return step_def.fn(ctx, features, labels)

  def train_step(batch):
    """One step on one replica's batch: gradients (the --step variant), all-reduce, clip, update."""
    features, labels, _ = batch  # {k: [B, T] int32}, [B] int32
    mask_seed = dropout.step_seed(FLAGS.seed, step, recovery[0])
    loss, correct, grads, extras = compute_gradients(features, labels, mask_seed,
                                                     dropout.replica_first_row(tf.shape(labels)[0]))
    if bucket_boundaries and checkpointing.num_workers(strategy) > 1:  # collectives: one shape for every bucket
      grads = distribute.fixed_rows(grads, tf.shape(features["input_word_ids"])[1], FLAGS.seq_length)
    grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
    grads = optim.densify(grads)  # embedding slices → dense, so the norm counts repeated tokens right
    grad_norm = tf.linalg.global_norm(grads)  # of the global mean gradient, before clipping
    if FLAGS.clip_norm:  # 0: no global clipping (e.g. with --optimizer_wrapper=agc)
      grads, _ = tf.clip_by_global_norm(grads, FLAGS.clip_norm, use_norm=grad_norm)
    optimizer.apply_gradients(zip(grads, ctx.variables), experimental_aggregate_gradients=False)
    weights_for_eval.update(step + 1)  # e.g. the moving average takes in the new weights of this step
    step.assign_add(1)
    # The wrappers' and the entry's own scalars (AGC's clipped fraction, SWA's snapshots): the same on every replica.
    return {"loss": loss, "correct": correct, "grad_norm": grad_norm, **extras, **optim.scalars(optimizer),
            **weights_for_eval.scalars()}

  replicated = optim.scalar_names(optimizer) + weights_for_eval.SCALARS  # the same on every replica: MEAN
  outputs = ("loss", "correct", "grad_norm") + step_def.extras + replicated

  @tf.function
  def train_loop(iterator, num_steps):
    """Runs num_steps steps in one call; returns {output: [num_steps]} over the global batch."""
    arrays = [tf.TensorArray(tf.float32, size=num_steps) for _ in outputs]
    for i in tf.range(num_steps):
      per_replica = strategy.run(train_step, args=(next(iterator),))
      # Replicas' shares add up; grad_norm and the entries' scalars are the same on every replica.
      values = [strategy.reduce("MEAN" if k == "grad_norm" or k in replicated else "SUM", per_replica[k], axis=None)
                for k in outputs]
      arrays = [a.write(i, tf.cast(v, tf.float32)) for a, v in zip(arrays, values)]
    return {k: a.stack() for k, a in zip(outputs, arrays)}

  # Validation pads to the training batches' bucket lengths (the same shapes; eval.py reads them from config.json).
  predict = evaluation.make_predict_fn(strategy, model, loss_def, lambda lengths: bucket_boundaries)
  val_writer = summaries.writer(writable(model_dir), "validation", skip_written=True)

  @weights_for_eval.swapped()  # validation and the best checkpoint see the --weights_for_eval weights
  def validate():
    probs, per_example = predict(val_data, bertclf_flags.eval_batch_size())
    metrics = evaluation.basic_metrics(probs, per_example, val_data.labels)
    s = int(step.numpy())
    logging.info("validation step %d: loss %.4f accuracy %.4f (%d examples)", s, metrics["loss"],
                 metrics["accuracy"], metrics["num_examples"])
    summaries.write_scalars(val_writer, s, {"loss": metrics["loss"], "accuracy": metrics["accuracy"]})
    score = np.float32([metrics["accuracy"], -metrics["loss"]])  # ties in accuracy go to the lower loss
    if tuple(score) > tuple(best_val.numpy()) and checkpointing.all_finite(model.variables):
      best_val.assign(score)
      best_manager.save(checkpoint_number=s)  # every worker saves (see writable); saving is collective
      logging.info("new best validation accuracy %.4f at step %d (saved to %s)", metrics["accuracy"], s,
                   best_manager.latest_checkpoint)
    return metrics

  # ============================================================== Restore: continue exactly where it stopped
  # Every worker restores the chief's latest checkpoint (--model_dir is shared storage; see checkpointing.py).
  latest = tf.train.latest_checkpoint(model_dir)
  checkpointing.check_same_checkpoint(strategy, latest)
  if latest:
    restored = checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info("Restored %s: continuing at step %d of %d.", latest, int(step.numpy()), total_steps)
  weights_for_eval.track(checkpoint, latest)  # its state joins the checkpoint (restored from latest if there)
  if chief:
    checkpointing.append_history(model_dir, config, int(step.numpy()))
  start_step = int(step.numpy())
  if latest and start_step >= total_steps:  # the same command again after the run finished
    # No step will run, so the optimizer variables that its first apply_gradients creates (iterations, beta_1,
    # beta_2, decay) are never built to receive their values: TensorFlow would warn about each at exit.
    restored.expect_partial()
    if _finished(model_dir, start_step, total_steps):
      return

  data_position = start_step + int(recovery[1].numpy())  # batches consumed: steps + batches recoveries skipped
  train_iter = iter(strategy.distribute_datasets_from_function(pipeline.train_dataset_fn(
      train_data, G, FLAGS.seed, data_position, bucket_boundaries, FLAGS.bucket_pool_batches)))
  train_writer = summaries.writer(writable(model_dir), "train", skip_written=True)
  if start_step == 0:
    summaries.write_config(train_writer, config, {k: config[k] for k in _hparam_keys() if k in config})

  def save(s):
    """Saves step s unless the weights are not finite (then the last good checkpoint stays the latest)."""
    if not checkpointing.all_finite(model.variables):
      raise checkpointing.Diverged(f"The weights are not finite at step {s}; not saved. {last_good()}")
    manager.save(checkpoint_number=s)

  def last_good():
    return (f"The last good checkpoint is {manager.latest_checkpoint}." if manager.latest_checkpoint else
            "No checkpoint was saved before it: there is nothing to resume from.")

  def recover_or_stop(out, s, n, bad):
    """Step `bad` of the call that ran steps s+1..s+n diverged: stop with the error, or (--recovery_max_trials)
    reload the last good checkpoint and return its step; the data goes on after the bad call's batches."""
    i = bad - s - 1
    problem = f"Training diverged at step {bad}: loss {out['loss'][i]:.4g}, gradient norm {out['grad_norm'][i]:.4g}."
    trials, skipped = recovery.numpy()
    if trials >= FLAGS.recovery_max_trials or not manager.latest_checkpoint:
      raise checkpointing.Diverged(f"{problem} Stopping. {last_good()} Advice: "
                                   f"{checkpointing.divergence_advice(dtype, FLAGS.learning_rate)}.")
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    good = int(step.numpy())
    recovery.assign([trials + 1, skipped + s + n - good])  # the data position is step + skipped
    logging.warning("%s Recovery %d of %d: reloaded %s; continuing at step %d with the batches after the bad "
                    "one.", problem, trials + 1, FLAGS.recovery_max_trials, manager.latest_checkpoint, good)
    summaries.write_scalars(train_writer, good, {"recoveries": trials + 1})
    return good

  # SIGTERM / SIGINT: on one host, finish the current steps_per_loop call, save, exit. On several workers,
  # TensorFlow's PreemptionCheckpointHandler makes every worker save the same step, then exit.
  stop = checkpointing.StopRequests()
  preemption = checkpointing.coordinated_stop(strategy, checkpoint, model_dir,
                                              lambda: save(int(step.numpy())), stop)

  # --profile_steps: the chief traces the calls that cover steps A..B into <model_dir>/train (Profile tab). Workers
  # all-reduce every step in lock step, so one worker's trace shows what a step costs, waits included.
  trace = profiling.StepTrace(bertclf_flags.profile_steps(), os.path.join(model_dir, "train"), start_step,
                              total_steps, enabled=chief)

  # ============================================================== Loop
  window = {k: [] for k in outputs}
  window_start, window_steps = time.time(), 0
  run_start, run_start_step = time.time(), start_step
  summary_every = _summary_every(total_steps)
  last_progress = None  # time of the last progress line; None: log after the first call
  s = saved_at = start_step
  try:
    while s < total_steps and not (stop and preemption is None):
      n = _steps_until_next_event(s, total_steps, steps_per_epoch)
      with trace.call(s, n):
        out = {k: v.numpy() for k, v in train_loop(train_iter, tf.constant(n)).items()}
      if (bad := checkpointing.first_bad_step(out, s, FLAGS.loss_upper_bound, ctx.scaled)) is not None:
        s = saved_at = recover_or_stop(out, s, n, bad)  # nothing from this call is logged or saved
        window, window_start, window_steps = {k: [] for k in outputs}, time.time(), 0
        continue
      s += n
      for k in outputs:
        window[k].extend(out[k].tolist())
      window_steps += n

      summary_due = s % summary_every == 0 or s == total_steps
      log_due = s % FLAGS.log_every_steps == 0 or s == total_steps
      progress_due = log_due or last_progress is None or time.time() - last_progress >= PROGRESS_EVERY_SECS
      if summary_due or progress_due:
        elapsed = time.time() - window_start
        scalars = {k: float(np.mean(window[k])) for k in outputs if k != "correct"}
        scalars.update(accuracy=float(np.sum(window["correct"]) / (G * window_steps)),
                       learning_rate=float(optim.applied_learning_rate(optimizer)),
                       steps_per_sec=window_steps / elapsed, examples_per_sec=G * window_steps / elapsed)
        if ctx.scaled:
          scalars["loss_scale"] = float(optimizer.loss_scale)
        if summary_due:
          summaries.write_scalars(train_writer, s, scalars)
        if progress_due:
          last_progress = time.time()
          rate = (s - run_start_step) / (last_progress - run_start)
          logging.info("step %d/%d epoch %.2f loss %.4f accuracy %.4f lr %.3g grad_norm %.3g %.1f ex/s ETA %s%s",
                       s, total_steps, s / steps_per_epoch, scalars["loss"], scalars["accuracy"],
                       scalars["learning_rate"], scalars["grad_norm"], scalars["examples_per_sec"],
                       _eta(total_steps - s, rate), "".join(f" {k} {scalars[k]:.4g}" for k in step_def.extras))
        if summary_due or log_due:  # only at set steps, so a rerun writes the same TensorBoard values
          window = {k: [] for k in window}
          window_start, window_steps = time.time(), 0

      if (FLAGS.eval_every_steps and s % FLAGS.eval_every_steps == 0) or s % steps_per_epoch == 0 or \
          s == total_steps:
        validate()
      if s % FLAGS.checkpoint_every_steps == 0 or s == total_steps:
        save(s)
        saved_at = s
      if preemption:
        preemption.save_checkpoint_if_preempted()  # all workers agree on a step, save it, raise Preempted
  except checkpointing.Preempted:
    stop.signals = stop.signals or [signal.SIGTERM]  # a peer was stopped: this worker stops the same way
    saved_at = s
  except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
          tf.errors.AbortedError) as e:
    if checkpointing.num_workers(strategy) == 1:
      raise
    raise SystemExit(f"error: a worker was lost near step {s} ({type(e).__name__}). Run the same command again "
                     f"on every host: training resumes from {tf.train.latest_checkpoint(model_dir)}.") from None
  finally:
    stop.restore()
    trace.stop(s)  # a trace still running when the loop ended early
  if saved_at != s:  # stopped by a signal between saves
    save(s)
  if stop:
    logging.warning("Stopped by signal %d at step %d; checkpoint %s saved. Run the same command again%s to "
                    "continue.", stop.signals[0], s, manager.latest_checkpoint,
                    " on every host" if preemption else "")
    raise SystemExit(128 + stop.signals[0])

  # ============================================================== Export: raw strings → probabilities
  if FLAGS.export and chief:
    weights_for_eval.assign_to_model()  # the export holds the --weights_for_eval weights (best/ holds them too)
    if FLAGS.export_weights == "final":
      logging.info("Exporting the --weights_for_eval=%s weights of the last step %d (--export_weights=final).",
                   FLAGS.weights_for_eval, s)
    elif best_manager.latest_checkpoint:
      tf.train.Checkpoint(model=model).restore(best_manager.latest_checkpoint).expect_partial()
      logging.info("Exporting the best checkpoint %s (validation accuracy %.4f).",
                   best_manager.latest_checkpoint, best_val.numpy()[0])
    export_lib.export(os.path.join(model_dir, "export"), preprocess=preprocess(), model=model,
                      probabilities_fn=loss_def.probabilities, class_names=prepared.class_names,
                      seq_length=FLAGS.seq_length)
  logging.info("Done: %d steps; model dir %s", s, model_dir)


def _finished(model_dir, s, total_steps):
  """Logs that the run is finished; True when there is nothing left to do, False when its export is missing and
  --export asks for it (then the export block writes it from the best checkpoint)."""
  export_dir = os.path.join(model_dir, "export")
  exported = tf.io.gfile.exists(os.path.join(export_dir, "saved_model.pb"))
  if FLAGS.export and not exported:
    logging.info("The run in %s is already finished at step %d of %d; its export %s is missing: writing it.",
                 model_dir, s, total_steps, export_dir)
    return False
  logging.info("The run in %s is already finished at step %d of %d; %s Nothing to do.", model_dir, s, total_steps,
               f"its export is {export_dir}." if exported else "it has no export (--export writes one).")
  return True


def _steps_until_next_event(s, total_steps, steps_per_epoch):
  """Steps to run in the next call: up to --steps_per_loop, stopping at the next log/eval/save/epoch end."""
  every = [FLAGS.log_every_steps, _summary_every(total_steps), FLAGS.checkpoint_every_steps, steps_per_epoch]
  if FLAGS.eval_every_steps:
    every.append(FLAGS.eval_every_steps)
  next_event = min([total_steps] + [(s // k + 1) * k for k in every])
  return min(FLAGS.steps_per_loop, next_event - s)


def _summary_every(total_steps):
  """Steps between TensorBoard train points: --summary_every_steps; left at its default, fewer in a short run, so
  that it draws a curve of about 10 points rather than one."""
  if FLAGS["summary_every_steps"].present:  # a cadence asked for (e.g. benchmarks/throughput.py's windows)
    return FLAGS.summary_every_steps
  return max(1, min(FLAGS.summary_every_steps, total_steps // 10))


def _eta(steps_left, steps_per_sec):
  seconds = int(steps_left / max(steps_per_sec, 1e-9))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _hparam_keys():
  return ("encoder", "seq_length", "batch_size", "learning_rate", "epochs", "dtype", "optimizer", "head", "loss",
          "dropout", "warmup_fraction", "seed", "num_replicas")


if __name__ == "__main__":
  bertclf_flags.define_flags()
  errors.run(main)
