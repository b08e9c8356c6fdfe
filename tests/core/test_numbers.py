"""Numbers that must mean what they say: macro F1, the logged learning rate, --layer_decay's help."""
from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from bertclf import evaluation
from bertclf.swaps import optim
from bertclf.variants import llrd

FLAGS = flags.FLAGS


def test_macro_f1_averages_over_the_classes_in_the_split():
  labels = np.array([0, 0, 1, 1, 1])
  probs = np.eye(3)[labels]  # perfect predictions; class 2 is absent from labels and predictions
  out = evaluation.classification_metrics(probs, np.zeros(5), labels, ["a", "b", "c"])
  assert out["macro_f1"] == pytest.approx(1.0) and out["macro_classes"] == ["a", "b"]
  assert out["per_class"]["c"]["support"] == 0
  wrong = np.eye(3)[[0, 0, 1, 1, 2]]  # one example predicted as the absent class: it counts (F1 0)
  out = evaluation.classification_metrics(wrong, np.zeros(5), labels, ["a", "b", "c"])
  assert out["macro_classes"] == ["a", "b", "c"] and out["macro_f1"] < 0.7


def test_applied_learning_rate_is_the_rate_of_the_last_update():
  opt = optim.create_optimizer("adamw", 1.0, train_steps=10, warmup_steps=2, dtype="fp32")
  var = tf.Variable([1.0])
  applied, following = [], []
  for _ in range(10):
    opt.apply_gradients([(tf.constant([1.0]), var)])
    applied.append(float(optim.applied_learning_rate(opt)))
    following.append(float(optim.learning_rate(opt)))
  # official's schedule, as optim.py's docstring describes it: lr·s/W in warmup, then lr·(1 - s/N).
  np.testing.assert_allclose(applied, [0.0, 0.5, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1], atol=1e-6)
  assert following[-1] == pytest.approx(0.0)  # what a log line read after the last step would show


def test_layer_decay_help_states_the_rates_the_code_applies():
  help_text = FLAGS["layer_decay"].help
  assert "lr*d^(L-l)" in help_text and "lr*d^L" in help_text and "L+1" not in help_text
  names = ["word_embeddings/embeddings", "transformer/layer_0/kernel", "transformer/layer_1/kernel",
           "transformer/layer_2/kernel", "pooler_transform/kernel"]
  multiplier = llrd.rate_multiplier([tf.Variable(0.0, name=n) for n in names], 0.5)
  # L = 3: layer l = 1..3 (layer_<l-1>) at d^(3-l); embeddings d^3; pooler as the head.
  assert [multiplier(n) for n in names] == [0.125, 0.25, 0.5, 1.0, 1.0]
