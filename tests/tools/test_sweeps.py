"""The sweep's plan, GPU partition and scheduler, with fake GPU lists and small Python commands (no TensorFlow)."""
import json
import os
import signal
import sys
import threading
import time

import pytest

from bertclf.tools import sweeps


def test_parse_config_names_and_flags(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "variant_x.cfg").write_text("--dropout=0.2\n")
  c = sweeps.parse_config("rdrop: --step=rdrop --rdrop_alpha=1.0 --text_column='a b'")
  assert c.name == "rdrop" and c.args == ["--step=rdrop", "--rdrop_alpha=1.0", "--text_column=a b"]
  c = sweeps.parse_config("variant_x.cfg")
  assert c.name == "variant_x" and c.args == ["--flagfile=variant_x.cfg"]
  with pytest.raises(ValueError, match="expected 'NAME: --flag=value"):
    sweeps.parse_config("--step=rdrop")
  with pytest.raises(ValueError, match="--seed=3 is set by the sweep"):
    sweeps.parse_config("a: --seed=3")
  with pytest.raises(ValueError, match="missing.cfg: no such file"):
    sweeps.parse_config("a: --flagfile=missing.cfg")


def test_grid_crosses_each_config_with_every_combination():
  configs = sweeps.expand_grid([sweeps.Config("base", ["--x=1"])],
                               ["learning_rate=1e-4,5e-5", "--dropout=0.1,0.2"])
  assert [c.name for c in configs] == ["base.learning_rate=1e-4.dropout=0.1", "base.learning_rate=1e-4.dropout=0.2",
                                       "base.learning_rate=5e-5.dropout=0.1", "base.learning_rate=5e-5.dropout=0.2"]
  assert configs[1].args == ["--x=1", "--learning_rate=1e-4", "--dropout=0.2"]
  with pytest.raises(ValueError, match="expected 'flag=value1,value2"):
    sweeps.expand_grid(configs, ["learning_rate"])
  with pytest.raises(ValueError, match="sets --seed itself"):
    sweeps.expand_grid(configs, ["seed=1,2"])


def test_plan_is_seed_major_and_sets_seed_and_model_dir_last(tmp_path):
  configs = [sweeps.Config("a", ["--dropout=0.1"]), sweeps.Config("b", ["--dropout=0.0"])]
  runs = sweeps.plan(str(tmp_path), configs, [3, 7], ["--train_steps=5"], "test")
  assert [r.name for r in runs] == ["a/seed_3", "b/seed_3", "a/seed_7", "b/seed_7"]
  run = runs[1]
  assert run.run_dir == os.path.join(str(tmp_path), "b", "seed_3")
  # --train_args after the config's own flags (they override a preset), the sweep's two last.
  assert run.train_args == ["--dropout=0.0", "--train_steps=5", "--seed=3", f"--model_dir={run.run_dir}"]
  assert run.eval_args[:3] == [f"--model_dir={run.run_dir}", "--split=test", "--plots=false"]
  assert run.predictions_file == os.path.join(run.run_dir, "predictions_test.jsonl") and run.split == "test"
  with pytest.raises(ValueError, match="names repeat"):
    sweeps.plan(str(tmp_path), configs + [configs[0]], [0], [], "test")
  with pytest.raises(ValueError, match="--dropout set both in --train_args and in config a"):
    sweeps.plan(str(tmp_path), configs, [0], ["--dropout=0.3"], "test")


def test_a_folder_made_with_other_flags_is_refused_and_a_new_split_too(tmp_path):
  runs = sweeps.plan(str(tmp_path), [sweeps.Config("a", ["--dropout=0.1"])], [0], [], "test")
  sweeps.update_state(runs[0], trained=True)
  sweeps.check_plan(runs)  # same flags: fine
  changed = sweeps.plan(str(tmp_path), [sweeps.Config("a", ["--dropout=0.2"])], [0], [], "test")
  with pytest.raises(ValueError, match=r"made with other flags:\n.*a/seed_0: made with train.py --dropout=0.1"):
    sweeps.check_plan(changed)
  sweeps.write_plan(str(tmp_path), [sweeps.Config("a", [])], [0], [], "test")
  with pytest.raises(ValueError, match="scores the test split.*--split=test"):
    sweeps.write_plan(str(tmp_path), [sweeps.Config("a", [])], [0], [], "validation")


