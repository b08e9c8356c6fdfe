"""Runs configurations x seeds, each as a normal train.py + eval.py run in <sweep_dir>/<config>/seed_<s>/.

  python sweep.py --sweep_dir=runs/sweep_demo --seeds=0,1,2,3,4 \
      --config="demo: --flagfile=flags/demo.cfg" \
      --config="rdrop: --flagfile=flags/demo.cfg --step=rdrop --rdrop_alpha=1.0"
  python compare.py --sweep_dir=runs/sweep_demo --baseline=demo     # the comparison (docs/SWEEPS.md)

Run the same command again to go on: finished runs (scored by eval.py) are skipped, interrupted ones continue
from their last checkpoint (train.py resumes in the same --model_dir). With GPUs, one run per GPU (or per
--gpus_per_run GPUs) at once, each seeing only its own through CUDA_VISIBLE_DEVICES; without, one at a time.
A failed run is reported with the end of its log and the others go on; the exit status is 1 if any failed.
"""
import json
import os
import shlex
import sys

from absl import app
from absl import flags

from bertclf.tools import sweep_hparams
from bertclf.tools import sweeps

FLAGS = flags.FLAGS


def define_sweep_flags():
  flags.DEFINE_string("sweep_dir", "runs/sweep", "Every run goes in <sweep_dir>/<config>/seed_<s>/.")
  flags.DEFINE_multi_string(
      "config", None, "A configuration (repeat the flag): 'NAME: --flag=value ...', train.py flags after the "
      "colon, or the path of a flagfile (named after the file). The sweep adds --seed and --model_dir.")
  flags.DEFINE_multi_string("grid", [], "'flag=v1,v2,...' (repeat for more flags): each --config is run with "
                            "every combination of these values, named NAME.flag=value.")
  flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "train.py --seed of each run; every config gets all of "
                    "them, so configs are compared seed by seed.")
  flags.DEFINE_string("train_args", "", "train.py flags for every config, after its own so they override a "
                      "preset (shell quoting), e.g. '--train_steps=200'.")
  flags.DEFINE_enum("split", "test", ["validation", "test"], "The split eval.py scores (at the final checkpoint) "
                    "and writes per-example predictions of.")
  flags.DEFINE_string("gpus", "auto", "GPU ids to share out, e.g. 0,1,2,3: 'auto' takes CUDA_VISIBLE_DEVICES, "
                      "else nvidia-smi's list; 'none' runs one run at a time on the CPU.")
  flags.DEFINE_integer("gpus_per_run", 1, "GPUs each run gets (train.py mirrors over them).", lower_bound=1)
  flags.DEFINE_integer("retries", 0, "Start a failed train.py or eval.py again up to this many times (train.py "
                       "continues from its last checkpoint): for runs killed from outside, e.g. by the OOM "
                       "killer or a preempted host.", lower_bound=0)
  flags.DEFINE_float("progress_every_secs", 30.0, "A progress line with the ETA every this many seconds.")
  flags.DEFINE_bool("dry_run", False, "Print each run's train.py and eval.py commands and stop.")
  flags.register_validator("seeds", lambda v: bool(v) and all(s.lstrip("-").isdigit() for s in v) and
                           len(set(v)) == len(v), message="--seeds must be distinct integers, e.g. 0,1,2,3,4.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}: train.py flags go inside --config or --train_args.")
  if not FLAGS.config:
    raise app.UsageError("Give at least one --config, e.g. --config=\"base: --flagfile=flags/tiny.cfg\".")
  configs = sweeps.expand_grid([sweeps.parse_config(c) for c in FLAGS.config], FLAGS.grid)
  seeds = [int(s) for s in FLAGS.seeds]
  train_args = shlex.split(FLAGS.train_args)
  runs = sweeps.plan(FLAGS.sweep_dir, configs, seeds, train_args, FLAGS.split)
  if FLAGS.dry_run:
    for run in runs:
      _say(f"{run.name}:\n  {shlex.join(sweeps.python_argv('train.py', run.train_args))}\n"
           f"  {shlex.join(sweeps.python_argv('eval.py', run.eval_args))}")
    return
  sweeps.check_plan(runs)
  sweeps.write_plan(FLAGS.sweep_dir, configs, seeds, train_args, FLAGS.split)

  gpus = sweeps.visible_gpus(FLAGS.gpus)
  slots = sweeps.partition(gpus, FLAGS.gpus_per_run)
  if gpus and len(slots) * FLAGS.gpus_per_run < len(gpus):
    _say(f"[sweep] {len(gpus) - len(slots) * FLAGS.gpus_per_run} of {len(gpus)} GPUs stay idle: "
         f"--gpus_per_run={FLAGS.gpus_per_run} does not divide them.")
  jobs, skipped = sweeps.jobs_for(runs)
  by_name = {run.name: run for run in runs}
  where = f"{len(slots)} at a time on GPUs {', '.join(slots)}" if gpus else "one at a time on the CPU"
  _say(f"[sweep] {FLAGS.sweep_dir}: {len(configs)} configs x {len(seeds)} seeds = {len(runs)} runs; "
       f"{len(skipped)} finished already, {len(jobs)} to run, {where}.")
  for name in skipped:
    _say(f"[sweep] skip {name}: finished ({os.path.join(by_name[name].run_dir, sweeps.STATE_FILE)})")

  def on_stage_end(job, stage, code, seconds):
    run = by_name[job.name]
    state = sweeps.read_state(run.run_dir) or {}
    if stage == "train":
      state = sweeps.update_state(run, train_attempts=state.get("train_attempts", 0) + 1,
                                  train_seconds=state.get("train_seconds", 0.0) + seconds, trained=code == 0)
    else:
      state = sweeps.update_state(run, eval_seconds=state.get("eval_seconds", 0.0) + seconds, finished=code == 0)
    if code == 0:
      _say(f"[sweep] {job.name} {stage} finished in {seconds:.0f} s")
    if state["finished"]:
      result = _read_result(run)
      _say(f"[sweep] done {job.name}: {FLAGS.split} accuracy {result['accuracy']:.4f} macro F1 "
           f"{result['macro_f1']:.4f} loss {result['loss']:.4f} (train {state['train_seconds']:.0f} s, eval "
            f"{state['eval_seconds']:.0f} s)")
      sweep_hparams.write(FLAGS.sweep_dir, sweeps.finished_runs(FLAGS.sweep_dir), FLAGS.split)

  scheduler = sweeps.Scheduler(slots, on_stage_end, log=_say, progress_every_secs=FLAGS.progress_every_secs,
                               retries=FLAGS.retries)
  results = scheduler.run(jobs)
  sweep_hparams.write(FLAGS.sweep_dir, sweeps.finished_runs(FLAGS.sweep_dir), FLAGS.split)
  finished = len(skipped) + sum(r == "finished" for r in results.values())
  problems = {name: r for name, r in results.items() if r != "finished"}
  _say(f"[sweep] {finished} of {len(runs)} runs finished." +
       "".join(f"\n  {name}: {r}" for name, r in problems.items()))
  _say(f"[sweep] compare: python compare.py --sweep_dir={FLAGS.sweep_dir} --baseline={configs[0].name}\n"
       f"[sweep] HParams: tensorboard --logdir={os.path.join(FLAGS.sweep_dir, 'hparams')}")
  if scheduler.stop_signal is not None:
    sys.exit(128 + scheduler.stop_signal)
  if problems:
    sys.exit(1)


def _say(line):
  print(line, flush=True)  # flushed: a pipe or log file shows each line as it happens


def _read_result(run):
  with open(os.path.join(run.run_dir, f"eval_{run.split}.json"), encoding="utf-8") as f:
    return json.load(f)


if __name__ == "__main__":
  define_sweep_flags()
  app.run(main)
