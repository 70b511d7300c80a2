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


def prior_logits(count_priors: dict[str, float]) -> tuple[float, float]:
    """The data set's prior click and order rates as logits."""
    return _logit(count_priors["click_rate"]), _logit(count_priors["order_rate"])


def count_baseline_logits(encoded_user, encoded_item, priors: tuple[float, float]):
    """``(click, order)`` [batch] logits of the count baseline, from the user's and the item's
    ``CountEncoding`` outputs and ``prior_logits``."""
    click = encoded_user[:, _CLICK] + encoded_item[:, _CLICK] + priors[0]
    order = encoded_user[:, _ORDER] + encoded_item[:, _ORDER] + priors[1]
    return click, order


class CountRates(RankingModel):
    """``features -> {"click": [batch], "order": [batch]}`` logits; no trainable weights."""

    def __init__(self, count_priors: dict[str, float], config: ModelConfig | None = None,
                 **kwargs):
        super().__init__(config, **kwargs)
        self.counts = CountEncoding(count_priors["click_rate"], count_priors["order_rate"],
                                    name="count_encoding")
        self.prior_logits = prior_logits(count_priors)

    def call(self, batch_features, training=None):
        click, order = count_baseline_logits(self.counts(batch_features[features.USER_COUNTS]),
                                             self.counts(batch_features[features.ITEM_COUNTS]),
                                             self.prior_logits)
        return {"click": click, "order": order}
