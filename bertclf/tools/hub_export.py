"""Writes a BERT encoder and its preprocessing model as TF Hub-format SavedModels.

The two SavedModels come from tf-models-official's own exporter (`official.nlp.tools.export_tfhub_lib`), so
`hub.KerasLayer(path)` treats them exactly like a tfhub.dev handle: the encoder maps
{input_word_ids, input_mask, input_type_ids} to {pooled_output, sequence_output, encoder_outputs}, and the
preprocessing model maps raw strings to those three int32 inputs and exposes `tokenize` / `bert_pack_inputs`.

Used three ways: tests build a tiny encoder once per run; the MiniLM converter writes a real pretrained one;
researchers export their own BertEncoder checkpoints.

  python -m bertclf.tools.hub_export --out_dir=/tmp/tiny_hub --vocab_file=vocab.txt \
      --num_layers=2 --hidden_size=32 --num_attention_heads=2 --intermediate_size=64
"""
import json
import os
import tempfile

import bertclf  # noqa: F401  (selects tf_keras before TensorFlow loads)
from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from official.legacy.bert import configs as bert_configs
from official.nlp.tools import export_tfhub_lib

ENCODER_SUBDIR = "encoder"
PREPROCESS_SUBDIR = "preprocess"
CONFIG_FILE = "bert_config.json"  # written beside the two SavedModels; the native encoder path reads it


