"""WordPiece tokenisation of titles and queries, learned from the data and run in-graph.

The vocabulary is learned from item titles and search queries with tensorflow-text's own tool
(``bert_vocab_from_dataset``), written as a text file (one token a line, BERT's format) and
read by ``text.BertTokenizer`` from that file, so a SavedModel that holds a ``TextTokenizer``
carries the file as an *asset*: the exported text encoder takes raw strings.

Bad input is defined, not an error (see ``presets`` for the length policy):
- bytes that are not UTF-8 are replaced by U+FFFD before tokenisation (they become
  ``[UNK]`` or vanish), so a non-UTF-8 title still encodes;
- texts are cut to ``max_text_bytes`` bytes, then to ``max_tokens - 2`` WordPiece tokens;
- every text becomes ``[CLS] tokens [SEP]``, so the empty string is ``[CLS] [SEP]``.
"""
from __future__ import annotations

from typing import Iterable

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf
import tensorflow_text as text
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as vocab_tool

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
RESERVED_TOKENS = (PAD, UNK, CLS, SEP, MASK)  # [PAD] first: token id 0 is padding
PAD_ID = 0


def learn_vocabulary(texts: tf.data.Dataset, vocab_size: int,
                     lower_case: bool = True) -> list[str]:
    """WordPiece vocabulary (reserved tokens first, at most ``vocab_size`` tokens).

    Args:
        texts: a dataset of string tensors (scalars or batches), e.g. titles then queries.
    """
    if vocab_size <= len(RESERVED_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} leaves no room beyond the "
                         f"{len(RESERVED_TOKENS)} reserved tokens")
    return vocab_tool.bert_vocab_from_dataset(
        texts.map(_valid_utf8), vocab_size=vocab_size, reserved_tokens=list(RESERVED_TOKENS),
        bert_tokenizer_params={"lower_case": lower_case})


def write_vocabulary(tokens: Iterable[str], path: str) -> None:
    """Writes one token per line (BERT's vocab.txt format), through ``tf.io.gfile``."""
    tokens = list(tokens)
    missing = [token for token in (PAD, UNK, CLS, SEP) if token not in tokens]
    if missing:
        raise ValueError(f"vocabulary lacks the reserved token(s) {missing}")
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write("".join(token + "\n" for token in tokens))


def read_vocabulary(path: str) -> list[str]:
    with tf.io.gfile.GFile(path, "r") as handle:
        return [line.rstrip("\n") for line in handle]


def _valid_utf8(texts: tf.Tensor) -> tf.Tensor:
    """Same shape; invalid UTF-8 sequences replaced by U+FFFD."""
    return tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)


class TextTokenizer(tf.Module):
    """Raw strings ``[batch]`` -> WordPiece ids ``[batch, seq_len]`` (int64, 0-padded to the
    longest text in the batch, ``seq_len <= max_tokens``), ``[CLS]`` first, ``[SEP]`` last.

    ``vocab_path`` must stay readable until the module is saved (then it is an asset).
    """

    def __init__(self, vocab_path: str, max_tokens: int, max_text_bytes: int = 4096,
                 lower_case: bool = True, name: str = "text_tokenizer"):
        super().__init__(name=name)
        tokens = read_vocabulary(vocab_path)
        if not tokens or tokens[PAD_ID] != PAD:
            raise ValueError(f"{vocab_path}: the first token must be {PAD} (id 0 pads), got "
                             f"{tokens[:1]}")
        for token in (UNK, CLS, SEP):
            if token not in tokens:
                raise ValueError(f"{vocab_path}: vocabulary lacks {token}")
        if max_tokens < 3:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for a token between "
                             f"{CLS} and {SEP}")
        self.vocab_path = vocab_path
        self.vocab_size = len(tokens)
        self.max_tokens = max_tokens
        self.max_text_bytes = max_text_bytes
        self.lower_case = lower_case
        self._cls_id = tokens.index(CLS)
        self._sep_id = tokens.index(SEP)
        self._bert = text.BertTokenizer(vocab_path, lower_case=lower_case,
                                        unknown_token=UNK, token_out_type=tf.int64)

    def __call__(self, texts: tf.Tensor) -> tf.Tensor:
        texts = tf.convert_to_tensor(texts, tf.string)
        texts = tf.strings.substr(texts, 0, self.max_text_bytes, unit="BYTE")
        # After the cut: it may split a multi-byte character, which becomes U+FFFD.
        pieces = self._bert.tokenize(_valid_utf8(texts)).merge_dims(-2, -1)
        pieces = pieces[:, :self.max_tokens - 2]
        batch = tf.shape(pieces.row_lengths(), out_type=tf.int64)[0]
        cls = tf.fill([batch, 1], tf.constant(self._cls_id, tf.int64))
        sep = tf.fill([batch, 1], tf.constant(self._sep_id, tf.int64))
        ids = tf.concat([tf.RaggedTensor.from_tensor(cls), pieces,
                         tf.RaggedTensor.from_tensor(sep)], axis=1)
        return ids.to_tensor(default_value=PAD_ID)

    def detokenize(self, token_ids: tf.Tensor) -> tf.Tensor:
        """Ids ``[batch, seq_len]`` -> words ``[batch]`` (for inspection; drops padding)."""
        ragged = tf.RaggedTensor.from_tensor(token_ids, padding=PAD_ID)
        words = self._bert.detokenize(ragged)
        return tf.strings.reduce_join(words, axis=-1, separator=" ")
