"""Model presets: sizes and training settings of PPM, IDRec and URM, as data.

``tiny`` runs in seconds in tests, ``demo`` trains on the demo world on 2 CPU cores in
minutes, ``paper`` is the paper-scale setting for GPUs. ``parse_override`` reads a
``FIELD=VALUE`` that replaces one field for a run (``ppm train --set``), as settings chosen on a
data set's own ``valid`` split are applied.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing


# How URM joins PPM's plug-in head to IDRec: the head's representation always joins IDRec's
# MLP input; its logits are added to IDRec's, added through a learned per-example gate, or not.
URM_INTEGRATIONS = ("logits_and_representation", "gated_logits", "representation")
# The in-request ranking loss the click head adds to its BCE (``request_losses``), or none.
RANKING_LOSSES = ("none", "pairwise", "listwise")
# What pre-training made of the plug-in head: a row that fine-tunes it (or scores it
# zero-shot) takes these from pre-training's config, as its weights.
PRETRAINED_HEAD_FIELDS = ("tower_dim", "head_units", "ppm_counts", "head_count_offset")
AUTO = "auto"  # pretrain_request_group chosen from the data
AUTO_GROUP = 8  # the group size AUTO reads when grouping pays


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    # PPM user tower and plug-in head.
    tower_dim: int  # d: width of the cached user states H_u [L, d]
    tower_blocks: int  # bidirectional Transformer blocks
    tower_heads: int
    tower_ff_dim: int
    time_buckets: int  # log2-minute buckets: 24 covers about 30 years
    head_units: tuple[int, ...]  # plug-in head MLP; the last size is the PPM representation
    # IDRec.
    attention_units: tuple[int, ...]  # DIN scorer over the id behaviour sequence
    id_embedding_dim: int
    cross_layers: int
    mlp_units: tuple[int, ...]
    # Training.
    dropout: float
    learning_rate: float
    batch_size: int
    pretrain_epochs: int  # epoch budgets: early stopping on `valid` may end a run sooner
    train_epochs: int
    order_loss_weight: float = 1.0
    embedding_l2: float = 0.0  # L2 penalty on id embedding rows (IDRec), per row used
    user_id_dropout: float = 0.0  # share of training examples whose user id (candidate item
    item_id_dropout: float = 0.0  # id) IDRec sees as out of vocabulary, as a new one is
    # PPM and its plug-in: options measured on the valid split (README, "URM's integration").
    ppm_counts: bool = True  # the head reads the as-of counts (user, candidate, category)
    history_actions: bool = False  # PPM's tower embeds each behaviour entry's action type
    # (features.HIST_ACTIONS: shown, clicked, ordered; see ``ppm preprocess --history``)
    tower_item_counts: bool = False  # PPM's tower reads each behaviour item's as-of counts
    # at the request (models.history_counts), beside its vector
    urm_integration: str = "logits_and_representation"  # see URM_INTEGRATIONS
    count_volumes: bool = True  # IDRec and lr read log1p(impressions) of each count window
    # beside its smoothed rates (False: the rates only, CountEncoding.model_inputs)
    content_tokens: bool = True  # IDRec reads the items' content tokens (entities, attrs;
    # False: ids, category and brand only, as a catalogue without structured content)
    count_offset: bool = False  # IDRec's logits start from the count baseline's (the
    # user's and the candidate's smoothed rates, the ``counts`` row) and learn the residual
    head_count_offset: bool = True  # the same for PPM's plug-in head, from pre-training on
    # (URM's IDRec part then starts at zero: URM starts where pre-training left the head)
    content_norm: bool = False  # LayerNorm where content enters IDRec (qm_ep's ME vector,
    # URM's PPM representation)
    head_learning_rate_scale: float = 1.0  # the pre-trained head's learning rate, relative
    # to the rest of the model's, when fine-tuned (0: frozen)
    ranking_loss: str = "none"  # in-request click ranking loss added to the BCE, see
    # RANKING_LOSSES; the training reader then keeps each request's impressions together
    ranking_loss_weight: float = 1.0
    pretrain_request_group: int | str = AUTO  # pre-training reads up to this many
    # impressions of a request together (1: records one by one), and PPM's tower runs once
    # per group; AUTO: groups of AUTO_GROUP when that at least halves the tower's rows
    # (training.pretrain.choose_request_group), else 1
    min_pretrain_steps: int = 0  # budgets raised to at least this many optimizer steps, so
    min_train_steps: int = 0  # a small window still gets enough updates
    patience: int = 2  # epochs without a better validation click AUC before stopping
    pretrain_patience: int = 2  # the same for pre-training, whose curve can dip and rise
    save_every_steps: int | None = None  # resume points within epochs (always at their ends)

    def __post_init__(self):
        for name in ("user_id_dropout", "item_id_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.head_learning_rate_scale <= 1.0:
            raise ValueError("head_learning_rate_scale must be in [0, 1], got "
                             f"{self.head_learning_rate_scale}")
        if self.pretrain_request_group != AUTO and not (
                isinstance(self.pretrain_request_group, int)
                and self.pretrain_request_group >= 1):
            raise ValueError(f"pretrain_request_group must be {AUTO!r} or an integer of at "
                             f"least 1, got {self.pretrain_request_group!r}")
        if self.ranking_loss not in RANKING_LOSSES:
            raise ValueError(f"ranking_loss must be one of {RANKING_LOSSES}, got "
                             f"{self.ranking_loss!r}")
        if not self.ranking_loss_weight >= 0.0:
            raise ValueError("ranking_loss_weight must be at least 0, got "
                             f"{self.ranking_loss_weight}")
        if self.urm_integration not in URM_INTEGRATIONS:
            raise ValueError(f"urm_integration must be one of {URM_INTEGRATIONS}, got "
                             f"{self.urm_integration!r}")

    @property
    def ppm_repr_dim(self) -> int:
        return self.head_units[-1]

    def to_dict(self) -> dict:
        """As a run's training.json stores it (JSON has lists, not tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """A stored config; a field it lacks (a run from before the field existed) takes the
        value those runs trained with, where that differs from today's default."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in {**_BEFORE_THE_FIELD, **values}.items()})


