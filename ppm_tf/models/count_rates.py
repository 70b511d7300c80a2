"""The count baseline as a row (``counts``): no learning, only what the logs plainly say.

Scores an impression by the user's and the candidate item's smoothed click (order) rates over
everything before the request, summed as logits on top of the data set's prior rate: the
baseline of ``../shared/tools/count_baseline.py``, computed from the example's own as-of count
features (``CountEncoding``), so it is scored, sliced and bootstrapped on exactly the rows every
model is, and a paired interval says whether a model beats it.
"""
from __future__ import annotations

import math

from ppm_tf import features
from ppm_tf.models.config import ModelConfig
from ppm_tf.models.layers import CountEncoding
from ppm_tf.models.tasks import RankingModel

# Positions of the whole log's smoothed rate logits in CountEncoding's output.
_ALL_WINDOW = features.COUNT_WINDOWS.index("all") * len(CountEncoding.ENCODED)
_CLICK = _ALL_WINDOW + CountEncoding.ENCODED.index("click_rate_logit")
_ORDER = _ALL_WINDOW + CountEncoding.ENCODED.index("order_rate_logit")


def _logit(rate: float) -> float:
    return math.log(rate / (1.0 - rate))


class CountRates(RankingModel):
    """``features -> {"click": [batch], "order": [batch]}`` logits; no trainable weights."""

    def __init__(self, count_priors: dict[str, float], config: ModelConfig | None = None,
                 **kwargs):
        super().__init__(config, **kwargs)
        self.counts = CountEncoding(count_priors["click_rate"], count_priors["order_rate"],
                                    name="count_encoding")
        self.prior_logits = (_logit(count_priors["click_rate"]),
                             _logit(count_priors["order_rate"]))

    def call(self, batch_features, training=None):
        click = order = 0.0
        for name in (features.USER_COUNTS, features.ITEM_COUNTS):
            encoded = self.counts(batch_features[name])
            click += encoded[:, _CLICK]
            order += encoded[:, _ORDER]
        return {"click": click + self.prior_logits[0], "order": order + self.prior_logits[1]}
