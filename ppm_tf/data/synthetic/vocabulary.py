"""The attribute vocabulary of the synthetic catalogue: values, their words and their looks.

An item is a combination of one value per attribute. Titles and queries name a value with one
of its synonyms (so text models must learn that "trainers" and "sneakers" are one thing);
images draw the category as a shape, the colour as a fill and the pattern as a texture, so an
image model can recover exactly those three: they are the item's *entities*.
"""
from __future__ import annotations

# category -> (shape drawn in the image, title/query synonyms)
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sneakers": ("triangle", ("sneakers", "trainers", "running shoes")),
    "backpack": ("square", ("backpack", "rucksack", "daypack")),
    "tshirt": ("tee", ("t-shirt", "tee", "top")),
    "mug": ("circle", ("mug", "cup", "coffee mug")),
    "lamp": ("diamond", ("lamp", "light", "desk lamp")),
    "watch": ("ring", ("watch", "wristwatch", "timepiece")),
    "headphones": ("arch", ("headphones", "headset", "earphones")),
    "cushion": ("cross", ("cushion", "pillow", "throw pillow")),
    "bottle": ("vertical_bar", ("bottle", "flask", "water bottle")),
    "hat": ("trapezoid", ("hat", "cap", "beanie")),
    "wallet": ("horizontal_bar", ("wallet", "purse", "cardholder")),
    "vase": ("ellipse", ("vase", "planter", "flower pot")),
}

# colour -> (RGB fill, synonyms)
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((200, 30, 35), ("red", "crimson", "scarlet")),
    "orange": ((240, 130, 20), ("orange", "tangerine", "amber")),
    "yellow": ((235, 205, 30), ("yellow", "lemon", "golden")),
    "green": ((40, 150, 50), ("green", "olive", "emerald")),
    "teal": ((20, 160, 160), ("teal", "turquoise", "aqua")),
    "blue": ((30, 60, 190), ("blue", "navy", "cobalt")),
    "purple": ((120, 40, 160), ("purple", "violet", "lilac")),
    "pink": ((240, 120, 180), ("pink", "rose", "blush")),
    "brown": ((120, 75, 35), ("brown", "tan", "chocolate")),
    "black": ((25, 25, 25), ("black", "jet", "charcoal")),
}

PATTERNS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain", "classic"),
    "striped": ("striped", "stripes", "pinstripe"),
    "dotted": ("dotted", "polka dot", "spotted"),
    "checked": ("checked", "plaid", "checkered"),
    "gradient": ("gradient", "ombre", "faded"),
    "grid": ("grid", "lattice", "windowpane"),
}

PRICE_TIERS: dict[str, tuple[str, ...]] = {
    "budget": ("budget", "value", "cheap"),
    "standard": ("everyday", "standard", "regular"),
    "premium": ("premium", "deluxe", "quality"),
    "luxury": ("luxury", "designer", "exclusive"),
}

BRANDS: tuple[str, ...] = (
    "zorvo", "kelta", "miravon", "dusk&co", "altura", "brisko", "quenn", "velora", "tamsin",
    "orbix", "lumea", "hartwell", "nokomi", "pellar", "strava", "yuno", "fenwick", "calyx",
    "drumond", "essly", "gantro", "ilvar", "jorune", "kavik", "lindqvist", "moravi", "nettle",
    "oskar", "pavone", "rindle",
)

NOISE_WORDS: tuple[str, ...] = (
    "new", "2025", "hot sale", "free shipping", "official", "bestseller", "limited", "gift",
    "original", "fast delivery", "trending", "authentic",
)

# Order-given-click shift per price tier: cheap things are bought more readily once clicked.
PRICE_TIER_ORDER_SHIFT: dict[str, float] = {
    "budget": 0.4, "standard": 0.15, "premium": -0.2, "luxury": -0.6}

CATEGORY_NAMES = tuple(CATEGORIES)
COLOUR_NAMES = tuple(COLOURS)
PATTERN_NAMES = tuple(PATTERNS)
PRICE_TIER_NAMES = tuple(PRICE_TIERS)

# The attributes in the order they occupy the one-hot content vector of an item.
ATTRIBUTE_SIZES: dict[str, int] = {
    "category": len(CATEGORY_NAMES),
    "colour": len(COLOUR_NAMES),
    "pattern": len(PATTERN_NAMES),
    "price_tier": len(PRICE_TIER_NAMES),
    "brand": len(BRANDS),
}

# Spread of user tastes per attribute: category matters most, as in real shops.
TASTE_SD: dict[str, float] = {
    "category": 1.0, "colour": 0.6, "pattern": 0.4, "price_tier": 0.5, "brand": 0.5}
