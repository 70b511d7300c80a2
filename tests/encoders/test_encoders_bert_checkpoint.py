"""Pre-trained BERT-family checkpoints in both layouts, written by the tests with random
weights and checked against a numpy BERT computed from the same arrays: Google's release
(TF1 checkpoint, tanh GELU, the text's own tokens pooled) and Hugging Face's (safetensors,
``[out, in]`` kernels, exact GELU, the config's LayerNorm epsilon, sentence-transformers'
pooling)."""
import json
import math

import numpy as np
import pytest
from safetensors.numpy import save_file

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.encoders import bert_checkpoint
from ppm_tf.encoders.presets import GELU, GELU_TANH, POOL_CLS, POOL_MEAN_TOKENS, preset
from ppm_tf.encoders.text import TextEncoder, pooling_mask
from ppm_tf.encoders.tokenizer import TextTokenizer

HIDDEN, HEADS, LAYERS, INTERMEDIATE, VOCAB, POSITIONS = 16, 2, 2, 32, 30, 20
VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{n}" for n in range(25)]
IDS = np.array([[2, 7, 9, 11, 3, 0, 0], [2, 5, 3, 0, 0, 0, 0], [2, 3, 0, 0, 0, 0, 0]])


def bert_arrays(rng) -> dict[str, np.ndarray]:
    """A random BERT's arrays under Google's names and shapes (kernels ``[in, out]``)."""
    def normal(*shape):
        return rng.normal(0, 0.2, shape).astype(np.float32)

    arrays = {"bert/embeddings/word_embeddings": normal(VOCAB, HIDDEN),
              "bert/embeddings/position_embeddings": normal(POSITIONS, HIDDEN),
              "bert/embeddings/token_type_embeddings": normal(2, HIDDEN),
              "bert/embeddings/LayerNorm/gamma": 1 + normal(HIDDEN),
              "bert/embeddings/LayerNorm/beta": normal(HIDDEN),
              "bert/pooler/dense/kernel": normal(HIDDEN, HIDDEN)}
    for layer in range(LAYERS):
        prefix = f"bert/encoder/layer_{layer}"
        for part in ("query", "key", "value"):
            arrays[f"{prefix}/attention/self/{part}/kernel"] = normal(HIDDEN, HIDDEN)
            arrays[f"{prefix}/attention/self/{part}/bias"] = normal(HIDDEN)
        for name, shape in (("attention/output/dense", (HIDDEN, HIDDEN)),
                            ("intermediate/dense", (HIDDEN, INTERMEDIATE)),
                            ("output/dense", (INTERMEDIATE, HIDDEN))):
            arrays[f"{prefix}/{name}/kernel"] = normal(*shape)
            arrays[f"{prefix}/{name}/bias"] = normal(shape[1])
        for name in ("attention/output/LayerNorm", "output/LayerNorm"):
            arrays[f"{prefix}/{name}/gamma"] = 1 + normal(HIDDEN)
            arrays[f"{prefix}/{name}/beta"] = normal(HIDDEN)
    return arrays


def bert_config(**overrides) -> dict:
    return {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "intermediate_size": INTERMEDIATE, "vocab_size": VOCAB, "hidden_act": "gelu",
            "max_position_embeddings": POSITIONS, "type_vocab_size": 2, **overrides}


def write_google_release(directory, arrays, vocab) -> None:
    """Writes bert_config.json, vocab.txt and a TF1 name-based bert_model.ckpt."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bert_config.json").write_text(json.dumps(bert_config()))
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in vocab))
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=str(directory / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[name]) for name in names])


def hugging_face_name(google: str) -> tuple[str, bool]:
    """Google's name -> (PyTorch BertModel's name, whether its value is transposed),
    written out by hand from the two models' definitions."""
    path = google.split("/")[1:]
    leaf = path[-1]
    if path[0] == "embeddings" and leaf != "gamma" and leaf != "beta":
        return ".".join(path) + ".weight", False
    if leaf in ("gamma", "beta"):
        return ".".join(path[:-1]) + (".weight" if leaf == "gamma" else ".bias"), False
    module = ".".join(part.replace("layer_", "layer.") for part in path[:-1])
    return module + (".weight" if leaf == "kernel" else ".bias"), leaf == "kernel"


