"""Starting the encoders from pre-trained weights on local disk (nothing is downloaded).

**BERT** (text): a directory in the layout of Google's BERT releases (e.g. the unzipped
``uncased_L-12_H-768_A-12``)::

    DIR/bert_config.json         hidden_size, num_hidden_layers, num_attention_heads, ...
    DIR/vocab.txt                the WordPiece vocabulary (used instead of learning one)
    DIR/bert_model.ckpt.index    a TF1 name-based checkpoint (+ .data-* shards)

Variables are read by name (``bert/encoder/layer_0/attention/self/query/kernel``, ...) with
``tf.train.load_checkpoint``; the pooler and the pre-training heads are not used (the ME layer
mean-pools). Lower-casing follows the vocabulary: a vocabulary without capitalised words is
an uncased model. The encoder's architecture comes from bert_config.json, so any BERT size
loads, not only BERT-base.

**ResNet** (image): an HDF5 weights file, either
- ``keras.applications`` ResNet weights (``resnet101_weights_tf_dim_ordering_tf_kernels_
  notop.h5``, as Keras caches them in ``~/.keras/models/``): converted by layer name
  (``conv4_block7_2_conv`` -> ``v2_stack_2_block7_2_conv``); their convolution biases are
  folded into the following BatchNorm's moving mean, because keras-cv's convolutions have no
  bias, and the encoder then feeds pixels the way those weights expect (``"caffe"``);
- or weights saved from a ``keras_cv.models.ResNetBackbone`` of the same stacks
  (``backbone.save_weights(path)``, tf-keras HDF5 or TF checkpoint), loaded as they are.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.encoders.image import ImageEncoder
from ppm_tf.encoders.presets import TextEncoderConfig
from ppm_tf.encoders.text import TextEncoder

BERT_CONFIG, BERT_VOCAB, BERT_CHECKPOINT = "bert_config.json", "vocab.txt", "bert_model.ckpt"
KERAS_APPLICATIONS, BACKBONE = "keras_applications", "backbone"
_APPLICATIONS_LAYER = re.compile(r"^conv(\d+)_block(\d+)_(\d)_(conv|bn)$")


@dataclasses.dataclass(frozen=True)
class BertCheckpoint:
    """The three files of a local BERT release and what they imply."""

    config: dict
    vocab_path: str
    checkpoint_prefix: str
    lower_case: bool

    @classmethod
    def open(cls, directory: str) -> "BertCheckpoint":
        paths = {name: os.path.join(directory, name) for name in (BERT_CONFIG, BERT_VOCAB)}
        for name, path in paths.items():
            if not tf.io.gfile.exists(path):
                raise FileNotFoundError(f"BERT checkpoint directory {directory} lacks {name}")
        prefix = os.path.join(directory, BERT_CHECKPOINT)
        if not tf.io.gfile.exists(prefix + ".index"):
            prefix = tf.train.latest_checkpoint(directory)
            if prefix is None:
                raise FileNotFoundError(f"no {BERT_CHECKPOINT}.index (or other checkpoint) in "
                                        f"{directory}")
        with tf.io.gfile.GFile(paths[BERT_CONFIG], "r") as handle:
            config = json.load(handle)
        with tf.io.gfile.GFile(paths[BERT_VOCAB], "r") as handle:
            tokens = [line.rstrip("\n") for line in handle]
        # Cased vocabularies hold capitalised words; "[CLS]"-style tokens do not count.
        lower_case = not any(token[:1].isupper() for token in tokens if token[:1] != "[")
        return cls(config, paths[BERT_VOCAB], prefix, lower_case)

    def text_config(self, base: TextEncoderConfig) -> TextEncoderConfig:
        """``base`` with the checkpoint's architecture (sizes, vocabulary, positions)."""
        config = self.config
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"BERT hidden_act {config['hidden_act']!r} is not supported "
                             "(only gelu)")
        return dataclasses.replace(
            base, vocab_size=config["vocab_size"], num_layers=config["num_hidden_layers"],
            hidden_size=config["hidden_size"], num_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            max_positions=config.get("max_position_embeddings", 512),
            max_tokens=min(base.max_tokens, config.get("max_position_embeddings", 512)))


def _bert_variables(encoder: TextEncoder) -> dict[str, tuple[tf.Variable, tuple[int, ...]]]:
    """BERT checkpoint name -> (our variable, its shape). BERT stores attention kernels as
    ``[hidden, hidden]``; Keras' MultiHeadAttention splits heads (``[hidden, heads, head_dim]``,
    output ``[heads, head_dim, hidden]``) in the same row-major order, so a reshape maps them."""
    names = {
        "bert/embeddings/word_embeddings": encoder.word_embeddings.embeddings,
        "bert/embeddings/position_embeddings": encoder.position_embeddings,
        "bert/embeddings/token_type_embeddings": encoder.token_type_embeddings,
        "bert/embeddings/LayerNorm/gamma": encoder.embedding_norm.gamma,
        "bert/embeddings/LayerNorm/beta": encoder.embedding_norm.beta,
    }
    for index, block in enumerate(encoder.blocks):
        layer = f"bert/encoder/layer_{index}"
        attention = block.attention
        for part, dense in (("query", attention._query_dense), ("key", attention._key_dense),
                            ("value", attention._value_dense)):
            names[f"{layer}/attention/self/{part}/kernel"] = dense.kernel
            names[f"{layer}/attention/self/{part}/bias"] = dense.bias
        names[f"{layer}/attention/output/dense/kernel"] = attention._output_dense.kernel
        names[f"{layer}/attention/output/dense/bias"] = attention._output_dense.bias
        names[f"{layer}/attention/output/LayerNorm/gamma"] = block.attention_norm.gamma
        names[f"{layer}/attention/output/LayerNorm/beta"] = block.attention_norm.beta
        names[f"{layer}/intermediate/dense/kernel"] = block.intermediate.kernel
        names[f"{layer}/intermediate/dense/bias"] = block.intermediate.bias
        names[f"{layer}/output/dense/kernel"] = block.output_dense.kernel
        names[f"{layer}/output/dense/bias"] = block.output_dense.bias
        names[f"{layer}/output/LayerNorm/gamma"] = block.output_norm.gamma
        names[f"{layer}/output/LayerNorm/beta"] = block.output_norm.beta
    return {name: (variable, tuple(variable.shape)) for name, variable in names.items()}


