"""The A/B replay with the built-in arms on the tiny world: the oracle is the best arm and
beats random with a CI that excludes zero, the same seed gives the same table, and the metrics
are what their definitions say."""
import json

import numpy as np
import pytest

from ppm_tf.ab.experiment import AbSettings, run_ab
from ppm_tf.ab.outcomes import shown_positions, user_outcomes
from ppm_tf.ab.replay import ReplayedRequests
from ppm_tf.ab.statistics import METRICS, compare_arms
from ppm_tf.ab.table import ab_table_lines
from ppm_tf.data.synthetic import generate_world, preset
from ppm_tf.errors import StageError

BUILT_IN = ("oracle", "popularity", "random")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ab_builtin") / "raw"
    generate_world(preset("tiny"), seed=0, out=str(out), preset_name="tiny")
    return str(out)


def _run(world_dir, work, **overrides):
    settings = dict(work=str(work), data=world_dir, arms=BUILT_IN, pool=50, resamples=500)
    return run_ab(AbSettings(**{**settings, **overrides}))


@pytest.fixture(scope="module")
def result(world_dir, tmp_path_factory):
    return _run(world_dir, tmp_path_factory.mktemp("work"), control="random")


def test_the_oracle_beats_random_with_a_ci_that_excludes_zero(result):
    difference = result["comparison"]["differences"]["oracle"]
    for metric in ("user_ctr", "user_cvr", "clicks_per_request", "orders_per_request"):
        low, high = difference[metric]["ci"]
        assert 0 < low <= difference[metric]["value"] <= high, metric


def test_the_oracle_is_the_best_arm(result):
    arms = result["comparison"]["arms"]
    for metric in ("user_ctr", "clicks_per_request"):
        best = max(arms, key=lambda arm: arms[arm][metric]["value"])
        assert best == "oracle", (metric, {arm: arms[arm][metric]["value"] for arm in arms})
    # popularity is a real baseline: better than chance, short of the ceiling
    assert arms["random"]["clicks_per_request"]["value"] < \
        arms["popularity"]["clicks_per_request"]["value"] < \
        arms["oracle"]["clicks_per_request"]["value"]


def test_the_same_seed_gives_the_same_table_and_another_seed_another(world_dir, result,
                                                                      tmp_path):
    again = _run(world_dir, tmp_path / "again", control="random")
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)
    assert ab_table_lines(again) == ab_table_lines(result)
    other = _run(world_dir, tmp_path / "other", control="random", seed=1)
    assert other["comparison"] != result["comparison"]


def test_the_result_is_written_and_the_table_says_what_is_not_modelled(result, world_dir,
                                                                       tmp_path):
    written = _run(world_dir, tmp_path, days=1, control="random")
    stored = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert stored["requests"] == written["requests"]
    assert stored["eval_days"] == [stored["world_eval_days"][0]]
    assert "on 1 of the 5 eval days" in "\n".join(ab_table_lines(written))
    text = "\n".join(ab_table_lines(result))
    assert "no feedback loop" in text and "one-shot" in text
    assert f"{result['requests']:,} requests" in text
    for arm in BUILT_IN:
        assert result["errors"][arm]["failed_requests"] == 0


def test_settings_are_checked_with_a_message_naming_the_field(world_dir, tmp_path):
    with pytest.raises(ValueError, match="control 'base' is not one of the arms"):
        _run(world_dir, tmp_path, control="base")
    with pytest.raises(ValueError, match="slots=60 must be between 1 and pool=50"):
        _run(world_dir, tmp_path, slots=60)
    with pytest.raises(ValueError, match="at least two different arms"):
        _run(world_dir, tmp_path, arms=("oracle", "oracle"))
    with pytest.raises(ValueError, match="transport must be one of"):
        _run(world_dir, tmp_path, transport="http")
    movielens = tmp_path / "movielens"
    movielens.mkdir()
    (movielens / "world.json").write_text(json.dumps({"source": "movielens"}))
    with pytest.raises(StageError, match="needs a synthetic world"):
        _run(str(movielens), tmp_path)


def _requests(users, p_click, cold=None) -> ReplayedRequests:
    p_click = np.asarray(p_click, float)
    shape = p_click.shape
    return ReplayedRequests(
        request_ids=np.array([f"r{row}" for row in range(shape[0])]),
        user_ids=np.asarray(users), day=np.zeros(shape[0], int),
        pool_item_ids=np.array([[f"i{column}" for column in range(shape[1])]] * shape[0]),
        logged=np.zeros(shape, bool),
        cold=np.zeros(shape, bool) if cold is None else np.asarray(cold),
        p_click=p_click, p_order=p_click / 2, clicks_before_day=np.zeros(shape))


def test_a_user_clicks_at_least_once_with_one_minus_the_product_of_misses():
    requests = _requests(["a", "a", "b"], [[0.5, 0.1, 0.2], [0.4, 0.3, 0.0], [0.9, 0.8, 0.7]],
                         cold=[[True, False, False]] * 3)
    shown = shown_positions(requests.p_click, np.zeros((3, 3)), slots=2)
    outcomes = user_outcomes(requests, shown, failed=np.array([False, False, True]))
    # user a: slots 0.5, 0.2 and 0.4, 0.3; user b's request failed and showed nothing
    np.testing.assert_allclose(outcomes.any_click, [1 - 0.5 * 0.8 * 0.6 * 0.7, 0.0])
    np.testing.assert_allclose(outcomes.clicks, [1.4, 0.0])
    np.testing.assert_allclose(outcomes.requests, [2, 1])
    np.testing.assert_allclose(outcomes.shown, [4, 0])
    np.testing.assert_allclose(outcomes.cold_shown, [2, 0])
    np.testing.assert_allclose(outcomes.cold_clicks, [0.9, 0.0])


def test_ties_are_broken_by_the_shared_key_not_by_pool_order():
    scores = np.zeros((1, 4))
    shown = shown_positions(scores, np.array([[0.9, 0.1, 0.5, 0.3]]), slots=2)
    assert shown.tolist() == [[1, 3]]


def test_differences_are_arm_minus_control_with_an_interval_around_them():
    rng = np.random.default_rng(0)
    p_click = rng.uniform(0, 0.3, (400, 10))
    requests = _requests([f"u{row % 200}" for row in range(400)], p_click)
    tie = np.zeros(p_click.shape)
    outcomes = {"best": user_outcomes(requests, shown_positions(p_click, tie, 3),
                                      np.zeros(400, bool)),
                "worst": user_outcomes(requests, shown_positions(-p_click, tie, 3),
                                       np.zeros(400, bool))}
    compared = compare_arms(outcomes, "worst", resamples=400, seed=0)
    assert set(compared["arms"]["best"]) == set(METRICS)
    best, worst = compared["arms"]["best"], compared["arms"]["worst"]
    difference = compared["differences"]["best"]["clicks_per_request"]
    assert difference["value"] == pytest.approx(
        best["clicks_per_request"]["value"] - worst["clicks_per_request"]["value"])
    assert 0 < difference["ci"][0] < difference["value"] < difference["ci"][1]
    assert compared["arms"]["best"]["cold_ctr"] == {"value": None, "ci": [None, None]}
