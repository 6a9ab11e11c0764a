"""Random start perturbations of the attacks: uniform in the L2 ball, projected onto the box.

Start r of an attack uses numpy generators seeded by (seed, r): a direction ~ N(0, I)
normalised and a radius lambda * u^(1/P) (uniform in the L2 ball of P pixels), then the
exact projection onto the box (`projection.project_l2_box`). Starts are drawn image after
image, so a prefix of images (a chunk) or of starts gives the same values as a larger
call, and results do not depend on how images are chunked.
"""

from __future__ import annotations

import numpy as np

from robust_dae_tf.attacks.projection import project_l2_box


class StartStream:
    """Random start perturbations, drawn image after image for consecutive chunks."""

    def __init__(self, budget: float, count: int, seed: int):
        self.budget = budget
        self.count = count
        self.gens = [(np.random.default_rng([int(seed), r, 0]), np.random.default_rng([int(seed), r, 1]))
                     for r in range(count)]

    def next(self, images: np.ndarray, directions: np.ndarray | None = None) -> np.ndarray:
        """Starts for the next `len(images)` images: [count, m, H, W, C].

        With `directions` ([m, H, W, C], e.g. the latent attack's x_t - x, see
        `Objective.start_directions`), start 0 of each image is the projection of its
        direction (the point of that segment at the budget) instead of a random point.
        """
        m = images.shape[0]
        p = int(np.prod(images.shape[1:]))
        flat_x = images.reshape(m, p)
        out = np.empty((self.count, m, p), np.float32)
        for r, (dir_rng, rad_rng) in enumerate(self.gens):
            direction = dir_rng.standard_normal((m, p))
            direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
            radius = self.budget * rad_rng.random(m) ** (1.0 / p)
            out[r] = (direction * radius[:, None]).astype(np.float32)
        if directions is not None:
            out[0] = directions.reshape(m, p)
        lower = np.broadcast_to(-flat_x, out.shape).reshape(-1, p)
        upper = np.broadcast_to(1.0 - flat_x, out.shape).reshape(-1, p)
        projected = project_l2_box(out.reshape(-1, p), lower, upper, self.budget).numpy()
        return projected.reshape(self.count, *images.shape)


def random_starts(images: np.ndarray, budget: float, restarts: int, seed: int) -> np.ndarray:
    """[restarts, N, H, W, C] start perturbations: uniform in the L2 ball, projected on the box."""
    return StartStream(budget, restarts, seed).next(images)
