"""TensorBoard HParams of a sweep: `tensorboard --logdir=<sweep_dir>/hparams` lists every finished run.

Each run is one session (<sweep_dir>/hparams/<config>/seed_<s>) whose hyperparameters are the configuration
name, the seed and every train.py flag whose value differs between the sweep's configurations (read from the
runs' config.json), and whose metrics are eval.py's accuracy, macro F1 and loss on the scored split (copied
from eval_<split>.json). The experiment (hp.hparams_config, at the root) declares those hyperparameters and
metrics. The folder is its own logdir because train.py writes HParams of its own into every run's train/
folder; pointing TensorBoard at the whole sweep would list each run twice.

Written with tensorboard's protos and record writer only, so the sweep process never loads TensorFlow.
"""
import json
import os
import shutil
import socket
import time

from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.summary.writer.record_writer import RecordWriter

METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("loss", "loss"))
# config.json keys that are bookkeeping, not hyperparameters, even when they differ between configurations.
_NOT_HPARAMS = {"model_dir", "seed", "data_source", "encoder_config", "class_names", "strategy_class"}


def write(sweep_dir, runs, split):
  """Rewrites <sweep_dir>/hparams from the finished runs [(config name, seed, run_dir)]; returns its path."""
  out = os.path.join(sweep_dir, "hparams")
  if os.path.isdir(out):
    shutil.rmtree(out)  # the folder holds only what this function writes: rebuilt from the runs each time
  rows = []
  for config, seed, run_dir in runs:
    result, run_config = _read(os.path.join(run_dir, f"eval_{split}.json")), _read(os.path.join(run_dir,
                                                                                            "config.json"))
    if result is not None and run_config is not None:
      rows.append((config, seed, run_config, result))
  varying = _varying_flags([(config, run_config) for config, _, run_config, _ in rows])
  configs = sorted({r[0] for r in rows})
  hparams = [hp.HParam("config", hp.Discrete(configs or [""])),
             hp.HParam("seed", hp.Discrete(sorted({r[1] for r in rows}) or [0]))]
  for name in varying:
    values = {_scalar(run_config.get(name)) for _, _, run_config, _ in rows}
    same_type = len({type(v) for v in values}) == 1
    hparams.append(hp.HParam(name, hp.Discrete(sorted(values)) if same_type else None))
  metrics = [hp.Metric(f"{split}_{key}", display_name=f"{split} {label}") for key, label in METRICS]
  _write_events(out, [(0, hp.hparams_config_pb(hparams, metrics))])
  for config, seed, run_config, result in rows:
    values = {"config": config, "seed": seed, **{k: _scalar(run_config.get(k)) for k in varying}}
    step = result.get("step") or 0
    events = [(0, hp.hparams_pb(values, trial_id=f"{config}/seed_{seed}"))]
    events += [(step, _scalar_pb(f"{split}_{key}", result[key])) for key, _ in METRICS if key in result]
    events.append((step, _session_end_pb()))
    _write_events(os.path.join(out, config, f"seed_{seed}"), events)
  return out


def _varying_flags(config_rows):
  """Keys of config.json with scalar values that differ between configurations (seeds aside), sorted."""
  by_config = {}
  for config, run_config in config_rows:
    by_config.setdefault(config, run_config)
  if len(by_config) < 2:
    return []
  keys = set().union(*(c.keys() for c in by_config.values())) - _NOT_HPARAMS
  return sorted(k for k in keys
                if len({json.dumps(c.get(k), sort_keys=True) for c in by_config.values()}) > 1 and
                all(isinstance(c.get(k), (bool, int, float, str, type(None))) for c in by_config.values()))


def _scalar(value):
  return value if isinstance(value, (bool, int, float, str)) else str(value)


def _scalar_pb(tag, value):
  return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])


def _session_end_pb():
  """What tensorboard.plugins.hparams.summary.session_end_pb writes (that module needs TensorFlow)."""
  data = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(
      status=api_pb2.STATUS_SUCCESS, end_time_secs=time.time()))
  return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
      tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data),
      tensor=metadata.NULL_TENSOR)])


def _write_events(logdir, summaries):
  """One event file of [(step, Summary)], written as tensorboard's EventFileWriter does (which loads
  TensorFlow for its file system; plain files do here)."""
  os.makedirs(logdir, exist_ok=True)
  path = os.path.join(logdir, f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.sweep")
  with open(path, "wb") as f:
    writer = RecordWriter(f)
    writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for step, summary in summaries:
      writer.write(event_pb2.Event(wall_time=time.time(), step=step, summary=summary).SerializeToString())
  return path


def _read(path):
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)
