"""Property test of the no-leakage rule: for any log of one user, every history is exactly the
user's latest clicks (or impressions, with ``history="impressions"``) strictly before the
impression and from other requests, newest first, each with its action type."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppm_tf.preprocessing.sequences import attach_behaviour_sequences

T0 = 1_700_000_000
HIST_FIELDS = ("hist_item_ids", "hist_categories", "hist_content", "hist_ts", "hist_actions",
               "hist_len")
ACTIONS = {(0, 0): 1, (1, 0): 2, (1, 1): 3}  # (click, order) -> shown, clicked, ordered

# A request: one timestamp (a small range, so requests often share a second) and the
# impressions it showed, each clicked or not (and a click ordered or not); items repeat
# across requests. An impression is
# now and then logged a second after its request's time, so a click of the same request can
# be strictly earlier: "from another request" is then tested apart from "strictly before".
_request = st.tuples(
    st.integers(0, 8),
    st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from([(0, 0), (1, 0), (1, 1)]),
                       st.sampled_from([0, 0, 0, 1])),
             min_size=1, max_size=4))


def _flatten(requests):
    return [{"request_id": f"r{number}", "user_id": "u1", "item_id": item,
             "category": f"cat-{item}", "item_content": f"tokens-of-{item}",
             "ts": T0 + second + delay, "click": click, "order": order}
            for number, (second, impressions) in enumerate(requests)
            for item, (click, order), delay in impressions]


# Events arrive in any order: the function may not rely on the log being sorted.
user_logs = st.lists(_request, max_size=10).map(_flatten).flatmap(st.permutations)


def _reference(events, event, max_seq_len, history):
    """Brute force: every qualifying entry, newest first (ties: the larger key first)."""
    entries = sorted(((other["ts"], other["request_id"], other["item_id"], other["category"],
                       ACTIONS[other["click"], other["order"]])
                      for other in events
                      if (other["click"] or history == "impressions")
                      and other["ts"] < event["ts"]
                      and other["request_id"] != event["request_id"]), reverse=True)
    return entries[:max_seq_len]


@pytest.mark.parametrize("history", ["clicks", "impressions"])
@settings(derandomize=True, max_examples=200, deadline=None)
@given(events=user_logs, max_seq_len=st.integers(1, 6))
def test_histories_are_leak_free_and_match_brute_force(events, max_seq_len, history):
    examples = list(attach_behaviour_sequences(events, max_seq_len, history))
    assert [{key: value for key, value in example.items() if key not in HIST_FIELDS}
            for example in examples] == events
    for example in examples:
        entries = list(zip(example["hist_ts"], example["hist_item_ids"],
                           example["hist_categories"], example["hist_actions"]))
        assert example["hist_len"] == len(entries) <= max_seq_len
        assert all(ts < example["ts"] for ts, *_ in entries)
        assert example["hist_ts"] == sorted(example["hist_ts"], reverse=True)
        for ts, item_id, category, action in entries:
            assert any(ACTIONS[other["click"], other["order"]] == action
                       and other["ts"] == ts and other["item_id"] == item_id
                       and other["category"] == category
                       and other["request_id"] != example["request_id"] for other in events)
        if history == "clicks":
            assert all(action >= 2 for *_, action in entries)
        assert entries == [(ts, item_id, category, action) for ts, _, item_id, category, action
                           in _reference(events, example, max_seq_len, history)]
