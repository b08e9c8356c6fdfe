"""The encoder table and handle resolution, and the error when a handle cannot be reached."""
import pytest

from bertclf import encoders
from bertclf import errors


def test_table_has_the_tutorials_33_encoders_with_matching_preprocessing():
  assert len(encoders.ENCODERS) == 33
  small = [n for n in encoders.ENCODERS if n.startswith("small_bert/")]
  assert len(small) == 24
  assert encoders.DEFAULT_ENCODER in encoders.ENCODERS
  h = encoders.resolve("small_bert/bert_en_uncased_L-4_H-512_A-8")
  assert h.encoder == "https://tfhub.dev/tensorflow/small_bert/bert_en_uncased_L-4_H-512_A-8/1"
  assert h.preprocess == "https://tfhub.dev/tensorflow/bert_en_uncased_preprocess/3"
  assert encoders.resolve("bert_en_cased_L-12_H-768_A-12").preprocess.endswith("bert_en_cased_preprocess/3")
  assert encoders.resolve("albert_en_base").preprocess.endswith("albert_en_preprocess/3")
  assert encoders.resolve("bert_multi_cased_L-12_H-768_A-12").preprocess.endswith(
      "bert_multi_cased_preprocess/3")


def test_url_and_override():
  url = "https://tfhub.dev/google/electra_small/2"
  assert encoders.resolve(url).preprocess.endswith("bert_en_uncased_preprocess/3")  # known URL
  assert encoders.resolve("electra_small", "/my/pre").preprocess == "/my/pre"
  with pytest.raises(ValueError, match="pass --preprocess"):
    encoders.resolve("https://example.com/some/unknown/encoder/1")


def test_bad_local_paths(tmp_path):
  with pytest.raises(ValueError, match="neither a known short name"):
    encoders.resolve(str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="no saved_model.pb"):
    encoders.resolve(str(tmp_path))


def test_unreachable_url_says_how_to_work_offline():
  handles = encoders.Handles("http://127.0.0.1:9/encoder/1", "http://127.0.0.1:9/preprocess/1", "x")
  with pytest.raises(errors.UserError, match="TFHUB_CACHE_DIR") as err:
    encoders.load_encoder_layer(handles)
  assert "--encoder=" in str(err.value)
  with pytest.raises(errors.UserError, match="TFHUB_CACHE_DIR"):
    encoders.load_preprocess(handles)
