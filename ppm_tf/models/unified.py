"""URM: IDRec with PPM's plug-in head, trained end to end on the recent window.

The head (initialised from the pre-trained PPM) reads the cached user states ``H_u``, the
candidate's cached vector and the as-of counts; its representation joins IDRec's MLP input
and its logits are added to IDRec's (``config.urm_integration``: added, gated, or not; with
``count_offset`` IDRec's start at the count baseline's, with ``head_count_offset`` the head's
do and IDRec's start at zero). The user tower and the encoders are
not in this graph: only the head's parameters (a small subset of PPM) train and serve beside
IDRec, which is why URM costs nearly what IDRec costs.
"""
from __future__ import annotations

import tensorflow as tf

from ppm_tf.models.config import ModelConfig
from ppm_tf.models.idrec import IDRecBackbone
from ppm_tf.models.ppm import PlugInHead, cached_head_inputs
from ppm_tf.models.tasks import RankingModel


class UnifiedModel(RankingModel):
    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 count_priors: dict[str, float], **kwargs):
        super().__init__(config, **kwargs)
        if config.count_offset and config.head_count_offset:
            raise ValueError("count_offset and head_count_offset would both add the count "
                             "baseline's logits to URM's: URM's head was pre-trained with "
                             "head_count_offset, so leave count_offset off")
        self.integration = config.urm_integration
        self.head = PlugInHead(config, count_priors, name="plug_in_head")
        # With the head's count offset, URM starts at the pre-trained head's logits (the
        # counts' plus what pre-training learnt beyond them), and IDRec learns the rest.
        head_starts = config.head_count_offset and self.integration != "representation"
        self.backbone = IDRecBackbone(vocabularies, oov_buckets, config, count_priors,
                                      starts_at_zero=head_starts, name="idrec")
        self.representation_norm = (tf.keras.layers.LayerNormalization(name="ppm_norm")
                                    if config.content_norm else None)
        # Starts at 1 for every example: the plain sum, until training moves it.
        self.gate = (tf.keras.layers.Dense(2, kernel_initializer="zeros", name="ppm_logit_gate")
                     if self.integration == "gated_logits" else None)
        # Its start is the counts' and the head's logits (``count_offset``) or the head's
        # alone (``head_count_offset``).
        self.starts_at_baseline = config.count_offset or head_starts

    def call(self, batch_features, training=None):
        representation, ppm_click, ppm_order = self.head(cached_head_inputs(batch_features),
                                                         training=training)
        joined = (self.representation_norm(representation) if self.representation_norm
                  else representation)
        click, order = self.backbone((batch_features, joined), training=training)
        if self.integration == "representation":
            return {"click": click, "order": order}
        if self.gate is not None:
            gate = 2.0 * tf.sigmoid(self.gate(representation))
            ppm_click, ppm_order = ppm_click * gate[:, 0], ppm_order * gate[:, 1]
        return {"click": click + ppm_click, "order": order + ppm_order}
