"""Every arm's metrics and each arm's difference from the control, with paired bootstrap CIs.

Users are the unit of the experiment (the paper's user CTR and CVR count users), so the
bootstrap resamples users with replacement; one resample is applied to every arm at once
(a paired design: all arms ranked the same requests), so a difference's interval is far
narrower than the two arms' own intervals suggest. Each metric is a ratio of sums over users.
"""
from __future__ import annotations

import numpy as np

from ppm_tf.ab.outcomes import UserOutcomes

# metric -> (numerator, denominator; None counts users)
METRICS: dict[str, tuple[str, str | None]] = {
    "user_ctr": ("any_click", None),
    "user_cvr": ("any_order", None),
    "clicks_per_request": ("clicks", "requests"),
    "orders_per_request": ("orders", "requests"),
    "cold_share": ("cold_shown", "shown"),
    "cold_ctr": ("cold_clicks", "cold_shown"),
}
CONFIDENCE = 0.95
RESAMPLES_PER_CHUNK = 100  # bounds the [resamples, users] weight matrix held at once


def _ratios(outcomes: UserOutcomes, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each metric under user ``weights`` ([users], or [resamples, users])."""
    values = {}
    for metric, (numerator, denominator) in METRICS.items():
        top = weights @ getattr(outcomes, numerator)
        if denominator is None:
            bottom = weights.sum(axis=-1)
        else:
            bottom = weights @ getattr(outcomes, denominator)
        with np.errstate(invalid="ignore", divide="ignore"):
            values[metric] = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)
    return values


def _interval(samples: np.ndarray) -> list[float | None]:
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return [None, None]
    tail = (1 - CONFIDENCE) / 2 * 100
    return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))]


def _number(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def compare_arms(outcomes: dict[str, UserOutcomes], control: str, *, resamples: int,
                 seed: int) -> dict:
    """``{"arms": {arm: {metric: {"value", "ci"}}}, "differences": {arm: {metric: ...}}}``;
    differences are ``arm - control`` for every other arm."""
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100 for a 95% interval, got {resamples}")
    users = len(next(iter(outcomes.values())).requests)
    rng = np.random.default_rng(seed)
    chunks = {arm: {metric: [] for metric in METRICS} for arm in outcomes}
    for start in range(0, resamples, RESAMPLES_PER_CHUNK):
        count = min(RESAMPLES_PER_CHUNK, resamples - start)
        weights = rng.multinomial(users, np.full(users, 1 / users), size=count).astype(float)
        for arm, arm_outcomes in outcomes.items():
            for metric, values in _ratios(arm_outcomes, weights).items():
                chunks[arm][metric].append(values)
    samples = {arm: {metric: np.concatenate(parts) for metric, parts in metrics.items()}
               for arm, metrics in chunks.items()}
    point = {arm: _ratios(arm_outcomes, np.ones(users)) for arm, arm_outcomes in outcomes.items()}
    arms = {arm: {metric: {"value": _number(point[arm][metric]),
                           "ci": _interval(samples[arm][metric])} for metric in METRICS}
            for arm in outcomes}
    differences = {
        arm: {metric: {"value": _number(point[arm][metric] - point[control][metric]),
                       "ci": _interval(samples[arm][metric] - samples[control][metric])}
              for metric in METRICS}
        for arm in outcomes if arm != control}
    return {"arms": arms, "differences": differences, "control": control, "users": users,
            "resamples": resamples, "confidence": CONFIDENCE}
