"""Seed sweeps: configurations x seeds, each a normal train.py + eval.py run in <sweep_dir>/<config>/seed_<s>/.

What sweep.py builds on: the run plan (`parse_config`, `expand_grid`, `plan`), each run's state file (what it
ran, whether it trained and was scored), the GPU partition (`visible_gpus`, `partition`) and the `Scheduler`
that runs the jobs' commands as subprocesses, one job per slot (a group of GPUs, or the one CPU slot).
Nothing here imports TensorFlow: the children do the work.
"""
import dataclasses
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # train.py, eval.py
PLAN_FILE = "sweep.json"  # <sweep_dir>/sweep.json: the configurations, seeds and split
STATE_FILE = "sweep_run.json"  # <run_dir>/sweep_run.json: what the run ran and how far it got
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")
_SWEEP_SETS = ("seed", "model_dir")  # flags the sweep sets itself, per run


@dataclasses.dataclass
class Config:
  name: str
  args: list  # train.py flags, in order (a later flag wins, as on train.py's command line)


@dataclasses.dataclass
class Run:
  config: str
  seed: int
  run_dir: str
  train_args: list  # train.py's flags (without the script)
  eval_args: list  # eval.py's flags

  @property
  def name(self):
    return f"{self.config}/seed_{self.seed}"

  @property
  def predictions_file(self):
    return _flag_value(self.eval_args, "predictions_output")

  @property
  def split(self):
    return _flag_value(self.eval_args, "split")


def parse_config(spec):
  """One --config: 'NAME: --flag=value ...' (shell quoting), or a flagfile path, named after the file."""
  name, sep, rest = spec.partition(":")
  if sep and _NAME.match(name.strip()):
    args = shlex.split(rest)
    name = name.strip()
  elif spec.strip().endswith(".cfg") and not sep:
    path = spec.strip()
    name, args = os.path.splitext(os.path.basename(path))[0], [f"--flagfile={path}"]
  else:
    raise ValueError(f"--config={spec!r}: expected 'NAME: --flag=value ...' (NAME of letters, digits, _.=+-) "
                     "or the path of a flagfile ending in .cfg.")
  _check_args(args, f"--config={spec!r}")
  return Config(name, args)


def expand_grid(configs, grid_specs):
  """Each config crossed with every combination of the --grid values ('flag=v1,v2'): 'NAME.flag=v' runs."""
  axes = []
  for spec in grid_specs:
    flag, sep, values = spec.partition("=")
    flag = flag.strip().lstrip("-")
    values = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not flag or not values:
      raise ValueError(f"--grid={spec!r}: expected 'flag=value1,value2,...', e.g. learning_rate=5e-5,1e-4.")
    if flag in _SWEEP_SETS:
      raise ValueError(f"--grid={spec!r}: the sweep sets --{flag} itself (use --seeds for seeds).")
    axes.append([(flag, v) for v in values])
  if not axes:
    return list(configs)
  out = []
  for config in configs:
    for combo in itertools.product(*axes):
      name = config.name + "".join(f".{flag}={value}" for flag, value in combo)
      out.append(Config(name, config.args + [f"--{flag}={value}" for flag, value in combo]))
  return out


def plan(sweep_dir, configs, seeds, train_args, split):
  """Runs in seed-major order (every config's seed 0 first), so a partial sweep is already paired."""
  names = [c.name for c in configs]
  if len(set(names)) != len(names):
    raise ValueError(f"Configuration names repeat: {names}; give each --config its own NAME.")
  if not configs or not seeds:
    raise ValueError("A sweep needs at least one --config and one seed in --seeds.")
  _check_args(train_args, "--train_args")
  common = {_flag_name(a) for a in train_args if a.startswith("-")} - {"flagfile"}
  for config in configs:
    both = sorted(common & {_flag_name(a) for a in config.args if a.startswith("-")})
    if both:
      raise ValueError(f"--{', --'.join(both)} set both in --train_args and in config {config.name}: keep one.")
  runs = []
  for seed, config in itertools.product(seeds, configs):
    run_dir = os.path.join(sweep_dir, config.name, f"seed_{seed}")
    # --train_args after the config's flags: they override a preset's values (e.g. fewer steps for every run).
    runs.append(Run(config.name, int(seed), run_dir,
                    train_args=config.args + list(train_args) + [f"--seed={seed}", f"--model_dir={run_dir}"],
                    eval_args=[f"--model_dir={run_dir}", f"--split={split}", "--plots=false",
                               f"--predictions_output={os.path.join(run_dir, f'predictions_{split}.jsonl')}"]))
  return runs


