"""Loading local pre-trained weights: a BERT release (checked against a numpy BERT computed
from the checkpoint's own arrays) and keras.applications ResNet weights (bias folding)."""
import json

import numpy as np
import pytest

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.encoders import pretrained
from ppm_tf.encoders.image import ImageEncoder
from ppm_tf.encoders.presets import preset
from ppm_tf.encoders.text import TextEncoder

# keras-cv's Backbone probes deprecated tf-keras properties whenever it is saved or listed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`(layer|Model)\.(state_)?updates` will be removed:UserWarning")

HIDDEN, HEADS, LAYERS, INTERMEDIATE, VOCAB, POSITIONS = 16, 2, 2, 32, 30, 20


def bert_arrays(rng) -> dict[str, np.ndarray]:
    """A random BERT checkpoint's arrays under the original release's names and shapes."""
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


def write_bert_release(directory, arrays, vocab) -> None:
    """Writes bert_config.json, vocab.txt and a TF1 name-based bert_model.ckpt."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bert_config.json").write_text(json.dumps({
        "hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE, "vocab_size": VOCAB, "hidden_act": "gelu",
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2}))
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in vocab))
    names = sorted(arrays)
    tf.raw_ops.SaveV2(prefix=str(directory / "bert_model.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[name]) for name in names])


def numpy_bert(arrays, ids: np.ndarray) -> np.ndarray:
    """BERT's forward pass (segment 0, padding id 0 masked) -> last hidden states."""
    def layer_norm(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * arrays[f"{name}/gamma"] + arrays[f"{name}/beta"]

    def dense(x, name):
        return x @ arrays[f"{name}/kernel"] + arrays[f"{name}/bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))

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


VOCAB_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{n}" for n in range(25)]


@pytest.fixture
def bert_release(tmp_path):
    arrays = bert_arrays(np.random.default_rng(0))
    write_bert_release(tmp_path / "bert", arrays, VOCAB_TOKENS)
    return tmp_path / "bert", arrays


def test_bert_checkpoint_gives_the_reference_hidden_states(bert_release):
    directory, arrays = bert_release
    release = pretrained.BertCheckpoint.open(str(directory))
    config = release.text_config(preset("tiny").text)
    assert (config.hidden_size, config.num_layers, config.num_heads, config.vocab_size,
            config.max_positions) == (HIDDEN, LAYERS, HEADS, VOCAB, POSITIONS)
    assert release.lower_case and release.vocab_path.endswith("vocab.txt")
    encoder = TextEncoder.from_config_preset(config, VOCAB)
    assert pretrained.load_bert_checkpoint(encoder, release.checkpoint_prefix) == 5 + 16 * LAYERS
    ids = np.array([[2, 7, 9, 11, 3, 0, 0], [2, 5, 3, 0, 0, 0, 0]])
    states = encoder.hidden_states(tf.constant(ids), training=False).numpy()
    real = ids != 0
    np.testing.assert_allclose(states[real], numpy_bert(arrays, ids)[real], atol=2e-4)


def test_a_cased_vocabulary_turns_lower_casing_off(tmp_path):
    write_bert_release(tmp_path / "cased", bert_arrays(np.random.default_rng(1)),
                       VOCAB_TOKENS[:-2] + ["The", "Paris"])
    assert not pretrained.BertCheckpoint.open(str(tmp_path / "cased")).lower_case


def test_bert_errors_name_the_missing_piece(tmp_path, bert_release):
    directory, arrays = bert_release
    with pytest.raises(FileNotFoundError, match="lacks bert_config.json"):
        pretrained.BertCheckpoint.open(str(tmp_path))
    del arrays["bert/encoder/layer_1/output/dense/bias"]
    write_bert_release(tmp_path / "broken", arrays, VOCAB_TOKENS)
    encoder = TextEncoder(VOCAB, HIDDEN, LAYERS, HEADS, INTERMEDIATE, 8, POSITIONS)
    with pytest.raises(ValueError, match="lacks bert/encoder/layer_1/output/dense/bias"):
        pretrained.load_bert_checkpoint(encoder, str(tmp_path / "broken" / "bert_model.ckpt"))
    wider = TextEncoder(VOCAB, 2 * HIDDEN, LAYERS, HEADS, INTERMEDIATE, 8, POSITIONS)
    with pytest.raises(ValueError, match="word_embeddings has shape"):
        pretrained.load_bert_checkpoint(wider, str(directory / "bert_model.ckpt"))


def applications_resnet(input_size=32):
    """A two-stack ResNet built with keras.applications' own builder (biased convolutions)."""
    from tf_keras.src.applications import resnet

    def stacks(x):
        x = resnet.stack1(x, 8, 1, stride1=1, name="conv2")
        return resnet.stack1(x, 16, 1, name="conv3")

    return resnet.ResNet(stacks, preact=False, use_bias=True, model_name="tiny_resnet",
                         include_top=False, weights=None, input_shape=(input_size, input_size, 3))


def test_keras_applications_weights_load_with_biases_folded(tmp_path):
    tf.keras.utils.set_random_seed(0)
    source = applications_resnet()
    rng = np.random.default_rng(0)
    for layer in source.layers:  # non-trivial BatchNorm statistics and biases
        if layer.weights:
            layer.set_weights([rng.normal(0.5, 0.1, w.shape).astype(np.float32)
                               for w in layer.get_weights()])
    path = str(tmp_path / "resnet_notop.h5")
    source.save_weights(path)
    assert pretrained.resnet_weights_format(path) == pretrained.KERAS_APPLICATIONS

    encoder = ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 8, pixel_scaling="caffe")
    assert pretrained.load_resnet_weights(encoder, path) == 2 * 9
    by_name = {layer.name: layer for layer in encoder.backbone.layers}
    conv = source.get_layer("conv3_block1_2_conv")
    batch_norm = source.get_layer("conv3_block1_2_bn")
    np.testing.assert_array_equal(by_name["v2_stack_1_block1_2_conv"].get_weights()[0],
                                  conv.get_weights()[0])
    gamma, beta, mean, variance = by_name["v2_stack_1_block1_2_bn"].get_weights()
    np.testing.assert_allclose(mean, batch_norm.get_weights()[2] - conv.get_weights()[1],
                               rtol=1e-6)
    # The folded pair computes what the biased pair computed.
    x = tf.random.normal([2, 4, 4, 16])
    expected = batch_norm(conv(x), training=False)
    folded = by_name["v2_stack_1_block1_2_bn"](by_name["v2_stack_1_block1_2_conv"](x),
                                               training=False)
    np.testing.assert_allclose(folded.numpy(), expected.numpy(), atol=1e-4)


def test_backbone_weights_load_as_they_are_and_mismatches_are_named(tmp_path):
    first = ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 8)
    path = str(tmp_path / "backbone.h5")
    first.backbone.save_weights(path)
    assert pretrained.resnet_weights_format(path) == pretrained.BACKBONE
    second = ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 8)
    pretrained.load_resnet_weights(second, path)
    for left, right in zip(first.backbone.weights, second.backbone.weights):
        np.testing.assert_array_equal(left.numpy(), right.numpy())

    source_path = str(tmp_path / "applications.h5")
    applications_resnet().save_weights(source_path)
    deeper = ImageEncoder(32, [8, 16, 32], [1, 1, 1], [1, 2, 2], "block", 8)
    with pytest.raises(ValueError, match="stacks differ"):
        pretrained.load_resnet_weights(deeper, source_path)
