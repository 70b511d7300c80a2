"""The search log: queries built from noisy subsets of an item's words, with the clicked item.

This is the data for PPM's query-matching task: a query names a few of the item's attributes
with synonyms (often not the title's words), sometimes with a noise word or a typo, so a text
encoder must learn which words mean the same thing to match queries to titles.
"""
from __future__ import annotations

import numpy as np

from ppm_tf.data.synthetic import vocabulary as vocab
from ppm_tf.data.synthetic.catalog import Catalog, SECONDS_PER_DAY
from ppm_tf.data.synthetic.config import WorldConfig
from ppm_tf.data.synthetic.impressions import FIRST_REQUEST_SECOND

# Chance that a query mentions each attribute (at least one is always mentioned).
MENTION_RATE = {"category": 0.9, "colour": 0.6, "pattern": 0.4, "brand": 0.3, "price_tier": 0.2}
NOISE_RATE, TYPO_RATE = 0.15, 0.05


def _attribute_words(name: str, code: int) -> tuple[str, ...]:
    if name == "category":
        return vocab.CATEGORIES[vocab.CATEGORY_NAMES[code]][1]
    if name == "colour":
        return vocab.COLOURS[vocab.COLOUR_NAMES[code]][1]
    if name == "pattern":
        return vocab.PATTERNS[vocab.PATTERN_NAMES[code]]
    if name == "price_tier":
        return vocab.PRICE_TIERS[vocab.PRICE_TIER_NAMES[code]]
    return (vocab.BRANDS[code],)


def render_query(catalog: Catalog, item: int, rng: np.random.Generator) -> str:
    mentioned = [name for name, rate in MENTION_RATE.items() if rng.random() < rate]
    if not mentioned:
        mentioned = ["category"]
    words = []
    for name in mentioned:
        synonyms = _attribute_words(name, int(catalog.attributes[name][item]))
        words.append(synonyms[rng.integers(0, len(synonyms))])
    rng.shuffle(words)
    if rng.random() < NOISE_RATE:
        words.append(vocab.NOISE_WORDS[rng.integers(0, len(vocab.NOISE_WORDS))])
    if rng.random() < TYPO_RATE:
        position = int(rng.integers(0, len(words)))
        word = words[position]
        if len(word) > 3:
            cut = int(rng.integers(1, len(word) - 1))
            words[position] = word[:cut] + word[cut + 1:]
    return " ".join(words)


def sample_search_log(config: WorldConfig, catalog: Catalog, start_ts: int,
                      rng: np.random.Generator) -> list[dict]:
    """Query records (schema.QUERIES), in time order; clicked items follow popularity."""
    days = np.sort(rng.integers(0, config.num_days, config.num_queries))
    seconds = rng.integers(FIRST_REQUEST_SECOND, SECONDS_PER_DAY, config.num_queries)
    items = np.empty(config.num_queries, np.int64)
    for day in np.unique(days):
        on_day = days == day
        launched = np.flatnonzero(catalog.launch_day <= day)
        weights = np.exp(catalog.popularity[launched])
        items[on_day] = rng.choice(launched, size=int(on_day.sum()), p=weights / weights.sum())
    timestamps = start_ts + days * SECONDS_PER_DAY + seconds
    order = np.argsort(timestamps, kind="stable")
    return [{"query": render_query(catalog, int(items[n]), rng),
             "item_id": catalog.item_ids[items[n]], "ts": int(timestamps[n])} for n in order]
