"""The jobs' "nothing is lost" checks: every record read is written or dead-lettered."""
import pytest

from ppm_tf.errors import StageError
from ppm_tf.preprocessing.pipeline import check_nothing_lost

STATS = {"splits": {"pretrain": {"examples": 70}, "train": {"examples": 20},
                    "eval": {"examples": 5}},
         "dead_letter": {"events.ts.future": 3, "events.user_id.unknown_id": 2,
                         "items.image.undecodable_image": 4}}


def test_examples_plus_event_dead_letters_account_for_every_event_read():
    check_nothing_lost(STATS, read=100)  # 95 examples + 5 event dead letters
    check_nothing_lost(STATS, read=None)  # a runner without counters: nothing to compare


def test_a_missing_event_fails_the_job_with_the_counts():
    with pytest.raises(StageError, match=r"read 101, wrote 95 examples and 5 dead letters "
                                         r"\(1 unaccounted for\)"):
        check_nothing_lost(STATS, read=101)