# Fields whose default is not what runs did before the field existed: a run stored before
# ``head_count_offset`` trained its head without the offset, and is rebuilt that way.
_BEFORE_THE_FIELD = {"head_count_offset": False}


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(tower_dim=16, tower_blocks=1, tower_heads=2, tower_ff_dim=32,
                        time_buckets=24, head_units=(32, 16), attention_units=(16,),
                        id_embedding_dim=8, cross_layers=1, mlp_units=(32, 16), dropout=0.0,
                        learning_rate=3e-3, batch_size=256, pretrain_epochs=1, train_epochs=1),
    "demo": ModelConfig(tower_dim=32, tower_blocks=2, tower_heads=2, tower_ff_dim=64,
                        time_buckets=24, head_units=(64, 32), attention_units=(32,),
                        id_embedding_dim=16, cross_layers=2, mlp_units=(128, 64), dropout=0.1,
                        learning_rate=2e-3, batch_size=512, pretrain_epochs=3, train_epochs=10,
                        min_pretrain_steps=1500, min_train_steps=200, patience=1),
    "paper": ModelConfig(tower_dim=128, tower_blocks=4, tower_heads=4, tower_ff_dim=512,
                         time_buckets=24, head_units=(256, 128), attention_units=(128, 64),
                         id_embedding_dim=64, cross_layers=3, mlp_units=(512, 256, 128),
                         dropout=0.1, learning_rate=1e-3, batch_size=2048, pretrain_epochs=3,
                         train_epochs=2),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


_MISMATCH = object()  # what _as_type returns for a value that is not of the type asked


def parse_override(assignment: str) -> tuple[str, object]:
    """``"FIELD=VALUE"`` -> ``(field, value)`` for ``dataclasses.replace`` of a ``ModelConfig``:
    VALUE read as JSON (``0.01``, ``true``, ``[64, 32]``), else as a string (``listwise``).
    ValueError naming the field when it is not a ``ModelConfig`` field or VALUE is not of its
    type; the field's own range checks run when the config is replaced."""
    field, equals, text = assignment.partition("=")
    hints = typing.get_type_hints(ModelConfig)
    if not equals or field not in hints:
        raise ValueError(f"{assignment!r} is not FIELD=VALUE with a model preset field; the "
                         f"fields are {', '.join(hints)}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    for expected in _union_members(hints[field]):
        if (converted := _as_type(value, expected)) is not _MISMATCH:
            return field, converted
    raise ValueError(f"{field}: {text!r} is not {_type_name(hints[field])}")


def _union_members(hint) -> tuple:
    """``int | None`` -> ``(int, NoneType)``; any other type -> ``(type,)``."""
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _as_type(value, expected):
    """``value`` as type ``expected`` (one member of a field's union), or ``_MISMATCH``."""
    if expected is type(None):
        return None if value is None else _MISMATCH
    if typing.get_origin(expected) is tuple:  # tuple[int, ...]: a JSON list of integers
        ok = isinstance(value, list) and all(_as_type(item, int) is not _MISMATCH
                                             for item in value)
        return tuple(value) if ok else _MISMATCH
    if isinstance(value, bool) or expected is bool:  # JSON true is not the number 1
        return value if isinstance(value, bool) and expected is bool else _MISMATCH
    if expected is float and isinstance(value, int):
        return float(value)
    return value if isinstance(value, expected) else _MISMATCH


def _type_name(hint) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             type(None): "null"}
    return " or ".join(names.get(member, "a list of integers")
                       for member in _union_members(hint))
