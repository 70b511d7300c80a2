"""Padded behaviour sequences for the masking tests of the sequence layers (the Transformer
block, target attention): a padded position must never change a real one."""
import numpy as np

BATCH, SEQ_LEN, DIM = 2, 5, 8
# Sequence 0 has 3 real positions then padding; sequence 1 is full.
MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)


def random_states(seed: int = 0, shape=(BATCH, SEQ_LEN, DIM)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def with_padding_replaced(states: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """``states`` with other, large values wherever ``mask`` is 0."""
    noise = 100.0 * random_states(seed, states.shape)
    return np.where(mask[..., np.newaxis].astype(bool), states, noise).astype(np.float32)