def check_plan(runs):
  """Raises ValueError when a run folder already holds a run made with other flags (resuming it would mix two
  configurations in one checkpoint)."""
  clashes = []
  for run in runs:
    state = read_state(run.run_dir)
    if state and (state["train_args"], state["eval_args"]) != (run.train_args, run.eval_args):
      clashes.append(f"  {run.run_dir}: made with train.py {shlex.join(state['train_args'])} and eval.py "
                     f"{shlex.join(state['eval_args'])}")
  if clashes:
    raise ValueError("These run folders were made with other flags:\n" + "\n".join(clashes) + "\nUse a new "
                     "--sweep_dir or configuration NAME, or delete those folders to run them again.")


def write_plan(sweep_dir, configs, seeds, train_args, split):
  """<sweep_dir>/sweep.json: configurations in order (earlier ones first, then new ones), seeds, split."""
  old = read_plan(sweep_dir) or {"configs": [], "seeds": [], "split": split}
  if old["split"] != split:
    raise ValueError(f"{sweep_dir} scores the {old['split']} split (its {PLAN_FILE}); pass --split={old['split']}, "
                     "or use a new --sweep_dir for another split.")
  known = {c["name"] for c in old["configs"]}
  plan_dict = {"configs": old["configs"] + [{"name": c.name, "args": c.args} for c in configs
                                             if c.name not in known],
               "seeds": sorted(set(old["seeds"]) | {int(s) for s in seeds}),
               "train_args": list(train_args), "split": split}
  _write_json(os.path.join(sweep_dir, PLAN_FILE), plan_dict)
  return plan_dict


def read_plan(sweep_dir):
  return _read_json(os.path.join(sweep_dir, PLAN_FILE))


def finished_runs(sweep_dir):
  """[(config, seed, run_dir)] of the runs in <sweep_dir> that eval.py has scored, in the plan's order."""
  plan_dict = read_plan(sweep_dir)
  if plan_dict is None:
    raise ValueError(f"{sweep_dir} has no {PLAN_FILE}: it is not a sweep.py folder. Pass the --sweep_dir "
                     "sweep.py ran with.")
  out = []
  for config in plan_dict["configs"]:
    for seed in plan_dict["seeds"]:
      run_dir = os.path.join(sweep_dir, config["name"], f"seed_{seed}")
      if (read_state(run_dir) or {}).get("finished"):
        out.append((config["name"], seed, run_dir))
  return out


def read_state(run_dir):
  return _read_json(os.path.join(run_dir, STATE_FILE))


def update_state(run, **changes):
  """Merges `changes` into the run's state file (created on first use) and returns the new state."""
  state = read_state(run.run_dir) or {"config": run.config, "seed": run.seed, "train_args": run.train_args,
                                      "eval_args": run.eval_args, "trained": False, "finished": False,
                                      "train_attempts": 0, "train_seconds": 0.0, "eval_seconds": 0.0}
  state.update(changes)
  _write_json(os.path.join(run.run_dir, STATE_FILE), state)
  return state


def visible_gpus(value, environ=None, query=None):
  """GPU ids to share out: --gpus as given ('0,1,2'), none for '' or 'none', and for 'auto'
  CUDA_VISIBLE_DEVICES when set, else what `nvidia-smi` lists (none without it). query: () → nvidia-smi's
  output, for tests."""
  environ = os.environ if environ is None else environ
  if value == "auto":
    if "CUDA_VISIBLE_DEVICES" in environ:
      value = environ["CUDA_VISIBLE_DEVICES"]
    else:
      value = ",".join((query or _nvidia_smi)().split())
  if value.strip().lower() in ("", "none", "cpu", "-1"):
    return []
  return [g.strip() for g in value.split(",") if g.strip()]


