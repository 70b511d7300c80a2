"""Product images: the category as a shape, the colour as its fill, the pattern as a texture.

Small RGB PNGs on a pale, noisy background with jittered position, size and tint, so the
entity-prediction task is learnable but not a lookup of exact pixels. Rendering is plain
numpy and PIL's PNG writer, which is deterministic: the same seed gives the same bytes.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ppm_tf.data.synthetic import vocabulary as vocab


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Boolean mask of ``shape`` of radius ``r``; ``u``/``v`` are centred coordinates, v down."""
    au, av = np.abs(u), np.abs(v)
    masks = {
        "circle": lambda: u * u + v * v < r * r,
        "ring": lambda: (u * u + v * v < r * r) & (u * u + v * v > (0.55 * r) ** 2),
        "square": lambda: (au < 0.85 * r) & (av < 0.85 * r),
        "diamond": lambda: au + av < r,
        "triangle": lambda: (v < 0.8 * r) & (v > -r) & (au < (v + r) * 0.55),
        "cross": lambda: ((au < r / 3) & (av < r)) | ((av < r / 3) & (au < r)),
        "vertical_bar": lambda: (au < r / 2.6) & (av < r),
        "horizontal_bar": lambda: (av < r / 2.6) & (au < r),
        "ellipse": lambda: (u / r) ** 2 + (v / (0.55 * r)) ** 2 < 1,
        "tee": lambda: ((np.abs(v + 0.65 * r) < 0.3 * r) & (au < r)) | ((au < 0.3 * r) & (av < r)),
        "arch": lambda: (u * u + v * v < r * r) & (v < 0.15 * r),
        "trapezoid": lambda: (av < 0.7 * r) & (au < r * (0.55 + 0.45 * (v / (0.7 * r) + 1) / 2)),
    }
    return masks[shape]()


def _pattern_tone(pattern: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Per-pixel blend towards white (>0) or black (<0) that draws the texture."""
    frequency = 1.0 / period
    if pattern == "solid":
        return np.zeros_like(u)
    if pattern == "striped":
        return np.where(((u + v) * frequency) % 1.0 < 0.5, 0.55, 0.0)
    if pattern == "dotted":
        du, dv = (u * frequency) % 1.0 - 0.5, (v * frequency) % 1.0 - 0.5
        return np.where(du * du + dv * dv < 0.09, 0.6, 0.0)
    if pattern == "checked":
        return np.where((np.floor(u * frequency) + np.floor(v * frequency)) % 2 == 0, 0.5, 0.0)
    if pattern == "gradient":
        return np.clip(v, -1.0, 1.0) * 0.6
    if pattern == "grid":
        return np.where(((u * frequency) % 1.0 < 0.22) | ((v * frequency) % 1.0 < 0.22), -0.55, 0.0)
    raise ValueError(f"unknown pattern {pattern!r}")


def render_image(category: str, colour: str, pattern: str, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """[size, size, 3] uint8 picture of one item."""
    coordinates = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    v, u = np.meshgrid(coordinates, coordinates, indexing="ij")
    centre_u, centre_v = rng.uniform(-0.12, 0.12, size=2)
    radius = rng.uniform(0.6, 0.78)
    u, v = u - centre_u, v - centre_v

    mask = _shape_mask(vocab.CATEGORIES[category][0], u, v, radius)
    fill = np.clip(np.array(vocab.COLOURS[colour][0], float) + rng.normal(0, 10, 3), 0, 255)
    # Texture period in coordinate units: at least 4 pixels, about 8 periods across.
    period = max(8.0 / size, 0.25)
    tone = _pattern_tone(pattern, u, v, period)[..., None]
    foreground = np.where(tone > 0, fill + (255 - fill) * tone, fill * (1 + tone))

    background = 238 + rng.uniform(-12, 12, 3)
    picture = np.where(mask[..., None], foreground, background)
    picture += rng.normal(0, 5, picture.shape)
    return np.clip(picture, 0, 255).astype(np.uint8)


def encode_png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()