def export_hub_format(out_dir, *, bert_config, vocab_file, do_lower_case=True, default_seq_length=128,
                      init_fn=None):
  """Exports `<out_dir>/encoder` and `<out_dir>/preprocess` in the TF Hub format.

  Args:
    out_dir: folder to create (it must not hold an export already).
    bert_config: `official.legacy.bert.configs.BertConfig` (sizes, activation, dropout, vocab size).
    vocab_file: WordPiece vocab, one token per line; its length must equal `bert_config.vocab_size`.
    do_lower_case: lower-case (and strip accents) before WordPiece, as uncased BERT vocabularies expect.
    default_seq_length: sequence length of the preprocessing model's default signature.
    init_fn: optional `fn(encoder)` that sets the weights of the freshly built `BertEncoder` (e.g. copied from
      a pretrained checkpoint); without it the weights are the random init (seeded by `tf.random.set_seed`).

  Returns:
    (encoder_path, preprocess_path).
  """
  with tf.io.gfile.GFile(vocab_file) as f:
    vocab_size = sum(1 for _ in f)
  if vocab_size != bert_config.vocab_size:
    raise ValueError(f"{vocab_file} has {vocab_size} tokens but the encoder config says vocab_size="
                     f"{bert_config.vocab_size}; pass the vocab file that belongs to this encoder.")
  encoder_path = os.path.join(out_dir, ENCODER_SUBDIR)
  preprocess_path = os.path.join(out_dir, PREPROCESS_SUBDIR)
  for path in (encoder_path, preprocess_path):
    if tf.io.gfile.exists(path):
      raise FileExistsError(f"{path} exists already; pick a new --out_dir or delete it.")

  # export_model restores its weights from a checkpoint, so write one from the encoder we build here.
  encoder = export_tfhub_lib.get_bert_encoder(bert_config)
  if init_fn is not None:
    init_fn(encoder)
  with tempfile.TemporaryDirectory() as tmp:
    ckpt_path = tf.train.Checkpoint(encoder=encoder).save(os.path.join(tmp, "ckpt"))
    export_tfhub_lib.export_model(encoder_path, bert_config=bert_config, model_checkpoint_path=ckpt_path,
                                  with_mlm=False, vocab_file=vocab_file, do_lower_case=do_lower_case)
  export_tfhub_lib.export_preprocessing(preprocess_path, vocab_file=vocab_file, do_lower_case=do_lower_case,
                                        tokenize_with_offsets=False, default_seq_length=default_seq_length)
  with tf.io.gfile.GFile(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    f.write(json.dumps(dict(bert_config.to_dict(), do_lower_case=do_lower_case), indent=2))
  logging.info("Wrote TF Hub-format encoder %s and preprocessing %s", encoder_path, preprocess_path)
  return encoder_path, preprocess_path


def tiny_bert_config(vocab_size, *, num_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=512, dropout=0.1):
  """A BertConfig small enough for tests and debugging runs."""
  return bert_configs.BertConfig(
      vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
      num_attention_heads=num_attention_heads, intermediate_size=intermediate_size, hidden_act="gelu",
      hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
      max_position_embeddings=max_position_embeddings, type_vocab_size=2, initializer_range=0.02)


# A small English WordPiece vocabulary: enough to tokenize the generated tiny-preset and test data without [UNK]s
# for the words that carry the label, so a tiny encoder can actually learn the task.
TINY_VOCAB_WORDS = (
    "the a an and or but is was are were be been it this that these those i you he she we they movie film "
    "story plot acting actor actors scene scenes great good bad terrible awful wonderful amazing boring "
    "excellent poor loved love hated hate fun dull brilliant worst best not very really so such too much "
    "of in on at to for with as by from my your his her our their one two three time times watch watched "
    "again never ever always would could should will can do does did have has had what who how why when "
    "music ending characters character script director long short funny sad happy nice lovely fine okay "
    "review reviews people something nothing everything").split()


def write_tiny_vocab(path, extra_words=()):
  """Writes a WordPiece vocab: specials, single characters (with ## forms) and whole words. Returns its size."""
  chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tokens += list(chars) + ["##" + c for c in chars]
  tokens += [w for w in dict.fromkeys(list(TINY_VOCAB_WORDS) + list(extra_words)) if w not in tokens]
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("\n".join(tokens) + "\n")
  return len(tokens)


FLAGS = flags.FLAGS


def _define_cli_flags():
  flags.DEFINE_string("out_dir", None, "Folder to write encoder/ and preprocess/ into.")
  flags.DEFINE_string("vocab_file", None, "WordPiece vocab. Omit to write the built-in tiny vocab.")
  flags.DEFINE_string("bert_config_file", None, "BERT config JSON; omit for a tiny random encoder.")
  flags.DEFINE_string("init_checkpoint", None, "tf.train.Checkpoint with `encoder=BertEncoder` weights.")
  flags.DEFINE_bool("do_lower_case", True, "Lower-case text before WordPiece.")
  flags.DEFINE_integer("num_layers", 2, "Tiny encoder: transformer layers.")
  flags.DEFINE_integer("hidden_size", 32, "Tiny encoder: hidden size.")
  flags.DEFINE_integer("num_attention_heads", 2, "Tiny encoder: attention heads.")
  flags.DEFINE_integer("intermediate_size", 64, "Tiny encoder: feed-forward size.")
  flags.DEFINE_integer("default_seq_length", 128, "Preprocessing model's default sequence length.")
  flags.DEFINE_integer("seed", 0, "Random init seed.")
  flags.mark_flag_as_required("out_dir")


def main(_):
  tf.random.set_seed(FLAGS.seed)
  vocab_file = FLAGS.vocab_file
  if vocab_file is None:
    tf.io.gfile.makedirs(FLAGS.out_dir)
    vocab_file = os.path.join(FLAGS.out_dir, "vocab.txt")
    write_tiny_vocab(vocab_file)
  with tf.io.gfile.GFile(vocab_file) as f:
    vocab_size = sum(1 for _ in f)
  if FLAGS.bert_config_file:
    bert_config = bert_configs.BertConfig.from_json_file(FLAGS.bert_config_file)
  else:
    bert_config = tiny_bert_config(vocab_size, num_layers=FLAGS.num_layers, hidden_size=FLAGS.hidden_size,
                                   num_attention_heads=FLAGS.num_attention_heads,
                                   intermediate_size=FLAGS.intermediate_size)
  init_fn = None
  if FLAGS.init_checkpoint:
    def init_fn(encoder):
      tf.train.Checkpoint(encoder=encoder).restore(FLAGS.init_checkpoint).assert_existing_objects_matched()
  export_hub_format(FLAGS.out_dir, bert_config=bert_config, vocab_file=vocab_file,
                    do_lower_case=FLAGS.do_lower_case, default_seq_length=FLAGS.default_seq_length,
                    init_fn=init_fn)


if __name__ == "__main__":
  _define_cli_flags()
  app.run(main)
