"""Tools outside the training path: TF Hub-format export of BERT encoders, the MiniLM converter, tiny generated
data and encoders for tests and `make tiny`, and the FLOP counter used by the benchmarks."""
