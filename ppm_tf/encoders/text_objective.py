"""Which task trains the text encoder, chosen from the data and the starting point.

- ``query_matching``: the paper's task, on (search query, clicked title) pairs.
- ``simcse``: unsupervised SimCSE on the catalogue's titles (each title is its own positive,
  the encoder's dropout the augmentation), for a shop without a search log. The method the
  paper's query matching is built on, with the same in-batch InfoNCE loss.
- ``frozen``: no training; only for an encoder that starts from a pre-trained checkpoint.

``auto`` (the default), from random weights: query matching when the training splits hold at
least the preset's ``min_query_pairs``, else SimCSE. From a pre-trained checkpoint: frozen,
unless the preset fine-tunes pre-trained encoders (``query_matching_from_pretrained``: the
``paper`` preset, as the paper fine-tunes BERT on a large search log) and there are enough
queries. On MovieLens (2,513 training tags) the validation items' entity overlap is higher
for all-MiniLM-L6-v2 frozen than fine-tuned with query matching, at no training cost. It never
fails for want of queries. docs/encoders.md has the measurements.
"""
from __future__ import annotations

from ppm_tf.encoders.presets import AUTO, FROZEN, QUERY_MATCHING, SIMCSE, TEXT_OBJECTIVES

MIN_BATCH = 2  # in-batch negatives need at least one other example


def choose(requested: str, query_pairs: int, min_query_pairs: int, pretrained: bool,
           titles: int, query_matching_from_pretrained: bool = False) -> tuple[str, str]:
    """``(objective, reason)`` for a run; raises ``ValueError`` when an explicitly requested
    objective cannot run on this data (auto always chooses one that can).

    Args:
        requested: one of ``presets.TEXT_OBJECTIVES``.
        query_pairs: training (query, catalogued item) pairs.
        min_query_pairs: the fewest pairs ``auto`` runs query matching on.
        pretrained: whether the encoder starts from a checkpoint.
        titles: distinct non-empty catalogue titles (SimCSE's examples).
        query_matching_from_pretrained: whether ``auto`` fine-tunes a pre-trained encoder.
    """
    if requested not in TEXT_OBJECTIVES:
        raise ValueError(f"text objective must be one of {list(TEXT_OBJECTIVES)}, got "
                         f"{requested!r}")
    if requested == QUERY_MATCHING and query_pairs < MIN_BATCH:
        raise ValueError(f"query matching needs at least {MIN_BATCH} training queries "
                         f"(pretrain/train splits), found {query_pairs}; use text objective "
                         f"{SIMCSE!r} or {AUTO!r}")
    if requested == SIMCSE and titles < MIN_BATCH:
        raise ValueError(f"SimCSE needs at least {MIN_BATCH} distinct non-empty titles, found "
                         f"{titles}")
    if requested == FROZEN and not pretrained:
        raise ValueError("the frozen text objective needs a pre-trained checkpoint "
                         "(--bert-checkpoint): a random encoder kept frozen learns nothing")
    if requested != AUTO:
        return requested, "requested"
    enough = query_pairs >= min_query_pairs
    if pretrained and not query_matching_from_pretrained:
        return FROZEN, ("pre-trained encoder kept as it is (the preset fine-tunes pre-trained "
                        "encoders only with --text-objective query_matching or simcse)")
    if enough:
        return QUERY_MATCHING, (f"{query_pairs:,} training queries >= min_query_pairs "
                                f"{min_query_pairs:,}")
    too_few = f"{query_pairs:,} training queries < min_query_pairs {min_query_pairs:,}"
    if pretrained:
        return FROZEN, f"{too_few}; the pre-trained encoder is kept as it is"
    if titles < MIN_BATCH:
        return FROZEN, f"{too_few} and {titles} distinct titles: nothing to train on"
    return SIMCSE, f"{too_few}; SimCSE on {titles:,} distinct titles"
