"""Text half of the ME layer: WordPiece vocabulary and in-graph tokenisation, the BERT-style
encoder (shapes, norm, padding invariance, config), and query matching's InfoNCE loss."""
import numpy as np
import pytest

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.encoders import tokenizer as tokenization
from ppm_tf.encoders.query_matching import (ITEM_ID, QUERY_IDS, TITLE_IDS, QueryMatchingModel,
                                            in_batch_retrieval_task)
from ppm_tf.encoders.presets import GELU, POOL_CLS, POOL_MEAN_TOKENS, POOL_TEXT_TOKENS
from ppm_tf.encoders.text import TextEncoder, TransformerBlock, pooling_mask, pooling_weights

TEXTS = ["kelta quality blush checkered cushion", "zorvo red striped sneakers",
         "cheap navy ombre throw pillow", "red trainers", "blue mug", "crimson running shoes",
         "lamp desk lamp light", "gantro amber plaid headphones"] * 20


@pytest.fixture(scope="module")
def vocab_path(tmp_path_factory):
    tokens = tokenization.learn_vocabulary(tf.data.Dataset.from_tensor_slices(TEXTS).batch(16),
                                           vocab_size=200)
    path = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
    tokenization.write_vocabulary(tokens, path)
    return path


def small_encoder(vocab_size=200, **overrides):
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                    intermediate_size=64, output_dim=16, max_positions=64, dropout=0.1)
    settings.update(overrides)
    return TextEncoder(**settings)


def test_learned_vocabulary_has_reserved_tokens_first_and_the_data_words(vocab_path):
    tokens = tokenization.read_vocabulary(vocab_path)
    assert tokens[:5] == list(tokenization.RESERVED_TOKENS)
    assert tokens[tokenization.PAD_ID] == "[PAD]"
    for word in ("red", "cushion", "lamp"):
        assert word in tokens
    assert len(tokens) <= 200


def test_tokenizer_wraps_in_cls_sep_and_round_trips(vocab_path):
    tokenizer = tokenization.TextTokenizer(vocab_path, max_tokens=16)
    ids = tokenizer(tf.constant(["Zorvo RED striped sneakers", "blue mug"]))
    assert ids.dtype == tf.int64
    tokens = tokenization.read_vocabulary(vocab_path)
    assert ids[0, 0] == tokens.index("[CLS]")
    assert ids[1, 3] == tokens.index("[SEP]") and ids[1, 4:].numpy().tolist() == [0] * (
        ids.shape[1] - 4)
    words = tokenizer.detokenize(ids).numpy().tolist()
    assert words == [b"[CLS] zorvo red striped sneakers [SEP]", b"[CLS] blue mug [SEP]"]


def test_tokenizer_defines_empty_non_utf8_and_overlong_texts(vocab_path):
    tokenizer = tokenization.TextTokenizer(vocab_path, max_tokens=8, max_text_bytes=4096)
    tokens = tokenization.read_vocabulary(vocab_path)
    cls, sep, unk = (tokens.index(token) for token in ("[CLS]", "[SEP]", "[UNK]"))
    ids = tokenizer(tf.constant(["", b"\xff\xfe red", "red " * 100_000])).numpy()
    assert ids.shape[1] == 8  # truncated to max_tokens
    assert ids[0].tolist() == [cls, sep] + [0] * 6
    assert ids[1, :4].tolist() == [cls, unk, tokens.index("red"), sep]
    assert ids[2].tolist() == [cls] + [tokens.index("red")] * 6 + [sep]


