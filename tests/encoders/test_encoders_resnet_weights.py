"""Loading keras.applications ResNet weights (bias folding) and keras-cv backbone weights."""
import numpy as np
import pytest

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.encoders import resnet_weights
from ppm_tf.encoders.image import ImageEncoder

# keras-cv's Backbone probes deprecated tf-keras properties whenever it is saved or listed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`(layer|Model)\.(state_)?updates` will be removed:UserWarning")


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
    assert resnet_weights.resnet_weights_format(path) == resnet_weights.KERAS_APPLICATIONS

    encoder = ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 8, pixel_scaling="caffe")
    assert resnet_weights.load_resnet_weights(encoder, path) == 2 * 9
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
    assert resnet_weights.resnet_weights_format(path) == resnet_weights.BACKBONE
    second = ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 8)
    resnet_weights.load_resnet_weights(second, path)
    for left, right in zip(first.backbone.weights, second.backbone.weights):
        np.testing.assert_array_equal(left.numpy(), right.numpy())

    source_path = str(tmp_path / "applications.h5")
    applications_resnet().save_weights(source_path)
    deeper = ImageEncoder(32, [8, 16, 32], [1, 1, 1], [1, 2, 2], "block", 8)
    with pytest.raises(ValueError, match="stacks differ"):
        resnet_weights.load_resnet_weights(deeper, source_path)
