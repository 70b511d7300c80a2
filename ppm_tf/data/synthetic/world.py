"""Generates a whole synthetic world and writes it in the raw contract (``raw_files`` layout).

Each part draws from its own child of the seed, so the same seed gives byte-identical files
and changing one part (say, the search log) leaves the others as they were. Events and the
oracle are written one day per shard as the simulation goes, so memory stays bounded by a
day's impressions plus the evaluation days' oracle figures used for the summary.
"""
from __future__ import annotations

import calendar
import dataclasses
import datetime
import json
import os
import shutil

import numpy as np

from ppm_tf.data import raw_files
from ppm_tf.data.synthetic import vocabulary as vocab
from ppm_tf.data.synthetic.catalog import Catalog, SECONDS_PER_DAY, sample_catalog
from ppm_tf.data.synthetic.config import WorldConfig
from ppm_tf.data.synthetic.images import encode_png, render_image
from ppm_tf.data.synthetic.impressions import DayLog, ImpressionSimulator
from ppm_tf.data.synthetic.population import Population, sample_population
from ppm_tf.data.synthetic.report import WorldStats
from ppm_tf.data.synthetic.search_log import sample_search_log

EVENT_LINE = ('{"click":%d,"item_id":"%s","order":%d,"request_id":"%s","ts":%d,'
              '"user_id":"%s"}')
ORACLE_LINE = '{"item_id":"%s","p_click":%.6f,"p_order":%.6f,"request_id":"%s"}'


def horizon_start_ts(config: WorldConfig) -> int:
    date = datetime.date.fromisoformat(config.start_date)
    return calendar.timegm(date.timetuple())


def generate_world(config: WorldConfig, seed: int, out: str, preset_name: str = "custom") -> dict:
    """Writes the world to ``out`` and returns its summary (see ``report.WorldStats``).

    The world is written to ``<out>.partial`` and renamed into place when complete, so an
    interrupted run never leaves a directory that looks like a finished world.
    """
    partial = out.rstrip("/") + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    summary = _generate_into(config, seed, partial, preset_name)
    raw_files.replace_directory(partial, out)
    return summary


