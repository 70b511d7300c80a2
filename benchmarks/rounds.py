"""Contenders timed side by side in alternating rounds: how every ratio benchmark here measures.

On a shared machine the load changes from one second to the next, so two contenders timed one
after the other, once, compare two moments rather than two programs. Here each contender runs
in turn for at least ``round_seconds`` (many calls: a round is seconds, not one call), the
order reversing every round (A B, B A, A B, ...) so a drift in load favours neither, for a
fixed number of rounds. Each round gives one figure per contender (a throughput or a median
latency); a ratio is the ratio of the contenders' medians over rounds, with a 95% interval
from resampling whole rounds (paired: a round's figures were taken seconds apart, under the
same load).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np

BOOTSTRAP_RESAMPLES = 2000


@dataclasses.dataclass
class Round:
    """One contender's calls in one round: each call's seconds and the units it did (e.g.
    examples trained)."""

    seconds: list[float] = dataclasses.field(default_factory=list)
    units: int = 0

    @property
    def units_per_second(self) -> float:
        return self.units / max(sum(self.seconds), 1e-12)

    @property
    def median_ms(self) -> float:
        return float(np.median(self.seconds)) * 1000


def alternate(contenders: dict[str, Callable[[], object]], rounds: int, round_seconds: float,
              warmup_calls: int = 2,
              units_per_call: dict[str, int] | None = None) -> dict[str, list[Round]]:
    """Runs every contender ``warmup_calls`` times (tracing, connections), then ``rounds``
    rounds in which each runs repeatedly for at least ``round_seconds``; the order of the
    contenders reverses every round. ``units_per_call`` (default 1 each) is what one call of
    a contender does, e.g. the examples of one training step. Returns each contender's
    rounds, in round order."""
    if rounds < 1 or round_seconds <= 0:
        raise ValueError(f"need rounds >= 1 and round_seconds > 0, got {rounds}, "
                         f"{round_seconds}")
    for call in contenders.values():
        for _ in range(warmup_calls):
            call()
    results: dict[str, list[Round]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        for name in names if index % 2 == 0 else reversed(names):
            results[name].append(_one_round(contenders[name], round_seconds,
                                            (units_per_call or {}).get(name, 1)))
    return results


def _one_round(call: Callable[[], object], round_seconds: float, units: int) -> Round:
    result = Round()
    started = time.perf_counter()
    while not result.seconds or time.perf_counter() - started < round_seconds:
        call_started = time.perf_counter()
        call()
        result.seconds.append(time.perf_counter() - call_started)
        result.units += units
    return result


@dataclasses.dataclass(frozen=True)
class Spread:
    """A contender's figure over rounds: the median and the lowest and highest round."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values) -> "Spread":
        values = np.asarray(values, dtype=float)
        return cls(float(np.median(values)), float(values.min()), float(values.max()))

    def format(self, spec: str) -> str:
        return f"{self.median:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


@dataclasses.dataclass(frozen=True)
class Ratio:
    """numerator / denominator of two contenders' medians over the same rounds, with a 95%
    interval from a paired bootstrap over rounds."""

    value: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of_medians(cls, numerator, denominator, seed: int = 0) -> "Ratio":
        numerator = np.asarray(numerator, dtype=float)
        denominator = np.asarray(denominator, dtype=float)
        if numerator.shape != denominator.shape or numerator.size == 0:
            raise ValueError("a ratio needs both contenders' figures from the same rounds")
        picks = np.random.default_rng(seed).integers(
            0, numerator.size, size=(BOOTSTRAP_RESAMPLES, numerator.size))
        resampled = (np.median(numerator[picks], axis=1)
                     / np.median(denominator[picks], axis=1))
        low, high = np.percentile(resampled, [2.5, 97.5])
        return cls(float(np.median(numerator) / np.median(denominator)), float(low),
                   float(high), int(numerator.size))

    def format(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f}x [{self.low:.{digits}f}, {self.high:.{digits}f}]"


RATIO_LEGEND = ("a ratio: of the medians over rounds [95% interval, paired bootstrap over "
                "rounds]")
