"""Property tests of the as-of counts: for any log, no count ever includes the impression's
own request or anything later, and every count equals a brute-force count of the log."""
from hypothesis import given, settings
from hypothesis import strategies as st

from ppm_tf.preprocessing.counts import counts_per_request, daily_rows, item_counts

DAY = 86_400
T0 = 1_700_006_400  # a UTC midnight
LOOKBACK_DAYS = 3

# A request: a time over two weeks (seconds apart or days apart, so requests share days and
# seconds), its impressions, each clicked and ordered or not, now and then logged seconds after
# the request's first event.
_request = st.tuples(
    st.integers(0, 14 * DAY).map(lambda offset: offset - offset % 3600),
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 2), st.sampled_from([0, 0, 5])),
             min_size=1, max_size=4))


def _flatten(requests):
    events = []
    for number, (offset, impressions) in enumerate(requests):
        for item, outcome, delay in impressions:
            events.append({"request_id": f"r{number}", "user_id": "u1", "item_id": item,
                           "ts": T0 + offset + delay, "click": int(outcome >= 1),
                           "order": int(outcome == 2)})
    return events


logs = st.lists(_request, min_size=1, max_size=8).map(_flatten).flatmap(st.permutations)


def _brute_force(events, keep) -> list[float]:
    """[impressions, clicks, orders] of the events ``keep`` selects, over the whole log and
    over the last LOOKBACK_DAYS (``keep(event, window_start)``)."""
    def totals(window_start):
        chosen = [event for event in events if keep(event, window_start)]
        return [len(chosen), sum(event["click"] for event in chosen),
                sum(event["order"] for event in chosen)]
    return [float(value) for value in (*totals(None), *totals(LOOKBACK_DAYS))]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(events=logs)
def test_user_counts_see_only_earlier_requests(events):
    per_request = counts_per_request(events, LOOKBACK_DAYS)
    for request, counts in per_request.items():
        start = min(event["ts"] for event in events if event["request_id"] == request)

        def before_request(event, lookback):
            earliest = start - lookback * DAY if lookback else float("-inf")
            return event["request_id"] != request and earliest <= event["ts"] < start

        assert counts == _brute_force(events, before_request)
        # Nothing of the request itself, nothing later: removing them changes nothing.
        earlier = [event for event in events
                   if event["ts"] < start and event["request_id"] != request]
        assert counts_per_request(
            [*earlier, *(event for event in events if event["request_id"] == request)],
            LOOKBACK_DAYS)[request] == counts


@settings(derandomize=True, max_examples=200, deadline=None)
@given(events=logs)
def test_item_counts_are_snapshots_at_the_start_of_the_day(events):
    for item in "abc":
        item_events = [event for event in events if event["item_id"] == item]
        for event, counts in zip(item_events, item_counts(item_events, daily_rows(item_events),
                                                          LOOKBACK_DAYS)):
            day = event["ts"] - event["ts"] % DAY

            def before_day(other, lookback):
                earliest = day - lookback * DAY if lookback else float("-inf")
                return earliest <= other["ts"] < day

            assert counts == _brute_force(item_events, before_day)
            assert counts[0] <= sum(other["ts"] < event["ts"] for other in item_events)
