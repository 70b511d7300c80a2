"""Configuration of a synthetic e-commerce world, and its named presets.

Every number that shapes the world lives in ``WorldConfig``; a preset is just a named
instance. The effect scales set how much each hidden cause moves the click logit, and were
tuned so that the oracle click AUC lands in 0.72-0.85 with a 2-10% click rate.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """Sizes, horizon and hidden effects of one synthetic world."""

    num_users: int
    num_items: int
    num_days: int
    image_size: int
    num_queries: int
    start_date: str = "2025-03-03"  # first day of the horizon, UTC
    train_days: int = 7  # the recent window URM trains on
    eval_days: int = 7  # evaluation days after the recent window
    new_item_days: int = 7  # an item is "new" (cold) this many days after launch
    initial_item_fraction: float = 0.35  # catalogue share launched before the horizon
    initial_user_fraction: float = 0.7  # users signed up before the horizon
    daily_active_rate: float = 0.12  # mean chance that a user visits on a given day
    extra_requests_per_visit: float = 0.6  # Poisson mean of requests after the first
    max_requests_per_day: int = 4
    impressions_per_request: int = 5
    # Exposure: where each impression's candidate comes from (must sum to 1).
    candidate_mix: tuple[float, float, float] = (0.45, 0.25, 0.30)  # popular, new, random
    # Click model: logit = base + content + behaviour + user bias + item quality + latent.
    base_click_logit: float = -3.9
    content_scale: float = 0.55  # user's (drifting) taste for the item's attributes
    num_personas: int = 12  # shopper segments sharing most of their taste
    persona_share: float = 0.7  # share of a user's taste variance that is the persona's
    trend_scale: float = 0.4  # the market's (drifting) taste: what is in fashion
    behaviour_scale: float = 1.6  # similarity of the item to the user's recent clicks
    behaviour_decay: float = 0.6  # weight kept by the recent-click state per new click
    drift_radians: float = 0.9  # how far tastes rotate over the horizon (pi/2: fully new)
    user_bias_sd: float = 0.35  # id-only: a user's propensity to click
    item_quality_sd: float = 0.5  # id-only: item appeal that content does not reveal
    latent_rank: int = 4  # id-only user x item affinity (what collaborative filtering finds)
    latent_sd: float = 0.45
    # Order model, given a click: logit = base + taste + price tier + user bias + quality.
    base_order_logit: float = -1.2
    order_taste_scale: float = 0.3
    order_user_bias_sd: float = 0.5
    order_quality_scale: float = 0.4

    def __post_init__(self):
        if self.num_days <= self.train_days + self.eval_days:
            raise ValueError(
                f"num_days={self.num_days} must exceed train_days + eval_days "
                f"({self.train_days} + {self.eval_days}) to leave a pre-training span")
        if abs(sum(self.candidate_mix) - 1.0) > 1e-9:
            raise ValueError(f"candidate_mix={self.candidate_mix} must sum to 1")
        for name in ("num_users", "num_items", "image_size", "impressions_per_request"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @classmethod
    def from_json(cls, values: dict) -> "WorldConfig":
        """Rebuilds the config stored in a world's world.json (JSON turned tuples into lists)."""
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in values.items()})

    @property
    def pretrain_days(self) -> int:
        return self.num_days - self.train_days - self.eval_days


PRESETS: dict[str, WorldConfig] = {
    # Tests: hundreds of users and items, under 30k impressions, seconds.
    "tiny": WorldConfig(num_users=400, num_items=300, num_days=30, image_size=32,
                        num_queries=3_000, eval_days=5, daily_active_rate=0.25),
    # The demo: ~1.1M impressions over 60 days, generated in about a minute on 2 cores.
    "demo": WorldConfig(num_users=20_000, num_items=10_000, num_days=60, image_size=64,
                        num_queries=60_000, daily_active_rate=0.135),
    # Scale tests: >= 50M impressions, streamed day by day to sharded files.
    "large": WorldConfig(num_users=480_000, num_items=100_000, num_days=90, image_size=64,
                         num_queries=1_000_000, daily_active_rate=0.2),
}


def preset(name: str) -> WorldConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
