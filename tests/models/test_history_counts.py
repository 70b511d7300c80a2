"""Behaviour items' as-of counts for PPM's tower (``tower_item_counts``): the lookup equals a
brute-force sum over the items' days before the request's day, never that day or later; the
table is read from preprocessing's ``item_days`` rows; the tower reads the counts only with
the option; the exported tower carries the table and serves what the model computes."""
import dataclasses

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.count_tables import ITEM_DAYS, format_row
from ppm_tf.data.raw_files import SECONDS_PER_DAY as DAY
from ppm_tf.models.config import preset
from ppm_tf.models.history_counts import HistoryItemCounts, load_history_item_counts
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.ppm import PPM
from ppm_tf.training.pretrain import export_user_tower
from ppm_tf.work_layout import WorkLayout

CONFIG = preset("tiny")
MAX_SEQ_LEN, ITEM_DIM, LOOKBACK = 4, 6, 3
ITEMS = ("i0", "i1", "i2", "i3")
PRIORS = {"click_rate": 0.05, "order_rate": 0.01}
FIRST_DAY = 20_100  # day numbers of the tables below


def random_days(rng, items: int, days: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item rows 1..items, day starts, totals) for a random subset of (item, day) pairs."""
    pairs = [(row, day) for row in range(1, items + 1) for day in range(days)
             if rng.random() < 0.5]
    totals = rng.integers(0, 9, size=(len(pairs), 3))
    totals[:, 1] = np.minimum(totals[:, 1], totals[:, 0])
    totals[:, 2] = np.minimum(totals[:, 2], totals[:, 1])
    rows = np.array([row for row, _ in pairs], np.int64)
    starts = np.array([(FIRST_DAY + day) * DAY for _, day in pairs], np.int64)
    return rows, starts, totals.astype(np.float32)


def brute_force(rows, starts, totals, item_row: int, ts: int) -> np.ndarray:
    request_day = ts // DAY * DAY
    mine = rows == item_row
    before = mine & (starts < request_day)
    recent = before & (starts >= request_day - LOOKBACK * DAY)
    return np.r_[totals[before].sum(0), totals[recent].sum(0)] if len(rows) else np.zeros(6)


def test_the_lookup_sums_each_items_days_before_the_requests_day_and_never_later():
    rng = np.random.default_rng(3)
    rows, starts, totals = random_days(rng, items=5)
    shuffled = rng.permutation(len(rows))  # the table's rows come in any order
    layer = HistoryItemCounts(rows[shuffled], starts[shuffled], totals[shuffled], LOOKBACK)
    item_rows = rng.integers(0, 7, size=(40, MAX_SEQ_LEN))  # 0: padding, 6: no days at all
    ts = (FIRST_DAY - 2 + rng.integers(0, 16, size=40)) * DAY + rng.integers(0, DAY, size=40)
    looked_up = layer((tf.constant(item_rows), tf.constant(ts))).numpy()
    assert looked_up.shape == (40, MAX_SEQ_LEN, features.COUNT_SIZE)
    for example in range(40):
        for entry in range(MAX_SEQ_LEN):
            np.testing.assert_array_equal(
                looked_up[example, entry],
                brute_force(rows, starts, totals, item_rows[example, entry], ts[example]))
    # Events on a request's day or later never count: add some on those days, for every item.
    for example in range(0, 40, 5):
        request_day = ts[example] // DAY * DAY
        later = [(row, request_day + offset * DAY) for row in range(1, 7) for offset in range(3)
                 if not ((rows == row) & (starts == request_day + offset * DAY)).any()]
        grown = HistoryItemCounts(np.r_[rows, [row for row, _ in later]],
                                  np.r_[starts, [start for _, start in later]],
                                  np.r_[totals, np.full((len(later), 3), 5.0, np.float32)],
                                  LOOKBACK)
        np.testing.assert_array_equal(
            grown((tf.constant(item_rows[example:example + 1]), ts[example:example + 1])).numpy(),
            looked_up[example:example + 1])

def test_the_table_refuses_a_repeated_day_and_a_lookback_below_one():
    with pytest.raises(ValueError, match="more than once"):
        HistoryItemCounts([1, 1], [DAY, DAY + 5], np.ones((2, 3)), LOOKBACK)
    with pytest.raises(ValueError, match="lookback_days must be >= 1"):
        HistoryItemCounts([1], [DAY], np.ones((1, 3)), 0)


def write_item_days(work, lines: list[str]) -> None:
    path = WorkLayout(str(work)).count_table_prefix(ITEM_DAYS) + "-00000-of-00001.tsv"
    (work / "count_tables").mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))


def test_the_table_loads_preprocessings_rows_keyed_by_the_item_tables_rows(tmp_path):
    day = FIRST_DAY * DAY
    write_item_days(tmp_path, [format_row("i2", [day, 4, 2, 1]),
                               format_row("gone", [day, 9, 9, 9]),  # not in the item table
                               format_row("i0", [day + DAY, 3, 1, 0])])
    layer = load_history_item_counts(str(tmp_path), list(ITEMS), LOOKBACK)
    ids_file = tmp_path / "item_ids.txt"
    ids_file.write_text("".join(f"{item}\n" for item in ITEMS))
    from_file = load_history_item_counts(str(tmp_path), str(ids_file), LOOKBACK)
    table = ItemVectorTable(list(ITEMS), np.zeros((len(ITEMS), 2), np.float32))
    rows = table.row_indices(tf.constant([["i0", "i2", "gone", ""]]))
    for lookup in (layer, from_file):
        counts = lookup((rows, tf.constant([day + 2 * DAY + 5]))).numpy()[0]
        np.testing.assert_array_equal(counts, [[3, 1, 0, 3, 1, 0], [4, 2, 1, 4, 2, 1],
                                               [0] * 6, [0] * 6])
    # Times no request has (a malformed one) read everything, or nothing, never another item.
    far, negative = (layer((rows, tf.constant([ts], tf.int64))).numpy()[0]
                     for ts in (2**62, -5 * DAY))
    np.testing.assert_array_equal(far, [[3, 1, 0, 0, 0, 0], [4, 2, 1, 0, 0, 0], [0] * 6,
                                        [0] * 6])
    np.testing.assert_array_equal(negative, np.zeros((4, 6)))


def test_a_malformed_item_days_line_names_its_file_and_line(tmp_path):
    write_item_days(tmp_path, [format_row("i0", [FIRST_DAY * DAY, 1, 0, 0]), "i1\t5\t1"])
    with pytest.raises(ValueError, match=r"item_days-00000-of-00001.tsv:2: 2 values, expected 4"):
        load_history_item_counts(str(tmp_path), list(ITEMS), LOOKBACK)


def tower_model(history_counts: HistoryItemCounts | None) -> PPM:
    tf.keras.utils.set_random_seed(5)
    vectors = np.random.default_rng(0).normal(size=(len(ITEMS), ITEM_DIM)).astype(np.float32)
    config = dataclasses.replace(CONFIG, tower_item_counts=history_counts is not None)
    return PPM(ItemVectorTable(list(ITEMS), vectors, name="item_vectors"), config, MAX_SEQ_LEN,
               PRIORS, history_counts)


def tower_inputs() -> dict[str, tf.Tensor]:
    ts = (FIRST_DAY + 10) * DAY
    return {features.HIST_ITEM_IDS: tf.constant([["i1", "i2", "i3", ""], ["i2", "i1", "", ""]]),
            features.HIST_TS: tf.constant([[ts - 60, ts - 120, ts - 180, 0],
                                           [ts - 60, ts - 120, 0, 0]], tf.int64),
            features.HIST_ACTIONS: tf.constant([[1, 1, 1, 0], [1, 1, 0, 0]], tf.int64),
            features.TS: tf.constant([ts, ts], tf.int64)}


def counts_table(clicks: float) -> HistoryItemCounts:
    """Items i1 and i2 (rows 2, 3) shown 50 times on two earlier days, ``clicks`` each day."""
    return HistoryItemCounts([2, 2, 3, 3], np.array([1, 8, 2, 9]) * DAY + FIRST_DAY * DAY,
                             [[50, clicks, 0]] * 4, LOOKBACK)


def states(model: PPM, inputs: dict) -> np.ndarray:
    return model.user_states(inputs)[features.PPM_USER_STATES].numpy()


def test_the_tower_reads_its_items_counts_only_with_the_option():
    with pytest.raises(ValueError, match="exactly when the config's tower_item_counts"):
        PPM(ItemVectorTable(list(ITEMS), np.ones((4, ITEM_DIM), np.float32)),
            dataclasses.replace(CONFIG, tower_item_counts=True), MAX_SEQ_LEN, PRIORS)
    inputs = tower_inputs()
    few, many = tower_model(counts_table(1.0)), tower_model(counts_table(40.0))
    few_states, many_states = states(few, inputs), states(many, inputs)  # same weights (seed)
    assert not np.allclose(few_states[:, :2], many_states[:, :2])
    without = tower_model(None)
    states(without, inputs)
    assert without.user_tower.projection.kernel.shape[0] == ITEM_DIM
    assert few.user_tower.projection.kernel.shape[0] == ITEM_DIM + features.COUNT_SIZE
    logits = few({**inputs, features.ITEM_ID: tf.constant(["i0", "i3"]),
                  **{name: tf.ones([2, features.COUNT_SIZE]) for name in features.COUNT_FEATURES}})
    assert np.isfinite(logits["click"].numpy()).all()


def test_the_exported_tower_carries_the_table_and_serves_the_models_states(tmp_path):
    model = tower_model(counts_table(10.0))
    inputs = tower_inputs()
    expected = states(model, inputs)
    export_user_tower(model, MAX_SEQ_LEN, str(tmp_path / "tower"))
    serving = tf.saved_model.load(str(tmp_path / "tower")).signatures["serving_default"]
    assert set(serving.structured_input_signature[1]) == set(features.USER_STATE_INPUTS)
    served = serving(**inputs)[features.PPM_USER_STATES].numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    # A request after the log's end reads the counts at its end: all days, the recent ones.
    later = {**inputs, features.TS: inputs[features.TS] + 100 * DAY}
    np.testing.assert_allclose(serving(**later)[features.PPM_USER_STATES].numpy(),
                               states(model, later), rtol=1e-5, atol=1e-6)
