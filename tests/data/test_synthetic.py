"""The synthetic world: determinism, the oracle, realism ranges, and that content is learnable."""
import dataclasses
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ppm_tf.data import raw_files, schema
from ppm_tf.data.synthetic import PRESETS, WorldConfig, generate_world, preset
from ppm_tf.data.synthetic.world import catalog_and_population
from ppm_tf.data.synthetic import vocabulary as vocab
from ppm_tf.data.synthetic.population import sample_population


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world") / "tiny"
    summary = generate_world(preset("tiny"), seed=7, out=str(out), preset_name="tiny")
    layout = raw_files.RawLayout(str(out))
    tables = {table: list(raw_files.read_jsonl(layout.pattern(table))) for table in schema.TABLES}
    oracle = list(raw_files.read_jsonl(layout.oracle_pattern))
    return out, summary, tables, oracle


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def test_same_seed_gives_byte_identical_files(tiny_world, tmp_path):
    out, summary, _, _ = tiny_world
    again = tmp_path / "again"
    assert generate_world(preset("tiny"), seed=7, out=str(again), preset_name="tiny") == summary
    assert _file_bytes(again) == _file_bytes(out)
    other = tmp_path / "other"
    generate_world(preset("tiny"), seed=8, out=str(other), preset_name="tiny")
    assert _file_bytes(other)["events/part-00010.jsonl"] != _file_bytes(out)["events/part-00010.jsonl"]


def test_every_record_satisfies_the_raw_contract(tiny_world):
    out, _, tables, _ = tiny_world
    world = raw_files.read_world(str(out))
    context = schema.ValidationContext(
        max_ts=world["horizon"]["end_ts"],
        known_item_ids=frozenset(item["item_id"] for item in tables["items"]),
        known_user_ids=frozenset(user["user_id"] for user in tables["users"]),
        item_launch_ts={item["item_id"]: item["launch_ts"] for item in tables["items"]},
        image_root=str(out), read_image=schema.read_local_file)
    for table, records in tables.items():
        assert records, f"{table} is empty"
        bad = [(record, problems) for record in records
               if (problems := schema.validate_record(table, record, context))]
        assert not bad, f"{table}: {bad[:3]}"


def test_events_are_time_ordered_unique_and_after_signup(tiny_world):
    _, _, tables, _ = tiny_world
    events = tables["events"]
    assert [event["ts"] for event in events] == sorted(event["ts"] for event in events)
    keys = [(event["request_id"], event["item_id"]) for event in events]
    assert len(set(keys)) == len(keys), "an item is shown twice in one request"
    signup = {user["user_id"]: user["signup_ts"] for user in tables["users"]}
    assert all(event["ts"] >= signup[event["user_id"]] for event in events)
    per_request = defaultdict(set)
    for event in events:
        per_request[event["request_id"]].add((event["user_id"], event["ts"]))
    assert all(len(owners) == 1 for owners in per_request.values())


def test_oracle_is_aligned_with_events_and_explains_the_labels(tiny_world):
    _, _, tables, oracle = tiny_world
    events = tables["events"]
    assert [(row["request_id"], row["item_id"]) for row in oracle] == \
        [(event["request_id"], event["item_id"]) for event in events]
    p_click = np.array([row["p_click"] for row in oracle])
    p_order = np.array([row["p_order"] for row in oracle])
    click = np.array([event["click"] for event in events])
    order = np.array([event["order"] for event in events])
    assert ((p_click > 0) & (p_click < 1)).all() and ((p_order > 0) & (p_order < p_click)).all()
    assert not (order & (1 - click)).any(), "an order without a click"
    # Realised counts within 4 standard deviations of the oracle's expectation.
    for labels, probabilities in ((click, p_click), (order, p_order)):
        sd = np.sqrt((probabilities * (1 - probabilities)).sum())
        assert abs(labels.sum() - probabilities.sum()) < 4 * sd
    # No oracle value leaks into the model-visible records.
    assert not {"p_click", "p_order"} & set().union(*(event.keys() for event in events))


def test_summary_is_within_the_realism_ranges(tiny_world):
    _, summary, _, _ = tiny_world
    assert summary["sizes"]["impressions"] <= 30_000
    assert 0.02 <= summary["click_rate"] <= 0.10
    assert 0 < summary["orders_per_click"] < 1
    assert summary["eval_cold_share"] >= 0.10
    assert 0.72 <= summary["oracle_eval"]["click_auc"]["overall"] <= 0.85
    assert sum(summary["impressions_per_split"].values()) == summary["sizes"]["impressions"]


