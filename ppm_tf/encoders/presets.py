"""Named sizes and training settings of the modal encoders: a preset is data, not code paths.

``tiny`` exists for tests (seconds on a laptop), ``demo`` trains on the demo synthetic world
on two CPU cores in a few minutes, and ``paper`` is the paper's architecture (BERT-base,
ResNet-101) meant for accelerators and local pre-trained weights.

Text length policy (documented truncation): a title or query is cut to its first
``max_text_bytes`` bytes before tokenisation (bounds the cost of pathological inputs), then to
``max_tokens - 2`` WordPiece tokens, and wrapped as ``[CLS] ... [SEP]``. So an empty string
encodes as ``[CLS] [SEP]``: a defined vector, never an error.
"""
from __future__ import annotations

import dataclasses


# The text encoder's feed-forward activation: BERT's GELU, exact (erf, as Hugging Face's BERT
# computes it) or its tanh approximation (Google's original BERT code).
GELU, GELU_TANH = "gelu", "gelu_tanh"
# What the item vector averages: the text's own tokens (our default: [CLS] and [SEP] excluded),
# every real token ([CLS] and [SEP] included: sentence-transformers' mean pooling), or [CLS].
POOL_TEXT_TOKENS, POOL_MEAN_TOKENS, POOL_CLS = "text_tokens", "mean_tokens", "cls"
POOLINGS = (POOL_TEXT_TOKENS, POOL_MEAN_TOKENS, POOL_CLS)

# How the text encoder is trained (``text_objective``): query matching on the search log,
# unsupervised SimCSE on the titles, or not at all (a pre-trained encoder kept as it is);
# ``auto`` chooses from the data and the starting point (``text_objective.choose``).
AUTO, QUERY_MATCHING, SIMCSE, FROZEN = "auto", "query_matching", "simcse", "frozen"
TEXT_OBJECTIVES = (AUTO, QUERY_MATCHING, SIMCSE, FROZEN)


@dataclasses.dataclass(frozen=True)
class TextEncoderConfig:
    """BERT-style encoder: ``num_layers`` post-LayerNorm Transformer blocks of width
    ``hidden_size``, pooled over real tokens, projected to ``output_dim`` (no projection when
    ``output_dim`` is None: the vector is the pooled state), L2-normalised."""

    vocab_size: int  # target size of the learned WordPiece vocabulary (reserved tokens incl.)
    max_tokens: int  # tokens per text including [CLS] and [SEP]
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    output_dim: int | None
    dropout: float = 0.1
    max_text_bytes: int = 4096
    max_positions: int = 512  # size of the position table (BERT's 512; >= max_tokens)
    hidden_act: str = GELU_TANH
    layer_norm_epsilon: float = 1e-12  # BERT's
    pooling: str = POOL_TEXT_TOKENS

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by "
                             f"num_heads={self.num_heads}")
        if not 3 <= self.max_tokens <= self.max_positions:
            raise ValueError(f"max_tokens={self.max_tokens} must be in [3, max_positions="
                             f"{self.max_positions}]")
        if self.hidden_act not in (GELU, GELU_TANH):
            raise ValueError(f"hidden_act must be {GELU!r} or {GELU_TANH!r}, got "
                             f"{self.hidden_act!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")

    @property
    def vector_dim(self) -> int:
        """Width of the text vector the encoder outputs."""
        return self.output_dim or self.hidden_size


