"""Random start perturbations of the attacks: uniform in the L2 ball, projected onto the box.

Start r of an attack uses numpy generators seeded by (seed, r): a direction ~ N(0, I)
normalised and a radius lambda * u^(1/P) (uniform in the L2 ball of P pixels), then the
exact projection onto the box (`projection.project_l2_box`). Starts are drawn image after
image, so a prefix of images (a chunk) or of starts gives the same values as a larger
call, and results do not depend on how images are chunked.

Directed starts replace random ones: the latent attack's target direction (start 0,
`Objective.start_directions`), and `towards_other_images` (directions from each image to
other images of the same batch; the ensemble's members for maximum damage and PGD with
`AttackConfig.towards_starts` use them); `directed_starts` puts the two together.
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
        direction (the point of that segment at the budget) instead of a random point;
        with [k, m, H, W, C] (k <= count) starts 0 .. k-1 are those of the k directions.
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
            directed = directions.reshape(-1, m, p)
            if directed.shape[0] > self.count:
                raise ValueError(f"{directed.shape[0]} start directions for {self.count} starts per image")
            out[:directed.shape[0]] = directed
        lower = np.broadcast_to(-flat_x, out.shape).reshape(-1, p)
        upper = np.broadcast_to(1.0 - flat_x, out.shape).reshape(-1, p)
        projected = project_l2_box(out.reshape(-1, p), lower, upper, self.budget).numpy()
        return projected.reshape(self.count, *images.shape)


def random_starts(images: np.ndarray, budget: float, restarts: int, seed: int) -> np.ndarray:
    """[restarts, N, H, W, C] start perturbations: uniform in the L2 ball, projected on the box."""
    return StartStream(budget, restarts, seed).next(images)


def directions_of_chunk(directions: np.ndarray | None, images: np.ndarray, i: int, j: int) -> np.ndarray | None:
    """Images i..j-1 of start directions given as [N, H, W, C] (start 0) or [k, N, H, W, C]
    (starts 0 .. k-1), for `StartStream.next` on the chunk `images[i:j]`; None stays None."""
    if directions is None:
        return None
    return directions[:, i:j] if directions.ndim == images.ndim + 1 else directions[i:j]


def towards_other_images(images: np.ndarray, count: int, seed: int) -> np.ndarray | None:
    """[count, N, H, W, C] start directions x_{pi_k(i)} - x_i from each image to other images
    of the same batch: pi_k(i) = (i + s_k) mod N with shifts s_k drawn without replacement
    from 1 .. N-1 (with replacement once count > N - 1) by `np.random.default_rng([seed, 2])`,
    so no image is its own direction. None for a batch of one (no other image: random starts).

    Used for maximum damage, whose strongest points are rare basins that random starts in
    the ball seldom reach (docs/attacks.md "Ensemble"): a start towards another image moves
    the code towards another region of the latent space. Only the images being attacked are
    used (no labels, no other data); the starts depend on which images share the batch, and
    the ensemble builds them once for the whole batch before any chunking."""
    n = images.shape[0]
    if n < 2 or count < 1:
        return None
    rng = np.random.default_rng([int(seed), 2])
    shifts = rng.choice(np.arange(1, n), size=count, replace=count > n - 1)
    index = (np.arange(n)[None, :] + shifts[:, None]) % n
    return (images[index] - images[None]).astype(np.float32)


def directed_starts(own: np.ndarray | None, images: np.ndarray, towards: int, seed: int) -> np.ndarray | None:
    """The directed starts of one attack run, for `StartStream.next`: the objective's own
    start direction `own` ([N, H, W, C] or None; `Objective.start_directions`) as start 0,
    then `towards` directions towards other images of the batch (`towards_other_images`
    with `seed`). Returns None (all starts random), `own` alone, or [k, N, H, W, C] with
    k = (own is not None) + towards; a batch of one gets no towards directions."""
    others = towards_other_images(images, towards, seed) if towards > 0 else None
    if others is None:
        return own
    return others if own is None else np.concatenate([own[None], others])