def _part_rngs(seed: int) -> list[np.random.Generator]:
    """catalogue, images, users, impressions, queries: one child of the seed each."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(5)]


def request_id(day: int, number: int) -> str:
    """The public id of a day's ``number``-th request (the events' ``request_id``)."""
    return f"r{day:03d}-{number:06d}"


def catalog_and_population(world: dict) -> tuple[Catalog, Population]:
    """The items and users of a written world (its world.json) with their hidden effects,
    drawn again as ``generate_world`` drew them: what an analysis needs to split the oracle
    into its causes."""
    config = _world_config(world)
    catalog_rng, _, user_rng, _, _ = _part_rngs(world["seed"])
    return sample_catalog(config, catalog_rng), sample_population(config, user_rng)


def impression_simulator(world: dict) -> tuple[ImpressionSimulator, np.random.Generator]:
    """A written world's impression simulator and random stream, as ``generate_world`` started
    them: ``simulate_day(day, rng)`` for day 0, 1, ... draws the logged impressions again, with
    the same recent-click state, so a replay can ask the world about items it did not show."""
    config = _world_config(world)
    catalog, population = catalog_and_population(world)
    simulator = ImpressionSimulator(config, catalog, population, horizon_start_ts(config))
    return simulator, _part_rngs(world["seed"])[3]


def _world_config(world: dict) -> WorldConfig:
    if world.get("source") != "synthetic":
        raise ValueError("hidden effects exist for synthetic worlds only; this world.json "
                         f"says source={world.get('source')!r}")
    return WorldConfig.from_json(world["config"])


def _generate_into(config: WorldConfig, seed: int, out: str, preset_name: str) -> dict:
    catalog_rng, image_rng, user_rng, impression_rng, query_rng = _part_rngs(seed)
    layout = raw_files.RawLayout(out)
    start_ts = horizon_start_ts(config)
    catalog = sample_catalog(config, catalog_rng)
    population = sample_population(config, user_rng)

    _write_items(layout, catalog, config, start_ts, image_rng)
    _write_users(layout, population, start_ts)
    stats = _simulate_and_write_events(layout, config, catalog, population, start_ts,
                                       impression_rng)
    queries = sample_search_log(config, catalog, start_ts, query_rng)
    raw_files.write_jsonl(layout.queries, queries)

    world = {
        "source": "synthetic",
        "preset": preset_name,
        "seed": seed,
        "config": dataclasses.asdict(config),
        "horizon": {"start_date": config.start_date, "num_days": config.num_days,
                    "start_ts": start_ts, "end_ts": start_ts + config.num_days * SECONDS_PER_DAY},
        "suggested_splits": raw_files.split_spans(start_ts, [
            0, config.pretrain_days, config.pretrain_days + config.train_days, config.num_days]),
        "sizes": {"items": catalog.size, "users": population.size, "queries": len(queries),
                  "impressions": stats.impressions, "requests": stats.requests},
        "oracle": "oracle/part-*.jsonl: p_click and p_order per (request_id, item_id); "
                  "never a model feature",
    }
    with open(layout.world, "w", encoding="utf-8") as handle:
        json.dump(world, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return stats.summary(world)


def _write_items(layout, catalog: Catalog, config: WorldConfig, start_ts: int, rng) -> None:
    os.makedirs(layout.image(""), exist_ok=True)
    records = []
    for item, item_id in enumerate(catalog.item_ids):
        category, colour, pattern = catalog.entities(item)
        file_name = f"{item_id}.png"
        with open(layout.image(file_name), "wb") as handle:
            handle.write(encode_png(render_image(category, colour, pattern,
                                                 config.image_size, rng)))
        attributes = {name: int(codes[item]) for name, codes in catalog.attributes.items()}
        records.append({
            "item_id": item_id,
            "title": catalog.titles[item],
            "image": f"{raw_files.IMAGES_DIR}/{file_name}",
            "category": category,
            "brand": vocab.BRANDS[attributes["brand"]],
            "entities": [category, colour, pattern],
            "launch_ts": int(start_ts + catalog.launch_day[item] * SECONDS_PER_DAY
                             + catalog.launch_offset_seconds[item]),
            "attrs": {"colour": colour, "pattern": pattern,
                      "price_tier": vocab.PRICE_TIER_NAMES[attributes["price_tier"]]},
        })
    raw_files.write_jsonl(layout.items, records)


def _write_users(layout, population: Population, start_ts: int) -> None:
    # Sign-up happens at midnight of the sign-up day: before any of that day's requests.
    raw_files.write_jsonl(layout.users, (
        {"user_id": user_id, "signup_ts": int(start_ts + day * SECONDS_PER_DAY)}
        for user_id, day in zip(population.user_ids, population.signup_day)))


def _simulate_and_write_events(layout, config, catalog, population, start_ts, rng) -> WorldStats:
    simulator = ImpressionSimulator(config, catalog, population, start_ts)
    stats = WorldStats(config, catalog)
    for day in range(config.num_days):
        log = simulator.simulate_day(day, rng)
        _write_day(layout, day, log, catalog, population)
        stats.add_day(day, log)
    return stats


def _write_day(layout, day: int, log: DayLog, catalog: Catalog, population: Population) -> None:
    request_ids = [request_id(day, number) for number in log.request_number.tolist()]
    item_ids = [catalog.item_ids[item] for item in log.item.tolist()]
    user_ids = [population.user_ids[user] for user in log.user.tolist()]
    raw_files.write_lines(layout.events_shard(day), (
        EVENT_LINE % row for row in zip(log.click.tolist(), item_ids, log.order.tolist(),
                                        request_ids, log.ts.tolist(), user_ids)))
    raw_files.write_lines(layout.oracle_shard(day), (
        ORACLE_LINE % row for row in zip(item_ids, log.p_click.tolist(), log.p_order.tolist(),
                                         request_ids)))
