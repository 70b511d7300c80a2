"""Behaviour sequences: for each impression, the user's last clicked items before it, or with
``history="impressions"`` the last items shown, clicked or not, each with its action type
(and, from the same per-user grouping, the user's as-of counts: ``counts``).

Leakage is the failure that makes every later figure a lie, so the rule is strict: an entry
is an event whose time is strictly before the impression's request time and that comes from
another request. Only the sequence's candidates are held in memory (bounded by the per-user
cap applied upstream), and impressions stream through.
"""
from __future__ import annotations

import bisect
from typing import Any, Iterable, Iterator

import apache_beam as beam

from ppm_tf import features
from ppm_tf.preprocessing.counts import counts_per_request


def attach_behaviour_sequences(events: Iterable[dict[str, Any]], max_seq_len: int,
                               history: str = "clicks") -> Iterator[dict[str, Any]]:
    """Yields each of one user's events with ``hist_*`` fields added (most recent first);
    ``history`` is one of ``features.HISTORY_KINDS``.

    ``events`` must be re-iterable (a list, or a Beam grouped iterable): one pass collects
    the sequence's candidates, the second emits the impressions.
    """
    if history not in features.HISTORY_KINDS:
        raise ValueError(f"history must be one of {features.HISTORY_KINDS}, got {history!r}")
    sources = tuple(features.HIST_FIELD_SOURCES.values())
    entries = sorted((event["ts"], event["request_id"], *(event[name] for name in sources),
                      features.action_type(event["click"], event["order"]))
                     for event in events if history == "impressions" or event["click"])
    entry_times = [entry[0] for entry in entries]
    for event in events:
        chosen = []
        position = bisect.bisect_left(entry_times, event["ts"]) - 1  # last one strictly before
        while position >= 0 and len(chosen) < max_seq_len:
            entry = entries[position]
            if entry[1] != event["request_id"]:
                chosen.append(entry)
            position -= 1
        yield {
            **event,
            **{field: [entry[2 + index] for entry in chosen]
               for index, field in enumerate(features.HIST_FIELD_SOURCES)},
            features.HIST_TS: [entry[0] for entry in chosen],
            features.HIST_ACTIONS: [entry[-1] for entry in chosen],
            features.HIST_LEN: len(chosen),
        }


def _user_examples(element, max_seq_len: int, count_lookback_days: int, history: str):
    _, events = element
    counts = counts_per_request(events, count_lookback_days)
    for example in attach_behaviour_sequences(events, max_seq_len, history):
        yield {**example, features.USER_COUNTS: counts[example["request_id"]]}


class BehaviourSequences(beam.PTransform):
    """Events of all users -> examples with ``hist_*`` fields and the user's counts,
    grouped per user."""

    def __init__(self, max_seq_len: int, count_lookback_days: int, history: str = "clicks"):
        super().__init__()
        self.max_seq_len = max_seq_len
        self.count_lookback_days = count_lookback_days
        self.history = history

    def expand(self, events):
        return (events
                | "ByUser" >> beam.Map(lambda event: (event["user_id"], event))
                | "Group" >> beam.GroupByKey()
                | "Attach" >> beam.FlatMap(_user_examples, self.max_seq_len,
                                           self.count_lookback_days, self.history))