@dataclasses.dataclass(frozen=True)
class ImageEncoderConfig:
    """``keras_cv.models.ResNetBackbone`` stacks, global average pooling, a projection to
    ``output_dim`` and L2 normalisation. Images are resized to ``image_size`` squared."""

    image_size: int
    stackwise_filters: tuple[int, ...]
    stackwise_blocks: tuple[int, ...]
    stackwise_strides: tuple[int, ...]
    block_type: str  # "basic_block" (ResNet-18/34 style) or "block" (bottleneck, ResNet-50+)
    output_dim: int
    # Augmentation while fine-tuning. No hue/saturation/brightness changes: colour is one of
    # the entities the image must reveal.
    translation: float = 0.1  # fraction of the image size
    contrast: float = 0.2

    def __post_init__(self):
        sizes = {len(self.stackwise_filters), len(self.stackwise_blocks),
                 len(self.stackwise_strides)}
        if len(sizes) != 1:
            raise ValueError("stackwise_filters, stackwise_blocks and stackwise_strides must "
                             "have one entry per stack")
        if self.block_type not in ("basic_block", "block"):
            raise ValueError(f"block_type must be 'basic_block' or 'block', got "
                             f"{self.block_type!r}")
        # keras-cv's first basic-block stack has an identity shortcut from the 64-channel stem.
        if self.block_type == "basic_block" and self.stackwise_filters[0] != 64:
            raise ValueError("with block_type='basic_block' the first stack needs 64 filters "
                             f"(the stem's width), got {self.stackwise_filters[0]}")


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """How one encoder is fine-tuned: AdamW with linear warm-up then cosine decay."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_steps: int = 0  # a small data set (MovieLens: 9 batches of queries) gets more epochs
    # The rate when the encoder starts from pre-trained weights (BERT's fine-tuning range).
    pretrained_learning_rate: float = 2e-5

    def epochs_for(self, steps_per_epoch: int) -> int:
        """``epochs``, raised so that training runs at least ``min_steps`` steps."""
        return max(self.epochs, -(-self.min_steps // max(steps_per_epoch, 1)))

    def from_pretrained(self) -> "FitConfig":
        """This fit for an encoder that starts pre-trained: the fine-tuning rate, and the
        preset's epochs only (``min_steps`` is there for encoders that start from random
        weights; a pre-trained one would overfit a small data set over that many epochs)."""
        return dataclasses.replace(self, learning_rate=self.pretrained_learning_rate,
                                   min_steps=0)


@dataclasses.dataclass(frozen=True)
class EncoderPreset:
    name: str
    text: TextEncoderConfig
    image: ImageEncoderConfig
    query_matching: FitConfig
    entity_prediction: FitConfig
    simcse: FitConfig  # the text encoder's fit when there is no search log
    # Training (query, item) pairs below which query matching is not chosen by ``auto``.
    min_query_pairs: int = 1000
    # Whether ``auto`` fine-tunes a pre-trained text encoder with query matching (the paper,
    # on a large search log) or keeps it frozen (small logs: see docs/encoders.md).
    query_matching_from_pretrained: bool = False
    temperature: float = 0.05  # τ of the InfoNCE losses (scores are cosines / τ)
    ep_threshold: float = 0.5  # sigmoid probability above which an entity is predicted
    holdout_fraction: float = 0.1  # items held out (by a seeded id hash) to evaluate EP
    eval_batch_size: int = 512

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


PRESETS: dict[str, EncoderPreset] = {
    "tiny": EncoderPreset(
        name="tiny",
        text=TextEncoderConfig(vocab_size=600, max_tokens=24, num_layers=2, hidden_size=64,
                               num_heads=2, intermediate_size=128, output_dim=32,
                               max_positions=64),
        image=ImageEncoderConfig(image_size=32, stackwise_filters=(8, 16),
                                 stackwise_blocks=(1, 1), stackwise_strides=(1, 2),
                                 block_type="block", output_dim=32),
        query_matching=FitConfig(epochs=2, batch_size=64, learning_rate=2e-3),
        entity_prediction=FitConfig(epochs=2, batch_size=32, learning_rate=2e-3),
        simcse=FitConfig(epochs=2, batch_size=64, learning_rate=2e-3),
        min_query_pairs=128,
    ),
    "demo": EncoderPreset(
        name="demo",
        text=TextEncoderConfig(vocab_size=2000, max_tokens=32, num_layers=2, hidden_size=64,
                               num_heads=2, intermediate_size=256, output_dim=64,
                               max_positions=64),
        image=ImageEncoderConfig(image_size=64, stackwise_filters=(16, 32, 64),
                                 stackwise_blocks=(1, 1, 1), stackwise_strides=(1, 2, 2),
                                 block_type="block", output_dim=64),
        query_matching=FitConfig(epochs=3, batch_size=256, learning_rate=1e-3, min_steps=500),
        entity_prediction=FitConfig(epochs=5, batch_size=64, learning_rate=2e-3,
                                    min_steps=500),
        simcse=FitConfig(epochs=3, batch_size=256, learning_rate=1e-3, min_steps=500,
                         pretrained_learning_rate=3e-5),
    ),
    # BERT-base (12 x 768, 12 heads, 3072) and the ResNet-101 stack ([3, 4, 23, 3] bottleneck
    # blocks). Learning rates are fine-tuning rates for pre-trained weights.
    "paper": EncoderPreset(
        name="paper",
        text=TextEncoderConfig(vocab_size=30522, max_tokens=64, num_layers=12, hidden_size=768,
                               num_heads=12, intermediate_size=3072, output_dim=256),
        image=ImageEncoderConfig(image_size=224, stackwise_filters=(64, 128, 256, 512),
                                 stackwise_blocks=(3, 4, 23, 3), stackwise_strides=(1, 2, 2, 2),
                                 block_type="block", output_dim=256),
        query_matching=FitConfig(epochs=3, batch_size=256, learning_rate=2e-5),
        entity_prediction=FitConfig(epochs=10, batch_size=64, learning_rate=1e-4),
        # Unsupervised SimCSE's BERT-base setting: batch 64, rate 3e-5, one epoch.
        simcse=FitConfig(epochs=1, batch_size=64, learning_rate=3e-5,
                         pretrained_learning_rate=3e-5),
        query_matching_from_pretrained=True,
        eval_batch_size=256,
    ),
}


def preset(name: str) -> EncoderPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown encoder preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
