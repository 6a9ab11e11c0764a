"""How much faster the batched attacks are than attacking one image per call
(`attack_one_at_a_time_speedup`, bin/benchmark_attacks.py); moved out of `robustness`."""

from __future__ import annotations

import time

import numpy as np

from robust_dae_tf import attacks
from robust_dae_tf.attacks import AttackConfig
from robust_dae_tf.errors import ConfigError


def attack_one_at_a_time_speedup(model, images: np.ndarray, budget: float = 1.0,
                                 config: AttackConfig = AttackConfig(), n: int = 5,
                                 kind=attacks.MAX_DAMAGE, targets: np.ndarray | None = None,
                                 seed: int = 0) -> dict:
    """Speed-up of attacking all `images` in one batched call over one image per call.

    Times one batched attack `kind` (an objective or its name) on all N images, then
    attacks the first `n` images one per call (after one untimed warm-up call, so tracing
    is excluded from both) and extrapolates the one-at-a-time time to N images. An
    objective that needs targets gets the images shifted by one unless `targets` is given.
    """
    objective = attacks.objective(kind)
    images = attacks.validate_images(images, "images")
    if n < 1:
        raise ConfigError(f"n (images attacked one at a time) must be >= 1, got {n}.")
    if objective.needs_targets and targets is None:
        targets = np.roll(images, 1, axis=0)

    def attack(sl):
        return attacks.run(objective, model, images[sl], budget, config,
                           targets=None if targets is None else targets[sl], seed=seed)

    attack(slice(0, min(2, images.shape[0])))  # warm-up: trace
    t0 = time.perf_counter()
    attack(slice(None))
    batched = time.perf_counter() - t0
    n = min(n, images.shape[0])
    attack(slice(0, 1))  # warm-up for the single-image shape
    t0 = time.perf_counter()
    for i in range(n):
        attack(slice(i, i + 1))
    per_image = (time.perf_counter() - t0) / n
    total = images.shape[0]
    return {
        "kind": objective.name,
        "budget": float(budget),
        "images": int(total),
        "batched_seconds": float(batched),
        "one_at_a_time_images_measured": int(n),
        "one_at_a_time_seconds_per_image": float(per_image),
        "one_at_a_time_seconds_extrapolated": float(per_image * total),
        "speedup": float(per_image * total / batched),
    }
