"""The two-spiral toy of Sec. 4.1 / Fig. 3: two interleaved spirals no linear model can separate."""

from __future__ import annotations

import numpy as np

from ..validation import ConfigError


def make_spirals(n_per_class: int = 800, noise: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points (2 n, 2) and labels (2 n,) of two concentric spirals, as in the authors' generator.

    Radius and angle grow together, ``n = sqrt(U) * 780 * 2 pi / 360`` (a bit over two turns), with
    uniform jitter ``U * noise``; class 1 is class 0 mirrored through the origin.
    """
    if n_per_class < 1:
        raise ConfigError(f"n_per_class must be positive, got {n_per_class}")
    rng = np.random.default_rng(seed)
    n = np.sqrt(rng.random(n_per_class)) * 780 * (2 * np.pi) / 360
    x = -np.cos(n) * n + rng.random(n_per_class) * noise
    y = np.sin(n) * n + rng.random(n_per_class) * noise
    arm = np.stack([x, y], axis=1)
    points = np.concatenate([arm, -arm])
    labels = np.concatenate([np.zeros(n_per_class, dtype=np.int64), np.ones(n_per_class, dtype=np.int64)])
    return points, labels
