"""Starting the image encoder from pre-trained ResNet weights on local disk (nothing is
downloaded; the text encoder's checkpoints are ``bert_checkpoint``'s).

The weights are an HDF5 file, either
- ``keras.applications`` ResNet weights (``resnet101_weights_tf_dim_ordering_tf_kernels_
  notop.h5``, as Keras caches them in ``~/.keras/models/``): converted by layer name
  (``conv4_block7_2_conv`` -> ``v2_stack_2_block7_2_conv``); their convolution biases are
  folded into the following BatchNorm's moving mean, because keras-cv's convolutions have no
  bias, and the encoder then feeds pixels the way those weights expect (``"caffe"``);
- or weights saved from a ``keras_cv.models.ResNetBackbone`` of the same stacks
  (``backbone.save_weights(path)``, tf-keras HDF5 or TF checkpoint), loaded as they are.
"""
from __future__ import annotations

import re

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.encoders.image import ImageEncoder

KERAS_APPLICATIONS, BACKBONE = "keras_applications", "backbone"
_APPLICATIONS_LAYER = re.compile(r"^conv(\d+)_block(\d+)_(\d)_(conv|bn)$")


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