def partition(gpus, per_run):
  """Slots of per_run GPUs each, as CUDA_VISIBLE_DEVICES values: ['0,1', '2,3']; [None] (one CPU slot) without
  GPUs. GPUs left over (5 GPUs, 2 per run) stay idle; the caller says so."""
  if not gpus:
    return [None]
  if per_run < 1 or per_run > len(gpus):
    raise ValueError(f"--gpus_per_run={per_run} with {len(gpus)} GPUs ({','.join(gpus)}): pick 1 to {len(gpus)}.")
  return [",".join(gpus[i:i + per_run]) for i in range(0, len(gpus) - per_run + 1, per_run)]


def jobs_for(runs):
  """(jobs to run, names of finished runs): train + eval, or only eval when train.py already finished."""
  jobs, finished = [], []
  for run in runs:
    state = read_state(run.run_dir) or {}
    if state.get("finished"):
      finished.append(run.name)
      continue
    train_log = os.path.join(run.run_dir, "train.log")
    stages = [] if state.get("trained") else [("train", python_argv("train.py", run.train_args), train_log)]
    stages.append(("eval", python_argv("eval.py", run.eval_args), os.path.join(run.run_dir, "eval.log")))
    jobs.append(Job(run.name, stages, progress_log=train_log))
  return jobs, finished


@dataclasses.dataclass
class Job:
  """Commands run one after another in one slot; the job stops at the first that fails."""
  name: str
  stages: list  # [(stage name, argv, log path)]
  progress_log: str | None = None  # a log whose last 'step X/Y' shows how far the job is


class Scheduler:
  """Runs jobs on slots, one job per slot at a time; a failed job does not stop the others.

  on_stage_end(job, stage, returncode, seconds) is called after every command. A failed command is started
  again up to `retries` times (train.py continues from its last checkpoint). SIGTERM or SIGINT stops the
  scheduler: the running commands get SIGTERM (train.py saves a checkpoint and exits 143), no new job starts.
  """

  def __init__(self, slots, on_stage_end, log=print, progress_every_secs=30.0, poll_secs=0.2, retries=0):
    self.slots, self.on_stage_end, self.log, self.retries = list(slots), on_stage_end, log, retries
    self.progress_every_secs, self.poll_secs = progress_every_secs, poll_secs
    self.stop_signal = None
    self._running = {}  # slot → [job, stage index, Popen, stage start, job start]

  def run(self, jobs):
    """Runs every job; returns {job name: 'finished' | 'failed: <stage> exit <code>' | 'not started'}."""
    waiting, results, durations, attempts = list(jobs), {}, [], {}
    running = self._running = {}
    free = list(range(len(self.slots)))
    start = last_progress = time.time()
    handlers = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
      while running or (waiting and self.stop_signal is None):
        while waiting and free and self.stop_signal is None:
          slot = free.pop(0)
          job = waiting.pop(0)
          running[slot] = self._start(job, 0, slot) + [time.time()]
        time.sleep(self.poll_secs)
        for slot, (job, index, proc, stage_start, job_start) in list(running.items()):
          code = proc.poll()
          if code is None:
            continue
          stage, _, log_path = job.stages[index]
          seconds = time.time() - stage_start
          self.on_stage_end(job, stage, code, seconds)
          if code == 0 and index + 1 < len(job.stages) and self.stop_signal is None:
            running[slot] = self._start(job, index + 1, slot) + [job_start]
            continue
          if code != 0 and self.stop_signal is None and attempts.get((job.name, index), 0) < self.retries:
            attempts[(job.name, index)] = attempts.get((job.name, index), 0) + 1
            self.log(f"[sweep] {job.name} {stage}: exit {code}; starting it again (retry "
                     f"{attempts[(job.name, index)]} of {self.retries}); log {log_path}")
            running[slot] = self._start(job, index, slot) + [job_start]
            continue
          del running[slot]
          free.append(slot)
          if code == 0 and index + 1 == len(job.stages):
            results[job.name] = "finished"
            durations.append(time.time() - job_start)
          elif code == 0:
            results[job.name] = f"stopped before {job.stages[index + 1][0]}"
          else:
            results[job.name] = f"failed: {stage} exit {code}"
            self.log(f"[sweep] FAILED {job.name} {stage}: exit {code}{_explain(code)}; log {log_path}:\n"
                     + _tail(log_path, 12))
        if time.time() - last_progress >= self.progress_every_secs and running:
          last_progress = time.time()
          self.log(self._progress(start, results, running, waiting, durations))
    finally:
      for sig, handler in handlers.items():
        signal.signal(sig, handler)
    for job in waiting:
      results[job.name] = "not started"
    return results

  def _start(self, job, index, slot):
    stage, argv, log_path = job.stages[index]
    env = dict(os.environ)
    if self.slots[slot] is not None:
      env["CUDA_VISIBLE_DEVICES"] = self.slots[slot]
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log_file:
      log_file.write(f"\n===== sweep.py {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(argv)}\n")
      log_file.flush()
      proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    where = f"GPU {self.slots[slot]}" if self.slots[slot] is not None else "CPU"
    self.log(f"[sweep] start {job.name} {stage} on {where} (pid {proc.pid}); log {log_path}")
    return [job, index, proc, time.time()]

  def _stop(self, signum, _):
    if self.stop_signal is None:
      self.log(f"[sweep] signal {signum}: stopping the running runs (train.py saves a checkpoint); starting no "
               "new ones. Run the same command again to continue.")
    self.stop_signal = signum
    for _, _, proc, *_ in list(self._running.values()):
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)

  def _progress(self, start, results, running, waiting, durations):
    done = sum(r == "finished" for r in results.values())
    failed = len(results) - done
    now = time.time()
    parts = []
    for job, index, _, _, _ in running.values():
      stage = job.stages[index][0]
      step = _last_step(job.progress_log) if stage == "train" and job.progress_log else None
      parts.append(f"{job.name} {stage}" + (f" step {step}" if step else ""))
    if durations:
      mean = sum(durations) / len(durations)
      left = mean * len(waiting) + sum(max(mean - (now - r[4]), 0.0) for r in running.values())
      eta = _clock(left / len(self.slots))
    else:
      eta = "after the first run"
    return (f"[sweep {_clock(now - start)}] {done} done, {failed} failed, {len(running)} running"
            f"{' (' + '; '.join(parts) + ')' if parts else ''}, {len(waiting)} waiting; ETA {eta}")


