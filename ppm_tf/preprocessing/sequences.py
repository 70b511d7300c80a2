"""Behaviour sequences: for each impression, the user's last clicked items before it (and,
from the same per-user grouping, the user's as-of counts: ``counts``).

Leakage is the failure that makes every later figure a lie, so the rule is strict: an entry
is a click whose time is strictly before the impression's request time and that comes from
another request. Only the user's clicks are held in memory (bounded by the per-user cap
applied upstream), and impressions stream through.
"""
from __future__ import annotations

import bisect
from typing import Any, Iterable, Iterator

import apache_beam as beam

from ppm_tf import features
from ppm_tf.preprocessing.counts import counts_per_request


def attach_behaviour_sequences(events: Iterable[dict[str, Any]],
                               max_seq_len: int) -> Iterator[dict[str, Any]]:
    """Yields each of one user's events with ``hist_*`` fields added (most recent first).

    ``events`` must be re-iterable (a list, or a Beam grouped iterable): one pass collects
    the clicks, the second emits the impressions.
    """
    sources = tuple(features.HIST_FIELD_SOURCES.values())
    clicks = sorted((event["ts"], event["request_id"], *(event[name] for name in sources))
                    for event in events if event["click"])
    click_times = [click[0] for click in clicks]
    for event in events:
        history = []
        position = bisect.bisect_left(click_times, event["ts"]) - 1  # last click strictly before
        while position >= 0 and len(history) < max_seq_len:
            click = clicks[position]
            if click[1] != event["request_id"]:
                history.append(click)
            position -= 1
        yield {
            **event,
            **{field: [click[2 + index] for click in history]
               for index, field in enumerate(features.HIST_FIELD_SOURCES)},
            features.HIST_TS: [click[0] for click in history],
            features.HIST_LEN: len(history),
        }


def _user_examples(element, max_seq_len: int, count_lookback_days: int):
    _, events = element
    counts = counts_per_request(events, count_lookback_days)
    for example in attach_behaviour_sequences(events, max_seq_len):
        yield {**example, features.USER_COUNTS: counts[example["request_id"]]}


class BehaviourSequences(beam.PTransform):
    """Events of all users -> examples with ``hist_*`` fields and the user's counts,
    grouped per user."""

    def __init__(self, max_seq_len: int, count_lookback_days: int):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.count_lookback_days = count_lookback_days

    def expand(self, events):
        return (events
                | "ByUser" >> beam.Map(lambda event: (event["user_id"], event))
                | "Group" >> beam.GroupByKey()
                | "Attach" >> beam.FlatMap(_user_examples, self.max_seq_len,
                                           self.count_lookback_days))