def test_tokenizer_rejects_a_vocabulary_without_padding_first(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\nred\n")
    with pytest.raises(ValueError, match=r"first token must be \[PAD\]"):
        tokenization.TextTokenizer(str(path), max_tokens=8)


def test_encoder_outputs_unit_vectors_of_the_output_dim():
    encoder = small_encoder()
    ids = tf.constant([[2, 10, 11, 3, 0, 0], [2, 3, 0, 0, 0, 0]], tf.int64)
    vectors = encoder(ids).numpy()
    assert vectors.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_extra_padding_does_not_change_the_vector():
    tf.keras.utils.set_random_seed(1)
    encoder = small_encoder()
    ids = tf.constant([[2, 10, 11, 12, 3], [2, 13, 3, 0, 0]], tf.int64)
    padded = tf.pad(ids, [[0, 0], [0, 11]])
    np.testing.assert_allclose(encoder(ids, training=False).numpy(),
                               encoder(padded, training=False).numpy(), atol=1e-5)


def test_pooling_averages_the_words_and_uses_cls_sep_only_for_empty_texts():
    ids = tf.constant([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0], [2, 3, 0, 0, 0]], tf.int64)
    assert pooling_mask(ids).numpy().astype(int).tolist() == [
        [0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [1, 1, 0, 0, 0]]


def test_encoder_config_round_trips():
    encoder = small_encoder(name="text_encoder")
    rebuilt = TextEncoder.from_config(encoder.get_config())
    assert rebuilt.get_config() == encoder.get_config()
    block = TransformerBlock(32, 2, 64, 0.0)
    assert TransformerBlock.from_config(block.get_config()).get_config() == block.get_config()


def info_nce(queries, titles, temperature, ids=None):
    """Hand computation: mean_i -log softmax_j(q_i . t_j / tau)[i], accidental hits removed."""
    scores = queries @ titles.T / temperature
    losses = []
    for row in range(len(scores)):
        logits = [scores[row, col] for col in range(len(scores))
                  if col == row or ids is None or ids[col] != ids[row]]
        positive = scores[row, row]
        losses.append(-(positive - np.log(np.sum(np.exp(np.array(logits))))))
    return float(np.mean(losses))


def _unit(rows):
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_retrieval_task_loss_equals_hand_computed_info_nce():
    rng = np.random.default_rng(0)
    queries = _unit(rng.normal(size=(5, 8))).astype(np.float32)
    titles = _unit(rng.normal(size=(5, 8))).astype(np.float32)
    ids = np.array([b"a", b"b", b"c", b"d", b"e"])
    loss = tf.reduce_mean(in_batch_retrieval_task(0.05)(  # per query: see the task
        queries, titles, candidate_ids=ids, compute_metrics=False))
    assert float(loss) == pytest.approx(info_nce(queries, titles, 0.05), rel=1e-4)


def test_retrieval_task_does_not_use_the_same_item_as_its_own_negative():
    rng = np.random.default_rng(1)
    queries = _unit(rng.normal(size=(4, 8))).astype(np.float32)
    titles = _unit(rng.normal(size=(4, 8))).astype(np.float32)
    ids = np.array([b"a", b"b", b"a", b"c"])  # item a clicked twice in the batch
    loss = tf.reduce_mean(in_batch_retrieval_task(0.1)(
        queries, titles, candidate_ids=ids, compute_metrics=False))
    assert float(loss) == pytest.approx(info_nce(queries, titles, 0.1, ids), rel=1e-4)
    assert float(loss) != pytest.approx(info_nce(queries, titles, 0.1), rel=1e-3)


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        in_batch_retrieval_task(0.0)


def test_query_matching_loss_falls_in_a_few_steps(vocab_path):
    tf.keras.utils.set_random_seed(0)
    tokenizer = tokenization.TextTokenizer(vocab_path, max_tokens=12)
    queries = ["red trainers", "blue mug", "desk lamp", "plaid headphones", "throw pillow",
               "striped sneakers", "crimson shoes", "ombre pillow"]
    titles = ["zorvo red striped sneakers", "blue mug", "lamp desk lamp light",
              "gantro amber plaid headphones", "cheap navy ombre throw pillow",
              "zorvo red striped sneakers", "crimson running shoes",
              "kelta quality blush checkered cushion"]
    batch = {QUERY_IDS: tokenizer(tf.constant(queries)), TITLE_IDS: tokenizer(tf.constant(titles)),
             ITEM_ID: tf.constant([f"i{n}" for n in range(8)])}
    model = QueryMatchingModel(small_encoder(vocab_size=tokenizer.vocab_size, dropout=0.0,
                                             num_layers=1), 0.1)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3))
    before = float(model.compute_loss(batch))
    model.optimizer.build(model.trainable_variables)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(30), epochs=1, verbose=0)
    after = float(model.compute_loss(batch))
    assert np.isfinite(before) and after < before - 0.5


def test_pooling_modes_weight_the_tokens_they_name():
    ids = tf.constant([[2, 10, 11, 3, 0], [2, 3, 0, 0, 0]], tf.int64)
    assert pooling_weights(ids, POOL_MEAN_TOKENS).numpy().tolist() == [
        [True, True, True, True, False], [True, True, False, False, False]]
    assert pooling_weights(ids, POOL_CLS).numpy()[:, 0].all()
    assert pooling_weights(ids, POOL_CLS).numpy().sum() == 2
    np.testing.assert_array_equal(pooling_weights(ids, POOL_TEXT_TOKENS), pooling_mask(ids))


def test_without_projection_the_vector_is_the_normalised_pooled_state():
    encoder = small_encoder(output_dim=None, pooling=POOL_MEAN_TOKENS, hidden_act=GELU,
                            layer_norm_epsilon=1e-6)
    ids = tf.constant([[2, 10, 11, 3]], tf.int64)
    vector = encoder(ids, training=False).numpy()[0]
    pooled = encoder.hidden_states(ids, training=False).numpy().mean(axis=1)[0]
    np.testing.assert_allclose(vector, pooled / np.linalg.norm(pooled), atol=1e-5)
    assert encoder.vector_dim == 32 and not any("projection" in weight.name
                                               for weight in encoder.weights)
    clone = TextEncoder.from_config(encoder.get_config())
    assert (clone.output_dim, clone.pooling, clone.hidden_act, clone.layer_norm_epsilon) == (
        None, POOL_MEAN_TOKENS, GELU, 1e-6)


def test_dropout_makes_two_passes_of_one_title_differ_only_in_training():
    """SimCSE's augmentation: each call draws its own dropout masks."""
    encoder = small_encoder(dropout=0.1)
    ids = tf.constant([[2, 10, 11, 3]], tf.int64)
    first, second = encoder(ids, training=True).numpy(), encoder(ids, training=True).numpy()
    assert np.abs(first - second).max() > 1e-3
    np.testing.assert_array_equal(encoder(ids, training=False), encoder(ids, training=False))
