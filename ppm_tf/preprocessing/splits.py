"""Time splits: ``pretrain`` (the long span), ``train`` and ``valid`` (the recent window:
``valid`` is its end, held out for early stopping and model selection), ``eval`` (the days
after).

Bounds are whole UTC days. The window and eval come from the data set's ``world.json`` when it
suggests splits, or are counted back from the last event's day with ``--train_days`` /
``--eval_days``. ``valid`` is carved from the window's end: its last ``--valid_days``, else
the ``valid`` span world.json suggests (MovieLens suggests one by event counts, since its last
day may hold no event at all), else the last day.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ppm_tf.data.raw_files import SECONDS_PER_DAY

DEFAULT_VALID_DAYS = 1


@dataclasses.dataclass(frozen=True)
class SplitBounds:
    """Half-open spans: pretrain [.., train_start), train [train_start, valid_start),
    valid [valid_start, eval_start), eval [eval_start, end). The recent window is
    [train_start, eval_start)."""

    train_start_ts: int
    valid_start_ts: int
    eval_start_ts: int
    end_ts: int

    def __post_init__(self):
        if not self.train_start_ts < self.valid_start_ts <= self.eval_start_ts <= self.end_ts:
            raise ValueError(f"split bounds out of order (the train split needs at least one "
                             f"day before valid): {self}")

    @classmethod
    def from_world(cls, world: dict[str, Any], valid_days: int | None) -> "SplitBounds":
        splits = world["suggested_splits"]
        if valid_days is None and "valid" in splits:
            return cls(splits["train"]["start_ts"], splits["valid"]["start_ts"],
                       splits["eval"]["start_ts"], splits["eval"]["end_ts"])
        return cls.with_valid(splits["train"]["start_ts"], splits["eval"]["start_ts"],
                              splits["eval"]["end_ts"], valid_days or DEFAULT_VALID_DAYS)

    @classmethod
    def from_last_event(cls, last_event_ts: int, train_days: int, eval_days: int,
                        valid_days: int | None) -> "SplitBounds":
        """``train_days`` is the whole recent window, ``valid`` included."""
        end = (last_event_ts // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
        eval_start = end - eval_days * SECONDS_PER_DAY
        return cls.with_valid(eval_start - train_days * SECONDS_PER_DAY, eval_start, end,
                              valid_days or DEFAULT_VALID_DAYS)

    @classmethod
    def with_valid(cls, window_start_ts: int, eval_start_ts: int, end_ts: int,
                   valid_days: int) -> "SplitBounds":
        return cls(window_start_ts, eval_start_ts - valid_days * SECONDS_PER_DAY, eval_start_ts,
                   end_ts)

    def split_of(self, ts: int) -> str:
        if ts < self.train_start_ts:
            return "pretrain"
        if ts < self.valid_start_ts:
            return "train"
        if ts < self.eval_start_ts:
            return "valid"
        if ts < self.end_ts:
            return "eval"
        raise ValueError(f"timestamp {ts} is after the last split's end {self.end_ts}")

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
