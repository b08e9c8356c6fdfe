"""Prints the comparison of a sweep's configurations and writes it as Markdown, JSON and a PNG.

  python compare.py --sweep_dir=runs/sweep_demo --baseline=demo
      → <sweep_dir>/comparison.md, comparison.json, comparison.png

Per config: mean ± std, the 95% t-interval over seeds and each seed's value of accuracy, macro F1 and loss.
Against the baseline: the paired t-test over seeds and the example-level paired bootstrap pooled over seeds,
each with its interval, p-value and a verdict that says "no detectable difference" when the interval covers 0
(docs/SWEEPS.md). Works on a partial sweep: runs not yet finished are listed and left out.
"""
import json
import os

from absl import app
from absl import flags

from bertclf.tools import comparison

FLAGS = flags.FLAGS


def define_compare_flags():
  flags.DEFINE_string("sweep_dir", "runs/sweep", "The folder sweep.py ran in.")
  flags.DEFINE_string("baseline", None, "The config the others are compared with (default: the first --config "
                      "of the sweep).")
  flags.DEFINE_integer("resamples", 10000, "Bootstrap resamples.", lower_bound=100)
  flags.DEFINE_float("confidence", 0.95, "Level of every interval.")
  flags.DEFINE_string("out", None, "Writes <out>.md, <out>.json and <out>.png (default: <sweep_dir>/comparison).")
  flags.register_validator("confidence", lambda v: 0.5 <= v < 1.0, message="--confidence must be in [0.5, 1).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}.")
  report = comparison.compare(FLAGS.sweep_dir, FLAGS.baseline, FLAGS.resamples, FLAGS.confidence)
  out = FLAGS.out or os.path.join(FLAGS.sweep_dir, "comparison")
  markdown = comparison.to_markdown(report)
  with open(out + ".md", "w", encoding="utf-8") as f:
    f.write(markdown + f"\n![per-seed values, means and intervals]({os.path.basename(out)}.png)\n")
  with open(out + ".json", "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  comparison.plot(report, out + ".png")
  print(markdown)
  print(f"Wrote {out}.md, {out}.json and {out}.png")


if __name__ == "__main__":
  define_compare_flags()
  app.run(main)
