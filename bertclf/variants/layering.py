"""Where a variable sits in a BERT-family encoder, read off its name: shared by freezing and layer-wise rates.

Official's BertEncoder (what the TF Hub BERT SavedModels and --encoder_impl=native hold) names its variables
  word_embeddings/embeddings, position_embedding/embeddings, type_embeddings/embeddings,
  embeddings/layer_norm/{gamma,beta} (and embedding_projection/... when narrower)   the embeddings: depth 0
  transformer/layer_<l>/...  for l = 0 .. L-1                                      layer l: depth l + 1
  pooler_transform/{kernel,bias}                                                   the pooler
and the head (bertclf/swaps/heads.py) adds classifier/... (and head_hidden/...). Under a MirroredStrategy the
per-replica copies end in "/replica_<r>:0"; the patterns ignore that.
"""
import re

_LAYER = re.compile(r"(?:^|/)transformer/layer_(\d+)/")
_EMBEDDINGS = re.compile(
    r"(?:^|/)(?:word_embeddings|position_embedding|type_embeddings|embeddings|embedding_projection)/")


def encoder_depth(name):
  """0 for the embeddings, l + 1 for transformer layer l, None for anything else (pooler, head)."""
  if (m := _LAYER.search(name)):
    return int(m.group(1)) + 1
  return 0 if _EMBEDDINGS.search(name) else None


def num_layers(variables):
  """L: the number of transformer layers among the variables' names (0 when none follow the naming)."""
  depths = [encoder_depth(v.name) for v in variables]
  return max([d for d in depths if d is not None], default=0)
