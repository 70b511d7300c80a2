"""Pre-training's request grouping chosen from the data (``pretrain_request_group="auto"``):
groups of ``AUTO_GROUP`` when the tower then runs on at most half a batch's rows (requests
whose impressions share their tower inputs, as on the demo world), records one by one when
grouping saves little (each impression its own time, as on MovieLens)."""
import dataclasses
import json

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import AUTO, AUTO_GROUP, preset
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.ppm import PPM
from ppm_tf.training.pretrain import choose_request_group, resolved_request_group
from ppm_tf.work_layout import WorkLayout

CONFIG = preset("tiny")
MAX_SEQ_LEN, REQUESTS, IMPRESSIONS = 3, 80, 5
TS = 1_742_600_000


def record(request: int, impression: int, own_time: bool) -> dict:
    ts = TS + request * 600 + (impression if own_time else 0)
    return {
        features.REQUEST_ID: f"r{request}", features.USER_ID: f"u{request % 9}",
        features.ITEM_ID: f"i{impression}", features.CATEGORY: "lamp", features.BRAND: "",
        features.ITEM_CONTENT: "brass", features.TS: ts,
        features.HIST_ITEM_IDS: [f"h{request % 9}", "h1"], features.HIST_CATEGORIES: ["", ""],
        features.HIST_CONTENT: ["", ""], features.HIST_TS: [ts - 60, ts - 120],
        features.HIST_ACTIONS: [features.ACTION_CLICKED] * 2, features.HIST_LEN: 2,
        features.CLICK: impression % 2, features.ORDER: 0, features.IS_COLD_ITEM: 0,
        features.ITEM_AGE_DAYS: 1.0, features.SPLIT: "pretrain",
        **{name: [0.0] * features.COUNT_SIZE for name in features.COUNT_FEATURES},
    }


def pretrain_work(tmp_path, own_time: bool) -> str:
    """A pretrain split of requests of ``IMPRESSIONS`` impressions, written request by
    request; with ``own_time`` each impression carries its own time (so its own tower
    input)."""
    layout = WorkLayout(str(tmp_path))
    path = layout.examples_prefix("pretrain") + "-00000-of-00001.tfrecord.gz"
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for request in range(REQUESTS):
            for impression in range(IMPRESSIONS):
                writer.write(features.encode_example(record(request, impression, own_time),
                                                     features.EXAMPLE_FEATURES, MAX_SEQ_LEN))
    (tmp_path / "preprocess.json").write_text(json.dumps({"max_seq_len": MAX_SEQ_LEN}))
    return str(tmp_path)


def ppm(config) -> PPM:
    return PPM(ItemVectorTable(["h1", "h2"], np.ones((2, 4), np.float32)), config,
               MAX_SEQ_LEN, {"click_rate": 0.3, "order_rate": 0.1})


def test_grouping_is_chosen_when_it_at_least_halves_the_towers_rows():
    assert choose_request_group(512, 256) == AUTO_GROUP
    assert choose_request_group(512, 257) == 1


@pytest.mark.parametrize("own_time, expected", [(False, AUTO_GROUP), (True, 1)])
def test_auto_groups_requests_that_share_their_tower_inputs_and_only_those(tmp_path, own_time,
                                                                           expected):
    work = pretrain_work(tmp_path, own_time)
    config = dataclasses.replace(CONFIG, pretrain_request_group=AUTO)
    group, how = resolved_request_group(work, config, ppm(config))
    assert group == expected and how["rule"] == AUTO
    assert how["examples_per_batch"] > 0
    # Shared inputs: a group of a request's 5 impressions is one tower row.
    rows_per_example = how["tower_rows_grouped"] / how["examples_per_batch"]
    assert rows_per_example == (pytest.approx(1.0) if own_time
                                else pytest.approx(1 / IMPRESSIONS, abs=0.05))
    assert how["reads"] == ("records one by one" if expected == 1
                            else f"groups of up to {AUTO_GROUP} impressions of a request")


def test_a_given_request_group_is_read_as_given(tmp_path):
    config = dataclasses.replace(CONFIG, pretrain_request_group=3)
    assert resolved_request_group(str(tmp_path), config, ppm(config)) == (
        3, {"rule": "given", "reads": "groups of up to 3 impressions of a request"})


def test_a_ranking_loss_reads_whole_requests_whatever_the_request_group(tmp_path):
    for given in (AUTO, 3):  # nothing is sampled: tmp_path holds no split
        config = dataclasses.replace(CONFIG, pretrain_request_group=given,
                                     ranking_loss="pairwise")
        _, how = resolved_request_group(str(tmp_path), config, ppm(config))
        assert how == {"rule": "ranking loss",
                       "reads": "whole requests (the ranking loss pairs a request's impressions)"}


@pytest.mark.parametrize("value", [0, "sometimes", 2.5])
def test_the_config_refuses_a_request_group_that_is_neither_auto_nor_a_count(value):
    with pytest.raises(ValueError, match="pretrain_request_group must be 'auto' or an integer"):
        dataclasses.replace(CONFIG, pretrain_request_group=value)