def test_finished_runs_are_skipped_and_trained_ones_only_scored(tmp_path):
  runs = sweeps.plan(str(tmp_path), [sweeps.Config("a", []), sweeps.Config("b", []), sweeps.Config("c", [])],
                     [0], [], "test")
  sweeps.update_state(runs[0], trained=True, finished=True)
  sweeps.update_state(runs[1], trained=True)
  jobs, finished = sweeps.jobs_for(runs)
  assert finished == ["a/seed_0"]
  assert [(j.name, [s[0] for s in j.stages]) for j in jobs] == [("b/seed_0", ["eval"]), ("c/seed_0", ["train", "eval"])]
  train_argv = jobs[1].stages[0][1]
  assert train_argv[:2] == [sys.executable, os.path.join(sweeps.ROOT, "train.py")]


def test_visible_gpus_and_partition():
  assert sweeps.visible_gpus("auto", {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == ["0", "1", "2", "3"]
  assert sweeps.visible_gpus("auto", {"CUDA_VISIBLE_DEVICES": ""}) == []
  assert sweeps.visible_gpus("auto", {"CUDA_VISIBLE_DEVICES": "-1"}) == []
  assert sweeps.visible_gpus("auto", {}, query=lambda: "0\n1\n") == ["0", "1"]  # nvidia-smi's list
  assert sweeps.visible_gpus("auto", {}, query=lambda: "") == []  # no nvidia-smi: the CPU
  assert sweeps.visible_gpus("2,5", {"CUDA_VISIBLE_DEVICES": "0"}) == ["2", "5"]
  assert sweeps.visible_gpus("none", {"CUDA_VISIBLE_DEVICES": "0"}) == []
  assert sweeps.partition([], 1) == [None]
  assert sweeps.partition(["0", "1", "2", "3"], 1) == ["0", "1", "2", "3"]
  assert sweeps.partition(["0", "1", "2", "3"], 2) == ["0,1", "2,3"]
  assert sweeps.partition(["4", "5", "6"], 2) == ["4,5"]  # one GPU left idle
  with pytest.raises(ValueError, match="--gpus_per_run=3 with 2 GPUs"):
    sweeps.partition(["0", "1"], 3)


def _fake_job(tmp_path, name, seconds=0.5, exit_code=0, fail_first=False):
  """A job whose one command records its CUDA_VISIBLE_DEVICES and start/end times, then exits."""
  out = tmp_path / f"{name}.json"
  marker = tmp_path / f"{name}.failed_once"
  code = (f"import json, os, sys, time; t = time.time(); time.sleep({seconds})\n"
          f"json.dump({{'gpus': os.environ.get('CUDA_VISIBLE_DEVICES'), 'start': t, 'end': time.time()}}, "
          f"open({str(out)!r}, 'w'))\n"
          f"if {fail_first} and not os.path.exists({str(marker)!r}):\n"
          f"  open({str(marker)!r}, 'w').close(); sys.exit(143)\n"
          f"sys.exit({exit_code})\n")
  return sweeps.Job(name, [("train", [sys.executable, "-c", code], str(tmp_path / f"{name}.log"))]), out


@pytest.mark.slow
def test_scheduler_runs_one_job_per_gpu_slot_at_once(tmp_path):
  jobs, outs = zip(*[_fake_job(tmp_path, f"j{i}", seconds=1.0) for i in range(4)])
  ends, lines = [], []
  scheduler = sweeps.Scheduler(["0", "1"], lambda job, stage, code, seconds: ends.append((job.name, code)),
                               log=lines.append, poll_secs=0.05)
  t = time.time()
  results = scheduler.run(list(jobs))
  assert results == {f"j{i}": "finished" for i in range(4)}
  assert sorted(ends) == [(f"j{i}", 0) for i in range(4)]
  records = [json.loads(o.read_text()) for o in outs]
  assert sorted(r["gpus"] for r in records) == ["0", "0", "1", "1"]
  for i, a in enumerate(records):  # jobs that overlap in time never share a GPU; at most two at once
    overlapping = [b for b in records[i + 1:] if b["start"] < a["end"] and a["start"] < b["end"]]
    assert all(b["gpus"] != a["gpus"] for b in overlapping)
    assert len(overlapping) <= 1
  assert time.time() - t < 3.5  # two at a time, not four in a row (4 x 1 s)
  assert any("on GPU 1" in line for line in lines)


def test_a_failed_job_is_reported_and_the_others_run(tmp_path):
  (bad, _), (good, good_out) = _fake_job(tmp_path, "bad", 0.1, exit_code=3), _fake_job(tmp_path, "good", 0.1)
  lines = []
  results = sweeps.Scheduler([None], lambda *a: None, log=lines.append, poll_secs=0.05).run([bad, good])
  assert results == {"bad": "failed: train exit 3", "good": "finished"}
  assert good_out.exists()
  assert any(line.startswith("[sweep] FAILED bad train: exit 3") and "bad.log" in line for line in lines)


def test_a_job_killed_from_outside_is_started_again_with_retries(tmp_path):
  job, _ = _fake_job(tmp_path, "flaky", 0.1, fail_first=True)
  codes, lines = [], []
  scheduler = sweeps.Scheduler([None], lambda job, stage, code, seconds: codes.append(code), log=lines.append,
                               poll_secs=0.05, retries=1)
  assert scheduler.run([job]) == {"flaky": "finished"}
  assert codes == [143, 0]
  assert any("exit 143; starting it again (retry 1 of 1)" in line for line in lines)
  job, _ = _fake_job(tmp_path, "flaky2", 0.1, fail_first=True)  # without retries it stays failed
  assert sweeps.Scheduler([None], lambda *a: None, log=lines.append, poll_secs=0.05).run([job]) == {
      "flaky2": "failed: train exit 143"}
  assert "(stopped by a signal after saving a checkpoint: run sweep.py again to continue it)" in lines[-1]


def test_progress_line_has_an_eta_once_a_job_finished(tmp_path):
  jobs = [_fake_job(tmp_path, f"p{i}", seconds=0.4)[0] for i in range(3)]
  lines = []
  sweeps.Scheduler([None], lambda *a: None, log=lines.append, progress_every_secs=0.1, poll_secs=0.05).run(jobs)
  progress = [line for line in lines if line.startswith("[sweep 0:")]
  assert any("ETA after the first run" in line for line in progress)
  assert any(line.endswith(tuple(f"ETA 0:00:0{i}" for i in range(3))) and "1 done" in line for line in progress)


def test_sigterm_stops_the_running_job_and_starts_no_new_one(tmp_path):
  # Each fake command exits 143 on SIGTERM, as train.py does after saving its checkpoint.
  code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(143)); time.sleep(30)"
  jobs = [sweeps.Job(f"s{i}", [("train", [sys.executable, "-c", code], str(tmp_path / f"s{i}.log"))])
          for i in range(3)]
  lines, before = [], signal.getsignal(signal.SIGTERM)
  scheduler = sweeps.Scheduler([None], lambda *a: None, log=lines.append, poll_secs=0.05)
  timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))  # as Ctrl-C or a job scheduler would
  timer.start()
  t = time.time()
  results = scheduler.run(jobs)
  timer.join()
  assert time.time() - t < 10
  assert results == {"s0": "failed: train exit 143", "s1": "not started", "s2": "not started"}
  assert scheduler.stop_signal == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == before  # the scheduler's handler is gone again