def test_world_json_describes_the_horizon_and_splits(tiny_world):
    out, summary, _, _ = tiny_world
    world = raw_files.read_world(str(out))
    config = preset("tiny")
    splits = world["suggested_splits"]
    assert splits["pretrain"]["days"] == [0, config.num_days - 12]
    assert splits["train"]["days"] == [config.num_days - 12, config.num_days - 5]
    assert splits["eval"]["end_ts"] == world["horizon"]["end_ts"]
    assert WorldConfig.from_json(world["config"]) == config and world["seed"] == 7
    assert world["sizes"] == summary["sizes"]


def test_new_items_launch_on_every_day_of_the_horizon(tiny_world):
    out, _, tables, _ = tiny_world
    world = raw_files.read_world(str(out))
    start = world["horizon"]["start_ts"]
    launch_days = {(item["launch_ts"] - start) // 86_400 for item in tables["items"]}
    assert set(range(1, preset("tiny").num_days)) <= launch_days
    assert any(day < 0 for day in launch_days), "no catalogue before the horizon"


def test_hidden_effects_are_drawn_again_from_the_preset_and_seed(tiny_world):
    out, _, tables, _ = tiny_world
    world = raw_files.read_world(str(out))
    catalog, population = catalog_and_population(world)
    start = world["horizon"]["start_ts"]
    launched = {item["item_id"]: item["launch_ts"] for item in tables["items"]}
    assert catalog.item_ids == list(launched)
    assert [start + int(day) * 86_400 + int(offset) for day, offset in zip(
        catalog.launch_day, catalog.launch_offset_seconds)] == list(launched.values())
    assert population.user_ids == [user["user_id"] for user in tables["users"]]
    other, _ = catalog_and_population({**world, "seed": 8})
    assert not np.allclose(other.quality, catalog.quality)
    with pytest.raises(ValueError, match="synthetic worlds only"):
        catalog_and_population({**world, "source": "movielens"})


def test_titles_name_the_attributes_with_synonyms(tiny_world):
    _, _, tables, _ = tiny_world
    category_words = set()
    for item in tables["items"]:
        category, colour, pattern = item["entities"]
        assert item["category"] == category and item["attrs"]["colour"] == colour
        assert item["title"].startswith(item["brand"])
        assert any(word in item["title"] for word in vocab.CATEGORIES[category][1])
        assert any(word in item["title"] for word in vocab.COLOURS[colour][1])
        category_words.add(next(word for word in vocab.CATEGORIES[category][1]
                                if word in item["title"]))
    assert len(category_words) > len(vocab.CATEGORIES), "titles never use synonyms"


def _pixels(out: Path, item: dict) -> np.ndarray:
    with Image.open(io.BytesIO((out / item["image"]).read_bytes())) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255.0


@pytest.mark.parametrize("entity, position, chance", [
    ("colour", 1, 1 / len(vocab.COLOURS)),
    ("category", 0, 1 / len(vocab.CATEGORIES)),
    ("pattern", 2, 1 / len(vocab.PATTERNS)),
])
def test_images_show_their_entities(tiny_world, entity, position, chance):
    """A nearest-centroid classifier on raw pixels, trained on half the items, beats chance."""
    out, _, tables, _ = tiny_world
    items = tables["items"]
    features = np.stack([_feature(_pixels(out, item), entity) for item in items])
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    labels = np.array([item["entities"][position] for item in items])
    train = np.arange(len(items)) % 2 == 0
    classes = sorted(set(labels[train]))
    centroids = np.stack([features[train & (labels == name)].mean(axis=0) for name in classes])
    distances = ((features[~train, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (np.array(classes)[distances.argmin(1)] == labels[~train]).mean()
    assert accuracy > 2.5 * chance, f"{entity}: accuracy {accuracy:.2f} vs chance {chance:.2f}"


def _feature(pixels: np.ndarray, entity: str) -> np.ndarray:
    corners = np.concatenate([pixels[:3, :3], pixels[:3, -3:], pixels[-3:, :3], pixels[-3:, -3:]])
    foreground = np.abs(pixels - np.median(corners.reshape(-1, 3), axis=0)).sum(-1) > 0.25
    if entity == "colour":
        return pixels[foreground].mean(0)
    if entity == "category":
        return foreground.astype(np.float32).ravel()
    # Pattern: how brightness varies between neighbouring object pixels, and along the height.
    gray = pixels.mean(-1)

    def neighbour_contrast(shift_rows: int, shift_cols: int) -> float:
        rows, cols = gray.shape
        a = (slice(shift_rows, rows), slice(shift_cols, cols))
        b = (slice(0, rows - shift_rows), slice(0, cols - shift_cols))
        both = foreground[a] & foreground[b]
        return float(np.abs(gray[a] - gray[b])[both].mean())

    heights = np.nonzero(foreground)[0]
    return np.array([gray[foreground].std(), neighbour_contrast(1, 0), neighbour_contrast(0, 1),
                     neighbour_contrast(1, 1), np.corrcoef(heights, gray[foreground])[0, 1]])


def _similar_to_last_click_uplift(tables, oracle) -> float:
    """Mean p_click of candidates sharing the category of the user's previous click, over others."""
    category = {item["item_id"]: item["category"] for item in tables["items"]}
    last_click, same, other = {}, [], []
    by_request = defaultdict(list)
    for event, truth in zip(tables["events"], oracle):
        by_request[event["request_id"]].append((event, truth))
    for rows in by_request.values():
        user = rows[0][0]["user_id"]
        for event, truth in rows:
            if user in last_click:
                (same if category[event["item_id"]] == last_click[user] else other).append(
                    truth["p_click"])
        for event, _ in rows:
            if event["click"]:
                last_click[user] = category[event["item_id"]]
    return float(np.mean(same) / np.mean(other))


def test_behaviour_effect_raises_clicks_on_items_like_recent_clicks(tiny_world, tmp_path):
    _, _, tables, oracle = tiny_world
    without = tmp_path / "no_behaviour"
    generate_world(dataclasses.replace(preset("tiny"), behaviour_scale=0.0), seed=7,
                   out=str(without))
    layout = raw_files.RawLayout(str(without))
    tables_without = {table: list(raw_files.read_jsonl(layout.pattern(table)))
                      for table in ("items", "events")}
    oracle_without = list(raw_files.read_jsonl(layout.oracle_pattern))
    with_effect = _similar_to_last_click_uplift(tables, oracle)
    # Without the effect, the uplift is what stable taste alone explains.
    assert with_effect > _similar_to_last_click_uplift(tables_without, oracle_without) + 0.1


def test_tastes_drift_slowly_but_keep_their_spread():
    config = preset("demo")
    population = sample_population(config, np.random.default_rng(0))
    users = np.arange(population.size)
    first = population.taste_on(0, config.drift_radians, config.num_days, users)
    last = population.taste_on(config.num_days - 1, config.drift_radians, config.num_days, users)
    correlation = np.corrcoef(first.ravel(), last.ravel())[0, 1]
    assert correlation == pytest.approx(np.cos(config.drift_radians), abs=0.02)
    assert last.std() == pytest.approx(first.std(), rel=0.02)


def test_presets_are_sized_as_documented():
    def expected_impressions(config: WorldConfig) -> float:
        requests_per_visit = 1 + config.extra_requests_per_visit  # before the cap, roughly
        return (config.num_users * config.daily_active_rate * requests_per_visit
                * config.impressions_per_request * config.num_days)
    assert expected_impressions(PRESETS["tiny"]) < 30_000
    assert PRESETS["demo"].num_users == 20_000 and PRESETS["demo"].num_items == 10_000
    assert expected_impressions(PRESETS["demo"]) >= 1_000_000
    assert expected_impressions(PRESETS["large"]) >= 55_000_000


@pytest.mark.parametrize("changes, message", [
    ({"num_days": 12}, "must exceed train_days"),
    ({"candidate_mix": (0.5, 0.5, 0.5)}, "must sum to 1"),
    ({"num_items": 0}, "num_items must be positive"),
])
def test_bad_config_is_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(preset("tiny"), **changes)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")


def test_generate_refuses_to_replace_unrelated_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="refusing to replace"):
        generate_world(preset("tiny"), seed=0, out=str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "keep"
