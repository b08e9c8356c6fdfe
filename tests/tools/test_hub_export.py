"""The TF Hub-format exports behave like tfhub.dev handles: ids from the vocab, shapes, dict outputs."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from bertclf import encoders
from bertclf.tools import hub_export


def _vocab(tiny_hub):
  with open(os.path.join(tiny_hub, "vocab.txt"), encoding="utf-8") as f:
    return {tok: i for i, tok in enumerate(f.read().split("\n")) if tok}


def test_preprocessing_ids_follow_the_vocab_file(tiny_hub):
  vocab = _vocab(tiny_hub)
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  out = pre(tf.constant(["This movie was GREAT!"]))  # default signature: seq_length 16, lower-cased
  expected = [vocab[t] for t in ("[CLS]", "this", "movie", "was", "great", "!", "[SEP]")]
  np.testing.assert_array_equal(out["input_word_ids"][0].numpy(), expected + [0] * (16 - len(expected)))
  np.testing.assert_array_equal(out["input_mask"][0].numpy(), [1] * 7 + [0] * 9)
  np.testing.assert_array_equal(out["input_type_ids"][0].numpy(), [0] * 16)
  assert out["input_word_ids"].dtype == tf.int32


def test_bert_pack_inputs_truncates_at_the_requested_length(tiny_hub):
  vocab = _vocab(tiny_hub)
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  words = "the movie was great and the story was good".split()
  packed = pre.bert_pack_inputs([pre.tokenize(tf.constant([" ".join(words)]))], seq_length=6)
  expected = [vocab["[CLS]"]] + [vocab[w] for w in words[:4]] + [vocab["[SEP]"]]
  np.testing.assert_array_equal(packed["input_word_ids"][0].numpy(), expected)
  np.testing.assert_array_equal(packed["input_mask"][0].numpy(), [1] * 6)


def test_word_pieces_for_unknown_words(tiny_hub):
  vocab = _vocab(tiny_hub)
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  ids = pre.tokenize(tf.constant(["zap"])).flat_values.numpy().tolist()
  assert ids == [vocab["z"], vocab["##a"], vocab["##p"]]  # no word "zap": WordPiece falls back to characters


@pytest.mark.slow
def test_encoder_round_trips_through_keras_layer(tiny_hub):
  pre = hub.load(os.path.join(tiny_hub, "preprocess"))
  encoder = hub.KerasLayer(os.path.join(tiny_hub, "encoder"), trainable=True)
  inputs = pre(tf.constant(["a good film", "bad"]))
  out = encoder(inputs)
  assert out["pooled_output"].shape == (2, 32)
  assert out["sequence_output"].shape == (2, 16, 32)
  assert len(out["encoder_outputs"]) == 2  # two layers
  assert len(encoder.trainable_variables) > 10
  # The pooled output is the tanh of a dense layer on [CLS]: bounded, and different for different texts.
  assert np.all(np.abs(out["pooled_output"].numpy()) <= 1.0)
  assert not np.allclose(out["pooled_output"][0], out["pooled_output"][1])


def test_resolve_finds_the_local_export(tiny_hub):
  handles = encoders.resolve(tiny_hub)
  assert handles.encoder == os.path.join(tiny_hub, "encoder")
  assert handles.preprocess == os.path.join(tiny_hub, "preprocess")
  assert handles.config["hidden_size"] == 32 and handles.max_seq_length == 512


def test_export_refuses_a_wrong_vocab_size_and_an_existing_folder(tmp_path, tiny_hub):
  vocab = tmp_path / "vocab.txt"
  size = hub_export.write_tiny_vocab(str(vocab))
  with pytest.raises(ValueError, match=r"vocab.txt has \d+ tokens but the encoder config says vocab_size"):
    hub_export.export_hub_format(str(tmp_path / "x"), bert_config=hub_export.tiny_bert_config(size + 1),
                                 vocab_file=str(vocab))
  with pytest.raises(FileExistsError, match="exists already"):
    hub_export.export_hub_format(tiny_hub, bert_config=hub_export.tiny_bert_config(size), vocab_file=str(vocab))
