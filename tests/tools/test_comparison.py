"""compare.py's report and the sweep's HParams on a synthetic sweep folder (made-up runs with known answers)."""
import json
import os

import numpy as np
import pytest

from bertclf import stats
from bertclf.tools import comparison
from bertclf.tools import predictions
from bertclf.tools import sweep_hparams
from bertclf.tools import sweeps

N, SEEDS = 400, [0, 1, 2, 3, 4]
TEXTS = [f"text {i}" for i in range(N)]


def _write_run(sweep_dir, config, seed, labels, correct, dropout, texts=TEXTS):
  """A finished run folder as sweep.py + eval.py leave it: state, config.json, eval_test.json, predictions."""
  rng = np.random.default_rng(1000 * seed + len(config))
  run = sweeps.plan(sweep_dir, [sweeps.Config(config, [f"--dropout={dropout}"])], [seed], [], "test")[0]
  predicted = np.where(correct, labels, 1 - labels)
  probs = np.full((N, 2), 0.3)
  probs[np.arange(N), predicted] = 0.7
  probs += rng.uniform(0, 0.01, probs.shape)
  probs /= probs.sum(-1, keepdims=True)
  predictions.write(run.predictions_file, texts, labels, probs)
  nll = -np.log(probs[np.arange(N), labels])
  result = {"step": 20, "num_examples": N, "accuracy": float(np.mean(correct)),
            "macro_f1": stats.macro_f1(labels, predicted, 2), "loss": float(nll.mean())}
  with open(os.path.join(run.run_dir, "eval_test.json"), "w") as f:
    json.dump(result, f)
  with open(os.path.join(run.run_dir, "config.json"), "w") as f:
    json.dump({"dropout": dropout, "seed": seed, "model_dir": run.run_dir, "learning_rate": 5e-3}, f)
  sweeps.update_state(run, trained=True, finished=True)
  return result


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
  """base: 70% right; better: the same errors minus 40 fixed ones (+10 points on every seed); same: 70% right
  with its own errors. Seed 4 of 'same' has not finished."""
  d = str(tmp_path_factory.mktemp("sweep"))
  labels = np.random.default_rng(0).integers(0, 2, N)
  sweeps.write_plan(d, [sweeps.Config(c, []) for c in ("base", "better", "same")], SEEDS, [], "test")
  for seed in SEEDS:
    rng = np.random.default_rng(seed)
    base = np.ones(N, bool)
    base[rng.permutation(N)[:120]] = False  # 280 of 400 right
    better = base.copy()
    better[np.flatnonzero(~base)[:40]] = True  # 320 right: the base's errors, 40 fewer
    _write_run(d, "base", seed, labels, base, 0.1)
    _write_run(d, "better", seed, labels, better, 0.0)
    if seed < 4:
      same = np.ones(N, bool)
      same[rng.permutation(N)[:120]] = False
      _write_run(d, "same", seed, labels, same, 0.2)
  return d


def test_report_per_config_values_and_verdicts(sweep_dir):
  report = comparison.compare(sweep_dir, "base", resamples=2000)
  json.dumps(report)  # JSON-ready
  assert report["num_examples"] == N and report["missing_runs"] == ["same/seed_4"]
  base = report["configs"]["base"]["metrics"]["accuracy"]
  assert base["values"] == [0.7] * 5 and base["std"] == 0.0
  assert report["configs"]["same"]["seeds"] == [0, 1, 2, 3]
  better = report["paired_over_seeds"]["better"]
  assert better["accuracy"]["values"] == pytest.approx([0.1] * 5)
  assert better["accuracy"]["verdict"] == "higher (better)" and better["accuracy"]["p"] is None  # no spread
  assert better["loss"]["verdict"] == "lower (better)"
  assert report["bootstrap"]["better"]["accuracy"]["difference"] == pytest.approx(0.1)
  assert report["bootstrap"]["better"]["accuracy"]["interval"][0] > 0.05
  assert report["bootstrap"]["better"]["nll"]["verdict"] == "lower (better)"
  same = report["paired_over_seeds"]["same"]
  assert same["accuracy"]["seeds"] == [0, 1, 2, 3] and same["accuracy"]["mean"] == pytest.approx(0.0)
  assert same["accuracy"]["verdict"] == stats.NO_DIFFERENCE
  assert report["bootstrap"]["same"]["accuracy"]["verdict"] == stats.NO_DIFFERENCE
  assert report["bootstrap"]["same"]["accuracy"]["n_seeds"] == 4


