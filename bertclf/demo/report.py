"""Prints the summary of a finished run: test metrics beside the baselines, and where everything is.

  python -m bertclf.demo.report --model_dir=runs/demo
"""
import json
import os

from absl import app
from absl import flags


def _read(path):
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def summary(model_dir, split="test"):
  """The summary as text; raises FileNotFoundError naming what is missing."""
  result = _read(os.path.join(model_dir, f"eval_{split}.json"))
  if result is None:
    raise FileNotFoundError(f"{model_dir}/eval_{split}.json is missing: run eval.py --model_dir={model_dir} "
                            f"--split={split} first.")
  baselines = _read(os.path.join(model_dir, "baselines.json")) or {}
  rows = [(name, b["accuracy"], b["macro_f1"]) for name, b in baselines.get("results", baselines).items()
          if isinstance(b, dict) and "macro_f1" in b]
  encoder = os.path.normpath(str(result.get("encoder") or "encoder"))
  if os.path.basename(encoder) == "encoder":  # <export>/encoder: name it by its folder
    encoder = os.path.dirname(encoder) or encoder
  rows.append((f"fine-tuned {encoder} (step {result['step']})", result["accuracy"], result["macro_f1"]))
  lines = [f"{split} split: {result['num_examples']} examples of {result['data_source']}", "",
           "| model | accuracy | macro F1 |", "|---|---|---|"]
  lines += [f"| {name} | {acc:.4f} | {f1:.4f} |" for name, acc, f1 in rows]
  plots = os.path.join(model_dir, "plots")
  lines += ["", f"model dir: {model_dir}", f"export:    {os.path.join(model_dir, 'export')}",
            f"plots:     {plots}" + (f" ({', '.join(sorted(os.listdir(plots)))})" if os.path.isdir(plots) else ""),
            f"TensorBoard: tensorboard --logdir {model_dir}"]
  return "\n".join(lines)


def main(_):
  print(summary(flags.FLAGS.model_dir, flags.FLAGS.split))


if __name__ == "__main__":
  flags.DEFINE_string("model_dir", "runs/demo", "A run scored by eval.py.")
  flags.DEFINE_string("split", "test", "Which eval_<split>.json to summarise.")
  app.run(main)
