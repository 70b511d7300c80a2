"""``requests.user_inputs``: a request's user-level inputs built from raw events are the
preprocessed example's, for both kinds of behaviour sequence."""
import numpy as np
import pytest

from ppm_tf import features
from ppm_tf.export.requests import user_inputs

T0 = 1_742_600_000
MAX_SEQ_LEN = 4


def event(request_id, item_id, seconds, click=0, order=0, user_id="u1"):
    return {"request_id": request_id, "user_id": user_id, "item_id": item_id, "ts": T0 + seconds,
            "click": click, "order": order}


EVENTS = [event("r1", "a", 0, click=1), event("r1", "b", 0),
          event("r2", "c", 60, click=1, order=1), event("r2", "d", 60), event("r2", "e", 60),
          event("r3", "f", 120), event("other", "z", 90, click=1, user_id="u2"),
          event("now", "g", 200, click=1)]  # the request itself: never its own history


@pytest.mark.parametrize("history, items, actions", [
    ("clicks", ["c", "a"], [features.ACTION_ORDERED, features.ACTION_CLICKED]),
    ("impressions", ["f", "e", "d", "c"],
     [features.ACTION_SHOWN, features.ACTION_SHOWN, features.ACTION_SHOWN,
      features.ACTION_ORDERED]),
])
def test_the_sequence_holds_what_preprocess_json_says_with_its_actions(history, items, actions):
    inputs = user_inputs("u1", EVENTS, "now", T0 + 200, MAX_SEQ_LEN, 7, history)
    padding = MAX_SEQ_LEN - len(items)
    assert inputs[features.HIST_ITEM_IDS].tolist() == [[item.encode() for item in items]
                                                       + [b""] * padding]
    assert inputs[features.HIST_ACTIONS].tolist() == [actions + [0] * padding]
    assert inputs[features.HIST_ACTIONS].dtype == np.int64
    assert (inputs[features.HIST_TS][0, :len(items)] < T0 + 200).all()
    # The counts are the user's events before the request, whatever the sequence holds.
    assert inputs[features.USER_COUNTS][0, :3].tolist() == [6.0, 2.0, 1.0]
