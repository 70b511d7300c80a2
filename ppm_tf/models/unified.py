"""URM: IDRec with PPM's plug-in head, trained end to end on the recent window.

The head (initialised from the pre-trained PPM) reads the cached user states ``H_u`` and the
candidate's cached vector; its representation joins IDRec's MLP input and its logits are
added to IDRec's. The user tower and the encoders are not in this graph: only the head's
parameters (a small subset of PPM) train and serve beside IDRec, which is why URM costs
nearly what IDRec costs.
"""
from __future__ import annotations

from ppm_tf import features
from ppm_tf.models.config import ModelConfig
from ppm_tf.models.idrec import IDRecBackbone
from ppm_tf.models.ppm import PPM_USER_MASK, PPM_USER_STATES, PlugInHead
from ppm_tf.models.tasks import RankingModel


class UnifiedModel(RankingModel):
    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 count_priors: dict[str, float], **kwargs):
        super().__init__(config.order_loss_weight, **kwargs)
        self.head = PlugInHead(config, name="plug_in_head")
        self.backbone = IDRecBackbone(vocabularies, oov_buckets, config, count_priors,
                                      name="idrec")

    def call(self, batch_features, training=None):
        representation, ppm_click, ppm_order = self.head(
            (batch_features[PPM_USER_STATES], batch_features[PPM_USER_MASK],
             batch_features[features.PPM_ITEM_VEC]), training=training)
        click, order = self.backbone((batch_features, representation), training=training)
        return {"click": click + ppm_click, "order": order + ppm_order}