def load_bert_checkpoint(encoder: TextEncoder, checkpoint_prefix: str) -> int:
    """Assigns a BERT checkpoint's weights to ``encoder``; returns how many were loaded.

    The encoder is built first if needed; the projection head keeps its initialisation.
    Raises ``ValueError`` naming the variable when a weight is missing or its size differs.
    """
    if not encoder.built or not encoder.blocks[0].built:
        encoder(tf.ones([1, 2], tf.int64))
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    stored = reader.get_variable_to_shape_map()
    variables = _bert_variables(encoder)
    for name, (variable, shape) in variables.items():
        if name not in stored:
            raise ValueError(f"BERT checkpoint {checkpoint_prefix} lacks {name}")
        value = reader.get_tensor(name)
        if value.size != int(np.prod(shape)):
            raise ValueError(f"BERT checkpoint {name} has shape {value.shape}; the encoder "
                             f"expects {shape} (check bert_config.json)")
        variable.assign(value.reshape(shape).astype(variable.dtype.as_numpy_dtype))
    return len(variables)


def resnet_weights_format(path: str) -> str:
    """``"keras_applications"`` or ``"backbone"``: how ``load_resnet_weights`` reads ``path``."""
    if not path.endswith((".h5", ".hdf5")):
        return BACKBONE  # a TF checkpoint prefix
    import h5py

    with h5py.File(path, "r") as handle:
        names = [name.decode() if isinstance(name, bytes) else name
                 for name in handle.attrs.get("layer_names", [])]
    return KERAS_APPLICATIONS if "conv1_conv" in names and any(
        _APPLICATIONS_LAYER.match(name) for name in names) else BACKBONE


def _read_applications_h5(path: str) -> dict[str, dict[str, np.ndarray]]:
    """layer name -> {"kernel"/"bias"/"gamma"/...: value} of a keras.applications h5 file."""
    import h5py

    layers = {}
    with h5py.File(path, "r") as handle:
        for layer in handle.attrs["layer_names"]:
            layer = layer.decode() if isinstance(layer, bytes) else layer
            group = handle[layer]
            weights = {}
            for weight in group.attrs.get("weight_names", []):
                weight = weight.decode() if isinstance(weight, bytes) else weight
                weights[weight.split("/")[-1].split(":")[0]] = np.asarray(group[weight])
            if weights:
                layers[layer] = weights
    return layers


def fold_conv_bias(bias: np.ndarray, batch_norm: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """BatchNorm weights that, after a bias-free convolution, give BN(conv + bias).

    BN normalises ``x - moving_mean``, so a constant ``bias`` on ``x`` moves into the mean.
    """
    return {**batch_norm, "moving_mean": batch_norm["moving_mean"] - bias}


def _backbone_name(applications_name: str) -> str:
    if applications_name in ("conv1_conv", "conv1_bn"):
        return applications_name
    stage, block, index, kind = _APPLICATIONS_LAYER.match(applications_name).groups()
    return f"v2_stack_{int(stage) - 2}_block{block}_{index}_{kind}"


def load_resnet_weights(encoder: ImageEncoder, path: str) -> int:
    """Loads ImageNet (or other) weights into ``encoder.backbone``; returns the number of
    layers set. See the module docstring for the formats. Layer names or shapes that do not
    match raise ``ValueError`` naming the layer."""
    if resnet_weights_format(path) == BACKBONE:
        encoder.backbone.load_weights(path)
        return len([layer for layer in encoder.backbone.layers if layer.weights])
    source = _read_applications_h5(path)
    targets = {layer.name: layer for layer in encoder.backbone.layers if layer.weights}
    loaded = 0
    for name, weights in source.items():
        if not name.endswith("_conv"):
            continue
        conv_name, bn_name = _backbone_name(name), _backbone_name(name[:-5] + "_bn")
        if conv_name not in targets or bn_name not in targets:
            raise ValueError(f"ResNet weights {path}: layer {name} has no counterpart "
                             f"{conv_name} in the image encoder (stacks differ?)")
        batch_norm = source[name[:-5] + "_bn"]
        if "bias" in weights:
            batch_norm = fold_conv_bias(weights["bias"], batch_norm)
        _assign(targets[conv_name], [weights["kernel"]], name)
        _assign(targets[bn_name], [batch_norm[key] for key in
                                   ("gamma", "beta", "moving_mean", "moving_variance")], name)
        loaded += 2
    expected = len(targets)
    if loaded != expected:
        raise ValueError(f"ResNet weights {path} set {loaded} of the backbone's {expected} "
                         "layers with weights (stacks differ?)")
    return loaded


def _assign(layer: tf.keras.layers.Layer, values: list[np.ndarray], source: str) -> None:
    shapes = [tuple(weight.shape) for weight in layer.weights]
    if shapes != [value.shape for value in values]:
        raise ValueError(f"ResNet weights: {source} has shapes {[v.shape for v in values]}, "
                         f"layer {layer.name} expects {shapes}")
    layer.set_weights(values)