def write_hugging_face(directory, arrays, vocab, *, config=None, pooling="mean_tokens",
                       lower_case=True, prefix="", modules=None) -> None:
    """Writes the Hugging Face + sentence-transformers layout: config.json,
    model.safetensors (PyTorch names, Linear weights ``[out, in]``, a ``position_ids``
    buffer), vocab.txt, tokenizer_config.json, modules.json and 1_Pooling/config.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(
        config or bert_config(model_type="bert", layer_norm_eps=1e-2)))
    tensors = {"embeddings.position_ids": np.arange(POSITIONS, dtype=np.int64)[None]}
    for name, value in arrays.items():
        torch_name, transposed = hugging_face_name(name)
        tensors[prefix + torch_name] = np.ascontiguousarray(value.T if transposed else value)
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in vocab))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": lower_case, "tokenizer_class": "BertTokenizer"}))
    (directory / "modules.json").write_text(json.dumps(modules or [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"}]))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": HIDDEN,
        **{f"pooling_mode_{mode}": mode == pooling for mode in (
            "cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}}))


def gelu_exact(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def numpy_bert(arrays, ids: np.ndarray, gelu=gelu_tanh, epsilon=1e-12) -> np.ndarray:
    """BERT's forward pass (segment 0, padding id 0 masked) -> last hidden states."""
    def layer_norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + epsilon) * arrays[f"{name}/gamma"] + arrays[
            f"{name}/beta"]

    def dense(x, name):
        return x @ arrays[f"{name}/kernel"] + arrays[f"{name}/bias"]

    batch, length = ids.shape
    x = (arrays["bert/embeddings/word_embeddings"][ids]
         + arrays["bert/embeddings/position_embeddings"][:length]
         + arrays["bert/embeddings/token_type_embeddings"][0])
    x = layer_norm(x, "bert/embeddings/LayerNorm")
    mask = np.where(ids != 0, 0.0, -1e9)[:, None, None, :]
    head = HIDDEN // HEADS
    for layer in range(LAYERS):
        prefix = f"bert/encoder/layer_{layer}"

        def heads(name):
            return dense(x, f"{prefix}/attention/self/{name}").reshape(
                batch, length, HEADS, head).transpose(0, 2, 1, 3)

        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2) / np.sqrt(head) + mask
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ heads("value")).transpose(0, 2, 1, 3).reshape(batch, length, HIDDEN)
        x = layer_norm(x + dense(context, f"{prefix}/attention/output/dense"),
                       f"{prefix}/attention/output/LayerNorm")
        inner = gelu(dense(x, f"{prefix}/intermediate/dense"))
        x = layer_norm(x + dense(inner, f"{prefix}/output/dense"), f"{prefix}/output/LayerNorm")
    return x


