"""Tools outside the training path: TF Hub-format export of BERT encoders, the MiniLM converter, tiny generated
data and encoders for tests and `make tiny`, the FLOP counter used by the benchmarks, and what sweep.py and
compare.py build on (sweeps, comparison, sweep_hparams, and predictions, eval.py's per-example output)."""
