"""Encoder presets are data: named sizes that match what the docs and the paper say."""
import dataclasses

import pytest

from ppm_tf.encoders.presets import PRESETS, FitConfig, TextEncoderConfig, preset


def test_paper_preset_is_bert_base_and_resnet_101():
    paper = preset("paper")
    assert (paper.text.num_layers, paper.text.hidden_size, paper.text.num_heads,
            paper.text.intermediate_size) == (12, 768, 12, 3072)
    assert paper.image.stackwise_blocks == (3, 4, 23, 3)
    assert paper.image.block_type == "block" and paper.image.image_size == 224


def test_every_preset_has_the_shared_defaults_and_serialises():
    for name, config in PRESETS.items():
        assert config.name == name and config.temperature == 0.05
        assert config.ep_threshold == 0.5
        assert config.to_json()["text"]["max_tokens"] == config.text.max_tokens
    assert (preset("tiny").text.num_layers, preset("tiny").text.hidden_size) == (2, 64)


def test_bad_presets_and_configs_are_rejected():
    with pytest.raises(ValueError, match="unknown encoder preset 'huge'"):
        preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        dataclasses.replace(preset("tiny").text, num_heads=3)
    with pytest.raises(ValueError, match="max_tokens"):
        TextEncoderConfig(vocab_size=10, max_tokens=2, num_layers=1, hidden_size=8, num_heads=2,
                          intermediate_size=8, output_dim=4)


def test_a_small_data_set_gets_enough_epochs_to_reach_min_steps():
    fit = FitConfig(epochs=3, batch_size=256, learning_rate=1e-3, min_steps=500)
    assert fit.epochs_for(200) == 3  # a large data set: the preset's epochs
    assert fit.epochs_for(14) == 36  # MovieLens' queries: 36 x 14 >= 500
    assert FitConfig(epochs=2, batch_size=8, learning_rate=1e-3).epochs_for(1) == 2