def test_markdown_and_plot(sweep_dir, tmp_path):
  report = comparison.compare(sweep_dir, "base", resamples=500)
  md = comparison.to_markdown(report)
  assert "| base (baseline) | 5 | 0.7000 ± 0.0000 [0.7000, 0.7000] |" in md
  assert "| better | accuracy | 5 | +0.1000 ± 0.0000 | [0.1000, 0.1000] | – |" in md
  assert "| same | accuracy | 4 |" in md and stats.NO_DIFFERENCE in md
  assert "Not finished (left out): same/seed_4." in md
  assert "not adjusted for the 6 comparisons" in md
  png = comparison.plot(report, str(tmp_path / "c.png"))
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_name_the_problem(sweep_dir, tmp_path):
  with pytest.raises(ValueError, match="--baseline=nope is not a config.*base, better, same"):
    comparison.compare(sweep_dir, "nope")
  with pytest.raises(ValueError, match="has no sweep.json: it is not a sweep.py folder"):
    comparison.compare(str(tmp_path))
  other = str(tmp_path / "other")
  labels = np.zeros(N, int)
  sweeps.write_plan(other, [sweeps.Config("a", []), sweeps.Config("b", [])], [0], [], "test")
  _write_run(other, "a", 0, labels, np.ones(N, bool), 0.1)
  _write_run(other, "b", 0, labels, np.ones(N, bool), 0.1, texts=TEXTS[:-1] + ["another text"])
  with pytest.raises(ValueError, match=r"b/seed_0/predictions_test.jsonl and .*a/seed_0/predictions_test.jsonl "
                                       "do not score the same examples"):
    comparison.compare(other, "a", resamples=100)


def test_hparams_tab_lists_every_run_with_its_flags_and_metrics(sweep_dir):
  # Query TensorBoard's own HParams backend, as its HParams tab does.
  from tensorboard import context  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import data_provider
  from tensorboard.backend.event_processing import plugin_event_multiplexer
  from tensorboard.plugins.hparams import api_pb2
  from tensorboard.plugins.hparams import backend_context
  from tensorboard.plugins.hparams import list_session_groups

  logdir = sweep_hparams.write(sweep_dir, sweeps.finished_runs(sweep_dir), "test")
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(logdir)
  multiplexer.Reload()
  tb = type("TBContext", (), {"data_provider": data_provider.MultiplexerDataProvider(multiplexer, logdir),
                              "multiplexer": multiplexer, "logdir": logdir, "plugin_name_to_instance": {}})()
  ctx, request_context = backend_context.Context(tb), context.RequestContext()
  experiment = ctx.experiment_from_metadata(request_context, "", include_metrics=True,
                                            hparams_run_to_tag_to_content=ctx.hparams_metadata(request_context, ""),
                                            data_provider_hparams=None)
  assert sorted(h.name for h in experiment.hparam_infos) == ["config", "dropout", "seed"]  # learning_rate never varies
  assert [m.name.tag for m in experiment.metric_infos] == ["test_accuracy", "test_macro_f1", "test_loss"]
  request = api_pb2.ListSessionGroupsRequest(experiment_name="", start_index=0, slice_size=100,
                                             allowed_statuses=[api_pb2.STATUS_SUCCESS])
  groups = list_session_groups.Handler(request_context, ctx, "", request).run().session_groups
  assert sorted(g.name for g in groups) == sorted(f"{c}/seed_{s}" for c in ("base", "better", "same")
                                                  for s in SEEDS if (c, s) != ("same", 4))
  better0 = next(g for g in groups if g.name == "better/seed_0")
  assert better0.hparams["config"].string_value == "better" and better0.hparams["dropout"].number_value == 0.0
  values = {m.name.tag: m.value for m in better0.metric_values}
  with open(os.path.join(sweep_dir, "better", "seed_0", "eval_test.json")) as f:
    result = json.load(f)
  assert values == pytest.approx({f"test_{k}": result[k] for k in ("accuracy", "macro_f1", "loss")})