def _explain(code):
  if code in (128 + signal.SIGTERM, 128 + signal.SIGINT):
    return " (stopped by a signal after saving a checkpoint: run sweep.py again to continue it)"
  if code < 0:
    return f" (killed by signal {-code}: run sweep.py again to continue from the last saved checkpoint)"
  return ""


def _tail(path, lines):
  try:
    with open(path, "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 8192))
      text = f.read().decode("utf-8", "replace")
  except OSError:
    return "    (no log)"
  return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _last_step(path):
  """'120/500' from the last 'step 120/500' line train.py logged, or None."""
  found = re.findall(r"step (\d+/\d+)", _tail(path, 40))
  return found[-1] if found else None


def _clock(seconds):
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _nvidia_smi():
  if not shutil.which("nvidia-smi"):
    return ""
  try:
    return subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                          text=True, timeout=30, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return ""


def _check_args(args, what):
  for arg in args:
    if arg.startswith("-") and _flag_name(arg) in _SWEEP_SETS:
      raise ValueError(f"{what}: {arg} is set by the sweep for each run (--seeds, --sweep_dir); remove it.")
    if arg.startswith("--flagfile=") and not os.path.exists(arg.split("=", 1)[1]):
      raise ValueError(f"{what}: {arg}: no such file (flagfile paths are relative to the current folder).")


def _flag_name(arg):
  """The flag an argument sets: '--dropout=0.1' → 'dropout'."""
  return arg.lstrip("-").split("=", 1)[0]


def _flag_value(args, name):
  values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
  return values[-1] if values else None


def _read_json(path):
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _write_json(path, value):
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)
  os.replace(path + ".tmp", path)  # a crash never leaves half a state file


def python_argv(script, args):
  """The command of train.py or eval.py with these flags, run by this Python."""
  return [sys.executable, os.path.join(ROOT, script)] + list(args)
