"""Synthetic users: drifting content tastes, activity, and id-only effects.

A user's taste is a weight per attribute value that rotates slowly from a starting taste to a
later one over the horizon (the long pre-training span and the recent window each see a
different mix). Tastes are mostly shared within a few personas (shoppers come in segments),
so a handful of clicks says a lot about a user, plus an individual part. The market as a
whole also has a drifting taste (trends), which lets content score items nobody has clicked
yet. Id-only effects, a click propensity and latent affinity factors, are what an ID model can
learn from the user's id and a content model cannot.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ppm_tf.data.synthetic import vocabulary as vocab
from ppm_tf.data.synthetic.config import WorldConfig


@dataclasses.dataclass
class Population:
    """Per-user arrays, indexed by user number; ``user_ids[n]`` is the public id."""

    user_ids: list[str]
    signup_day: np.ndarray  # [num_users]; negative: signed up before the horizon
    daily_active_rate: np.ndarray  # [num_users] chance of visiting on a given day
    taste_start: np.ndarray  # [num_users, content_dim] taste weights on day 0
    taste_end: np.ndarray  # [num_users, content_dim] the direction tastes drift towards
    trend_start: np.ndarray  # [content_dim] the market's taste on day 0
    trend_end: np.ndarray  # [content_dim] the direction the market drifts towards
    click_bias: np.ndarray  # [num_users] id-only click propensity
    order_bias: np.ndarray  # [num_users] id-only propensity to buy once clicked
    latent: np.ndarray  # [num_users, latent_rank] id-only affinity factors

    @property
    def size(self) -> int:
        return len(self.user_ids)

    def taste_on(self, day: int, drift_radians: float, num_days: int,
                 users: np.ndarray) -> np.ndarray:
        """[len(users), content_dim] tastes on ``day``; the rotation keeps their spread."""
        angle = drift_radians * day / max(num_days - 1, 1)
        return (np.cos(angle) * self.taste_start[users]
                + np.sin(angle) * self.taste_end[users])

    def trend_on(self, day: int, drift_radians: float, num_days: int) -> np.ndarray:
        """[content_dim] the market's taste on ``day``, drifting like the users'."""
        angle = drift_radians * day / max(num_days - 1, 1)
        return np.cos(angle) * self.trend_start + np.sin(angle) * self.trend_end


def taste_scales() -> np.ndarray:
    """[content_dim] spread of taste weights, per attribute block of the content vector."""
    return np.concatenate([np.full(size, vocab.TASTE_SD[name])
                           for name, size in vocab.ATTRIBUTE_SIZES.items()])


def sample_population(config: WorldConfig, rng: np.random.Generator) -> Population:
    num_users = config.num_users
    initial = rng.random(num_users) < config.initial_user_fraction
    signup_day = np.where(initial, -rng.integers(1, 366, num_users),
                          rng.integers(1, config.num_days, num_users))
    # Heavy and light users: log-normal visit rates with the configured mean.
    spread = 0.8
    activity = rng.lognormal(np.log(config.daily_active_rate) - spread ** 2 / 2, spread, num_users)
    scales = taste_scales()
    persona = rng.integers(0, config.num_personas, num_users)

    def tastes() -> np.ndarray:
        """Persona part + individual part, with the configured share of the variance."""
        personas = rng.normal(0.0, 1.0, (config.num_personas, scales.size))
        individual = rng.normal(0.0, 1.0, (num_users, scales.size))
        share = config.persona_share
        return (np.sqrt(share) * personas[persona] + np.sqrt(1 - share) * individual) * scales

    latent_sd = np.sqrt(config.latent_sd / np.sqrt(config.latent_rank))
    return Population(
        user_ids=[f"u{number:06d}" for number in range(num_users)],
        signup_day=signup_day,
        daily_active_rate=np.clip(activity, 0.0, 0.9),
        taste_start=tastes(),
        taste_end=tastes(),
        trend_start=rng.normal(0.0, 1.0, scales.size) * scales,
        trend_end=rng.normal(0.0, 1.0, scales.size) * scales,
        click_bias=rng.normal(0.0, config.user_bias_sd, num_users),
        order_bias=rng.normal(0.0, config.order_user_bias_sd, num_users),
        latent=rng.normal(0.0, latent_sd, (num_users, config.latent_rank)),
    )
