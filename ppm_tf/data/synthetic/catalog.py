"""The synthetic catalogue: item attributes, launch days, hidden appeal, and titles.

Items are sampled as brand -> category (brands make a few home categories) -> price tier
(near the brand's own tier) -> colour and pattern. Each item also gets an id-only *quality*
that no title or image reveals, and a latent factor for the user x item affinity: these are
what an ID model can learn and a content model cannot. A share of the catalogue exists before
the horizon; the rest launches day by day, so new (cold) items appear every day.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ppm_tf.data.synthetic import vocabulary as vocab
from ppm_tf.data.synthetic.config import WorldConfig

SECONDS_PER_DAY = 86_400
# Items launch in the first hours of their day, before any request of that day (>= 07:00).
LAUNCH_WINDOW_SECONDS = 6 * 3600


@dataclasses.dataclass
class Catalog:
    """Per-item arrays, indexed by item number; ``item_ids[n]`` is the public id."""

    item_ids: list[str]
    attributes: dict[str, np.ndarray]  # attribute name -> [num_items] value codes
    launch_day: np.ndarray  # [num_items] day index; negative: launched before the horizon
    launch_offset_seconds: np.ndarray  # [num_items] seconds into the launch day
    quality: np.ndarray  # [num_items] hidden id-only appeal (click logit units)
    popularity: np.ndarray  # [num_items] exposure weight (log scale) of the "popular" slot
    latent: np.ndarray  # [num_items, latent_rank] id-only affinity factors
    titles: list[str]

    @property
    def size(self) -> int:
        return len(self.item_ids)

    def content_indices(self) -> np.ndarray:
        """[num_items, num_attributes] positions of each item's values in the one-hot vector."""
        offset, columns = 0, []
        for name, size in vocab.ATTRIBUTE_SIZES.items():
            columns.append(self.attributes[name] + offset)
            offset += size
        return np.stack(columns, axis=1)

    def entities(self, item: int) -> list[str]:
        """What the image shows: the item's category, colour and pattern."""
        return [vocab.CATEGORY_NAMES[self.attributes["category"][item]],
                vocab.COLOUR_NAMES[self.attributes["colour"][item]],
                vocab.PATTERN_NAMES[self.attributes["pattern"][item]]]


def sample_catalog(config: WorldConfig, rng: np.random.Generator) -> Catalog:
    num_items = config.num_items
    num_brands = len(vocab.BRANDS)
    num_categories = len(vocab.CATEGORY_NAMES)
    num_tiers = len(vocab.PRICE_TIER_NAMES)

    brand_home_categories = np.stack(
        [rng.choice(num_categories, size=3, replace=False) for _ in range(num_brands)])
    brand_tier = rng.integers(0, num_tiers, size=num_brands)
    brand_share = rng.dirichlet(np.full(num_brands, 1.5))

    brand = rng.choice(num_brands, size=num_items, p=brand_share)
    at_home = rng.random(num_items) < 0.8
    category = np.where(at_home, brand_home_categories[brand, rng.integers(0, 3, num_items)],
                        rng.integers(0, num_categories, num_items))
    tier_step = rng.choice([-1, 0, 1], size=num_items, p=[0.2, 0.6, 0.2])
    price_tier = np.clip(brand_tier[brand] + tier_step, 0, num_tiers - 1)
    attributes = {
        "category": category,
        "colour": rng.integers(0, len(vocab.COLOUR_NAMES), num_items),
        "pattern": rng.integers(0, len(vocab.PATTERN_NAMES), num_items),
        "price_tier": price_tier,
        "brand": brand,
    }

    initial = rng.random(num_items) < config.initial_item_fraction
    launch_day = np.where(initial, -rng.integers(1, 366, num_items),
                          rng.integers(1, config.num_days, num_items))
    launch_offset_seconds = rng.integers(0, LAUNCH_WINDOW_SECONDS, num_items)

    quality = rng.normal(0.0, config.item_quality_sd, num_items)
    # The recommender that logged the data promoted items that did well, noisily.
    popularity = 1.2 * quality + rng.normal(0.0, 0.6, num_items)
    latent_sd = np.sqrt(config.latent_sd / np.sqrt(config.latent_rank))
    latent = rng.normal(0.0, latent_sd, (num_items, config.latent_rank))

    item_ids = [f"i{number:06d}" for number in range(num_items)]
    catalog = Catalog(item_ids, attributes, launch_day, launch_offset_seconds, quality,
                      popularity, latent, titles=[])
    catalog.titles = [render_title(catalog, item, rng) for item in range(num_items)]
    return catalog


def _pick(words: tuple[str, ...], rng: np.random.Generator) -> str:
    return words[rng.integers(0, len(words))]


def render_title(catalog: Catalog, item: int, rng: np.random.Generator) -> str:
    """A marketplace-style title: brand, maybe price words, colour, pattern, category, noise."""
    attributes = {name: codes[item] for name, codes in catalog.attributes.items()}
    category = vocab.CATEGORY_NAMES[attributes["category"]]
    colour = vocab.COLOUR_NAMES[attributes["colour"]]
    pattern = vocab.PATTERN_NAMES[attributes["pattern"]]
    tier = vocab.PRICE_TIER_NAMES[attributes["price_tier"]]
    words = [vocab.BRANDS[attributes["brand"]]]
    if rng.random() < 0.5:
        words.append(_pick(vocab.PRICE_TIERS[tier], rng))
    words.append(_pick(vocab.COLOURS[colour][1], rng))
    if pattern != "solid" or rng.random() < 0.5:
        words.append(_pick(vocab.PATTERNS[pattern], rng))
    words.append(_pick(vocab.CATEGORIES[category][1], rng))
    for _ in range(rng.integers(0, 3)):
        words.insert(int(rng.integers(1, len(words) + 1)), _pick(vocab.NOISE_WORDS, rng))
    return " ".join(words)
