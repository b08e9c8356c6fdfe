"""The offline demo (`make demo`): its data set, the TF-IDF/tutorial baselines and the final report."""