def sentence_vectors(states: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the states over the tokens, then L2 normalisation."""
    pooled = (states * weights[:, :, None]).sum(1) / weights.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def checkpoint_encoder(directory):
    checkpoint = bert_checkpoint.BertCheckpoint.open(str(directory))
    config = checkpoint.text_config(preset("tiny").text)
    encoder = TextEncoder.from_config_preset(config, config.vocab_size)
    loaded = bert_checkpoint.load_bert_checkpoint(encoder, checkpoint)
    return checkpoint, config, encoder, loaded


@pytest.fixture
def arrays():
    return bert_arrays(np.random.default_rng(0))


def test_google_release_gives_the_reference_states_and_vectors(tmp_path, arrays):
    write_google_release(tmp_path / "bert", arrays, VOCAB_TOKENS)
    checkpoint, config, encoder, loaded = checkpoint_encoder(tmp_path / "bert")
    assert checkpoint.layout == bert_checkpoint.GOOGLE and checkpoint.lower_case
    assert (config.hidden_size, config.num_layers, config.num_heads, config.vocab_size,
            config.max_positions, config.hidden_act) == (HIDDEN, LAYERS, HEADS, VOCAB,
                                                         POSITIONS, GELU_TANH)
    assert config.output_dim is None and encoder.vector_dim == HIDDEN  # no projection
    assert loaded == 5 + 16 * LAYERS
    states = encoder.hidden_states(tf.constant(IDS), training=False).numpy()
    reference = numpy_bert(arrays, IDS)
    real = IDS != 0
    np.testing.assert_allclose(states[real], reference[real], atol=2e-4)
    vectors = encoder(tf.constant(IDS), training=False).numpy()
    expected = sentence_vectors(reference, pooling_mask(tf.constant(IDS)).numpy())
    np.testing.assert_allclose(vectors, expected, atol=2e-4)


def test_a_cased_google_vocabulary_turns_lower_casing_off(tmp_path, arrays):
    write_google_release(tmp_path / "cased", arrays, VOCAB_TOKENS[:-2] + ["The", "Paris"])
    assert not bert_checkpoint.BertCheckpoint.open(str(tmp_path / "cased")).lower_case


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_hugging_face_checkpoint_gives_the_reference_sentence_vectors(tmp_path, arrays, prefix):
    write_hugging_face(tmp_path / "hf", arrays, VOCAB_TOKENS, prefix=prefix)
    checkpoint, config, encoder, loaded = checkpoint_encoder(tmp_path / "hf")
    assert checkpoint.layout == bert_checkpoint.HUGGING_FACE
    assert (config.hidden_act, config.layer_norm_epsilon, config.pooling, config.output_dim) == (
        GELU, 1e-2, POOL_MEAN_TOKENS, None)
    assert loaded == 5 + 16 * LAYERS
    # The tolerance tells the exact GELU from its tanh form (they differ by 4e-4 here) and
    # the config's epsilon from BERT's usual 1e-12.
    reference = numpy_bert(arrays, IDS, gelu=gelu_exact, epsilon=1e-2)
    real = IDS != 0
    states = encoder.hidden_states(tf.constant(IDS), training=False).numpy()
    np.testing.assert_allclose(states[real], reference[real], atol=1e-4)
    # sentence-transformers' mean pooling: every real token, [CLS] and [SEP] included.
    expected = sentence_vectors(reference, real.astype(np.float64))
    np.testing.assert_allclose(encoder(tf.constant(IDS), training=False).numpy(), expected,
                               atol=1e-4)
    shorter = IDS[:, :5]  # padding never changes a vector
    np.testing.assert_allclose(encoder(tf.constant(shorter), training=False).numpy(),
                               expected, atol=1e-4)


def test_hugging_face_cls_pooling_and_tanh_gelu_follow_the_configs(tmp_path, arrays):
    write_hugging_face(tmp_path / "hf", arrays, VOCAB_TOKENS, pooling="cls_token",
                       config=bert_config(hidden_act="gelu_new"))
    _, config, encoder, _ = checkpoint_encoder(tmp_path / "hf")
    assert (config.pooling, config.hidden_act, config.layer_norm_epsilon) == (
        POOL_CLS, GELU_TANH, 1e-12)
    reference = numpy_bert(arrays, IDS, gelu=gelu_tanh)
    expected = sentence_vectors(reference, (np.arange(IDS.shape[1]) == 0)[None].repeat(3, 0))
    np.testing.assert_allclose(encoder(tf.constant(IDS), training=False).numpy(), expected,
                               atol=2e-4)


def test_hugging_face_tokenizer_settings_reach_the_tokenizer(tmp_path, arrays):
    vocab = VOCAB_TOKENS[:-3] + ["the", "The", "cafe"]
    write_hugging_face(tmp_path / "cased", arrays, vocab, lower_case=False)
    cased = bert_checkpoint.BertCheckpoint.open(str(tmp_path / "cased"))
    assert not cased.lower_case
    tokenizer = TextTokenizer(cased.vocab_path, 8, lower_case=cased.lower_case)
    assert tokenizer(tf.constant(["The the"])).numpy()[0, 1:3].tolist() == [28, 27]

    write_hugging_face(tmp_path / "uncased", arrays, vocab, lower_case=True)
    uncased = bert_checkpoint.BertCheckpoint.open(str(tmp_path / "uncased"))
    tokenizer = TextTokenizer(uncased.vocab_path, 8, lower_case=uncased.lower_case)
    # Lower-cased and accents stripped, as Hugging Face's BertTokenizer does.
    assert tokenizer(tf.constant(["The CAFÉ"])).numpy()[0, 1:3].tolist() == [27, 29]


def test_sentence_transformers_max_seq_length_caps_the_tokens(tmp_path, arrays):
    write_hugging_face(tmp_path / "hf", arrays, VOCAB_TOKENS)
    (tmp_path / "hf" / "sentence_bert_config.json").write_text(json.dumps(
        {"max_seq_length": 12, "do_lower_case": False}))
    checkpoint = bert_checkpoint.BertCheckpoint.open(str(tmp_path / "hf"))
    assert checkpoint.text_config(preset("demo").text).max_tokens == 12  # demo: 32


def test_google_names_of_hugging_face_weights():
    assert bert_checkpoint.google_name("bert.encoder.layer.11.attention.self.query.weight") == (
        "bert/encoder/layer_11/attention/self/query/kernel", True)
    assert bert_checkpoint.google_name("encoder.layer.0.output.LayerNorm.weight") == (
        "bert/encoder/layer_0/output/LayerNorm/gamma", False)
    assert bert_checkpoint.google_name("embeddings.word_embeddings.weight") == (
        "bert/embeddings/word_embeddings", False)
    for unused in ("embeddings.position_ids", "cls.predictions.bias",
                   "cls.predictions.transform.dense.weight"):
        assert bert_checkpoint.google_name(unused) is None


def test_checkpoint_errors_name_the_missing_or_unsupported_piece(tmp_path, arrays):
    with pytest.raises(FileNotFoundError, match="lacks bert_config.json .* and config.json"):
        bert_checkpoint.BertCheckpoint.open(str(tmp_path))

    del arrays["bert/encoder/layer_1/output/dense/bias"]
    write_google_release(tmp_path / "broken", arrays, VOCAB_TOKENS)
    with pytest.raises(ValueError, match="lacks bert/encoder/layer_1/output/dense/bias"):
        checkpoint_encoder(tmp_path / "broken")

    arrays = bert_arrays(np.random.default_rng(1))
    write_hugging_face(tmp_path / "max", arrays, VOCAB_TOKENS, pooling="max_tokens")
    with pytest.raises(ValueError, match=r"pooling \['pooling_mode_max_tokens'\] is not"):
        bert_checkpoint.BertCheckpoint.open(str(tmp_path / "max"))

    write_hugging_face(tmp_path / "dense", arrays, VOCAB_TOKENS, modules=[
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])
    with pytest.raises(ValueError, match=r"models.Dense'\] are not supported"):
        bert_checkpoint.BertCheckpoint.open(str(tmp_path / "dense"))

    write_hugging_face(tmp_path / "roberta", arrays, VOCAB_TOKENS,
                       config=bert_config(model_type="roberta"))
    with pytest.raises(ValueError, match="model_type 'roberta' is not BERT-family"):
        bert_checkpoint.BertCheckpoint.open(str(tmp_path / "roberta"))

    write_hugging_face(tmp_path / "torch_only", arrays, VOCAB_TOKENS)
    (tmp_path / "torch_only" / "model.safetensors").rename(
        tmp_path / "torch_only" / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="lacks model.safetensors"):
        bert_checkpoint.BertCheckpoint.open(str(tmp_path / "torch_only"))

    write_hugging_face(tmp_path / "wide", arrays, VOCAB_TOKENS,
                       config=bert_config(hidden_size=2 * HIDDEN))
    with pytest.raises(ValueError, match="word_embeddings has shape"):
        checkpoint_encoder(tmp_path / "wide")
