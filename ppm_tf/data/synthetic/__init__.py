"""The synthetic e-commerce world: the embedded default data set, with a known truth.

Items with attributes rendered into titles and product images, users with drifting content
tastes and id-only effects, day-by-day impressions with exposure bias, a behaviour effect and
new items every day, and a search log. Each impression's true click and order probability is
stored apart from model features, so the oracle AUC, the ceiling for every model, is known.
"""
from ppm_tf.data.synthetic.config import PRESETS, WorldConfig, preset
from ppm_tf.data.synthetic.report import format_summary
from ppm_tf.data.synthetic.world import generate_world

__all__ = ["PRESETS", "WorldConfig", "format_summary", "generate_world", "preset"]
