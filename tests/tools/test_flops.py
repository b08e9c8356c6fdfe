"""The analytic FLOP count behind the benchmarks' MFU, checked against the weights of a real BertEncoder."""
import math

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
import pytest
import tensorflow as tf

from bertclf.tools import flops
from bertclf.tools import hub_export
from bertclf import native
from official.nlp.tools import export_tfhub_lib


@pytest.mark.parametrize("tokens", [16, 64])
def test_flops_are_6_per_dense_weight_plus_attention(tokens):
  bert_config = hub_export.tiny_bert_config(100, num_layers=3, hidden_size=48, num_attention_heads=4,
                                            intermediate_size=96)
  config = bert_config.to_dict()  # as bert_config.json holds it
  encoder = export_tfhub_lib.get_bert_encoder(bert_config)
  ids = tf.ones([1, tokens], tf.int32)
  encoder(dict(input_word_ids=ids, input_mask=ids, input_type_ids=tf.zeros_like(ids)))
  # The matmul weights of the transformer layers: every kernel under transformer/ (biases, LayerNorm: rank 1).
  dense = sum(v.shape.num_elements() for v in encoder.weights
              if v.name.startswith("transformer/layer_") and v.name.endswith("kernel:0"))
  assert dense == 3 * (4 * 48 * 48 + 2 * 48 * 96)  # Q, K, V, output; FFN in and out
  L, H = config["num_hidden_layers"], config["hidden_size"]  # pylint: disable=invalid-name
  # PaLM's appendix B: 6N per token for the weights, 12 * L * H * T for attention's QK^T and AV.
  assert flops.training_flops_per_token(config, tokens) == 6 * dense + 12 * L * H * tokens


@pytest.mark.parametrize("cls_only", [False, True])
def test_flops_per_example_match_the_encoders_own_matmuls(cls_only):
  # An independent count: every Einsum in the traced encoder's transformer layers costs 2 FLOPs per point of its
  # index space (2 * product of all index sizes); training = 3x forward.
  bert_config = hub_export.tiny_bert_config(100, num_layers=3, hidden_size=48, num_attention_heads=4,
                                            intermediate_size=96)
  encoder = native.bert_encoder(bert_config, cls_only)  # what --encoder_impl=native builds
  tokens = 16
  ids = tf.ones([1, tokens], tf.int32)
  graph = tf.function(encoder).get_concrete_function(
      dict(input_word_ids=ids, input_mask=ids, input_type_ids=tf.zeros_like(ids))).graph
  forward = 0
  for op in graph.get_operations():
    if op.type == "Einsum" and "/transformer/" in op.name:
      inputs = op.get_attr("equation").decode().split("->")[0].split(",")
      sizes = {c: d for spec, t in zip(inputs, op.inputs) for c, d in zip(spec, t.shape)}
      forward += 2 * math.prod(sizes.values())
  assert forward > 0
  assert flops.training_flops_per_example(bert_config.to_dict(), tokens, cls_only) == 3 * forward
