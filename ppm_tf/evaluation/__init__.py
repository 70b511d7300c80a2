"""Offline evaluation: the paper's table from eval-split predictions (``evaluate``), and its
report (``report``, which needs no TensorFlow)."""

# The slices every metric is reported on: all eval impressions, and those of cold and warm
# items (``features.is_cold_item``).
SLICES = ("overall", "cold", "warm")
