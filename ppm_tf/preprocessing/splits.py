"""Time splits: ``pretrain`` (the long span), ``train`` (the recent window), ``eval`` (after).

Bounds are whole UTC days. They come from the data set's ``world.json`` when it suggests
splits, or are counted back from the last event's day with ``--train_days``/``--eval_days``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ppm_tf.data.raw_files import SECONDS_PER_DAY


@dataclasses.dataclass(frozen=True)
class SplitBounds:
    """Half-open spans: pretrain [.., train_start), train [train_start, eval_start),
    eval [eval_start, end)."""

    train_start_ts: int
    eval_start_ts: int
    end_ts: int

    def __post_init__(self):
        if not self.train_start_ts <= self.eval_start_ts <= self.end_ts:
            raise ValueError(f"split bounds out of order: {self}")

    @classmethod
    def from_world(cls, world: dict[str, Any]) -> "SplitBounds":
        splits = world["suggested_splits"]
        return cls(splits["train"]["start_ts"], splits["eval"]["start_ts"],
                   splits["eval"]["end_ts"])

    @classmethod
    def from_last_event(cls, last_event_ts: int, train_days: int, eval_days: int) -> "SplitBounds":
        end = (last_event_ts // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
        eval_start = end - eval_days * SECONDS_PER_DAY
        return cls(eval_start - train_days * SECONDS_PER_DAY, eval_start, end)

    def split_of(self, ts: int) -> str:
        if ts < self.train_start_ts:
            return "pretrain"
        if ts < self.eval_start_ts:
            return "train"
        if ts < self.end_ts:
            return "eval"
        raise ValueError(f"timestamp {ts} is after the last split's end {self.end_ts}")

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
