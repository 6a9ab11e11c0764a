"""L2 attacks on autoencoders used for evaluation (paper section 4, eqs. 12 and 13).

Pixels are float32 in [0, 1]; the perturbation budget lambda > 0 bounds ||delta||_2 over
all pixels of one image, and the adversarial image x + delta stays in [0, 1].

* `latent_attack` (targeted, eq. 12): minimise ||g(x + d) - g(x_t)||_2.
* `max_damage_attack` (eq. 13): maximise ||f(g(x + d)) - f(g(x))||_2.

Both return an `AttackResult` whose `loss` is the achieved objective (latent: lower is a
better attack; maximum damage: higher is a better attack), measured at exactly the
returned `adversarial` images.

Method "pgd" (default)
----------------------
Projected gradient descent (latent) / ascent (maximum damage) with normalised L2
steps and the exact Euclidean projection P onto the feasible set of each image,

    d_{k+1} = P(d_k -/+ eta_k * u_k),   u_k = g_k / ||g_k||_2,
    eta_k   = eta_0 * (1 + cos(pi k / K)) / 2          (k = 0 .. K-1, cosine decay to 0),

where g_k is the gradient with the components that point out of the box at pixels
already on it (x + d = 0 and the step would lower it, or x + d = 1 and it would raise
it) set to 0: the projection would clip them away anyway, and leaving them in the
normalisation shortens the useful part of the step. On MNIST most pixels sit at 0 or 1,
so this matters: on the 50-epoch robust model it lowered the mean latent loss at
lambda = 5 by 5 % at equal cost.

Two phases (explore, then refine), both batched:

1. Exploration: `exploration_starts * restarts` random starts per image (uniform in
   the L2 ball: Gaussian direction, radius lambda * u^(1/P), then projected onto the
   box), each run for K = ceil(steps / 8) steps with eta_0 = initial_step_fraction *
   lambda. For the latent attack the first start is not random but the projection of
   x_t - x (towards the target image, as far as the budget allows).
2. Refinement: the best `restarts` exploration points of each image (their best
   iterates) are run for K = `steps` steps with eta_0 = 0.25 * initial_step_fraction *
   lambda (they start at a good point, so the first jump is smaller).

The objective is evaluated at every iterate (and the last one) and the best iterate of
each image is kept. Cost: (exploration_starts / 8 + 1) * restarts * steps gradient
evaluations per image; defaults (`DEFAULTS`): maximum damage 200 steps, 32 starts per
restart, 5 * 2 * 200 = 2000; latent 400 steps, 24 starts, 4 * 2 * 400 = 3200 (of the
encoder only). Why this split: both objectives
have many local optima, and which basin a run ends in matters more than how long it
runs. On the 50-epoch MNIST robust model (100 images), at 2.5x the cost of 8
exploration starts per restart, 32 starts closed most of the gap to an attacker with
16x the compute, better than 2x the restarts, 2x the steps or a successive-halving
exploration of the same cost; see docs/attacks.md for the numbers.

The compiled loop is XLA-compiled (`jit_compile=True`, ~1.1-1.35x faster on CPU); if XLA
cannot compile a model's functions the attack logs a warning and runs without it.

Every image x start of one phase runs in ONE `tf.function` (a `tf.while_loop` over the
steps; no Python loop over images); images are processed in chunks so that one call
holds at most `chunk_size * restarts` rows. Random starts come from numpy generators
seeded by (seed, start index), drawn image by image, so results do not depend on
`chunk_size`.

Exact projection
----------------
P(v) = argmin_d ||d - v||_2 subject to ||d||_2 <= lambda and -x <= d <= 1 - x. With a
multiplier mu >= 0 for the ball the problem separates per pixel, and the KKT conditions
give d(mu) = clip(v / (1 + mu), -x, 1 - x), with mu = 0 if ||clip(v, -x, 1 - x)|| <=
lambda, and otherwise the mu with ||d(mu)||_2 = lambda (Slater holds: d = 0 is strictly
inside the ball and inside the box because 0 <= x <= 1). ||d(mu)|| is continuous and
non-increasing in mu, so mu is found per example by vectorised bisection, here on
s = 1 / (1 + mu) in [lambda / ||v||, 1] (the lower end is always feasible because
||clip(s v)|| <= s ||v||). The bracket's feasible end is then polished by active-set
steps: with the set C of pixels clipped at s fixed, s' = sqrt((lambda^2 - sum_C c_i^2) /
sum_{not C} v_i^2) solves the norm equation; s' never overshoots the exact s* (clipped
terms only shrink) and equals it once C is the final active set, so the result is exact
up to float rounding. A final rescaling by min(1, lambda / ||d||) guards against
rounding (it keeps the box because 0 is inside it).

Method "lbfgsb" (independent second attacker)
---------------------------------------------
The reference implementation's procedure: per image (and restart) scipy's L-BFGS-B
(memory 25, at most `steps` iterations) on d with box bounds [-x, 1 - x], starting at a
random point of the L2 ball, where d is rescaled onto the ball (d * lambda / ||d||) when
it leaves it before the objective is evaluated; gradients come from TensorFlow through
the rescaling. The best point evaluated is returned. Slow (one Python loop iteration per
image and function evaluation); used by `bin/check_attacks.py` and the tests to check
the PGD attacker.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import weakref

import numpy as np
import tensorflow as tf

from robust_dae_tf.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

LATENT, MAX_DAMAGE = "latent", "max_damage"
METHODS = ("pgd", "lbfgsb")

# Projection: bisection iterations on s = 1 / (1 + mu), then active-set polishing steps.
PROJECTION_BISECTION_STEPS = 8
PROJECTION_POLISH_STEPS = 4
LBFGSB_MEMORY = 25
# Exploration phase of PGD: ceil(steps / EXPLORATION_STEPS_DIVISOR) steps per start; the
# refinement's first step is REFINE_STEP_FACTOR * initial_step_fraction * lambda.
EXPLORATION_STEPS_DIVISOR = 8
REFINE_STEP_FACTOR = 0.25
# A pixel counts as on the box boundary within this distance (pixel units).
_BOX_TOLERANCE = 1e-6
_TINY = 1e-30


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Attack settings.

    Attributes:
      steps: PGD refinement iterations per restart (the exploration phase adds
        ceil(steps / 8) iterations on exploration_starts * restarts starts); None = the
        attack's default (`DEFAULTS`: 400 latent, 200 maximum damage); for "lbfgsb" the maximum
        number of L-BFGS-B iterations per restart.
      restarts: runs per image that are refined to the end (PGD) or random starts
        (L-BFGS-B); the best result per image is kept.
      exploration_starts: PGD: random starts per restart in the exploration phase
        (1 = no exploration phase: plain PGD with `restarts` random starts); None = the
        attack's default (24 latent, 32 maximum damage).
      initial_step_fraction: first PGD step length of the exploration phase as a
        fraction of the budget lambda (the refinement starts at a quarter of it); the
        step decays to 0 with a cosine schedule.
      chunk_size: images per compiled call (one call holds at most chunk_size * restarts
        rows); lower it when memory is short (conv models on 64x64 images).
      method: "pgd" (batched, compiled) or "lbfgsb" (reference-style, per image).
      jit_compile: PGD: XLA-compile the attack loop (falls back to plain graph mode
        with a warning when XLA fails on the model).
    """

    steps: int | None = None
    restarts: int = 2
    exploration_starts: int | None = None
    initial_step_fraction: float = 1.0
    chunk_size: int = 1000
    method: str = "pgd"  # "pgd" | "lbfgsb"
    jit_compile: bool = True


@dataclasses.dataclass
class AttackResult:
    """Outcome of an attack.

    adversarial: x + d, [N, H, W, C] float32 in [0, 1].
    loss: [N] achieved objective at `adversarial`: latent attack ||g(x_adv) - g(x_t)||_2
      (lower = better attack); maximum damage ||f(g(x_adv)) - f(g(x))||_2 (higher =
      better attack).
    loss_curve: [steps] mean over images of the best-so-far loss after each iteration
      (best over restarts), when requested; else None. For PGD these are the refinement
      iterations (their starting value is the exploration's result).
    exploration_curve: PGD only, when requested: the same for the ceil(steps / 8)
      exploration iterations (best over all 8 * restarts starts); else None.
    """

    adversarial: np.ndarray
    loss: np.ndarray
    loss_curve: np.ndarray | None = None
    exploration_curve: np.ndarray | None = None


# Defaults of the fields left None, per attack: (steps, exploration_starts). The latent
# attack gains from long refinements, the maximum-damage attack from many starts
# (docs/attacks.md has the tuning runs); L-BFGS-B uses `steps` as its iteration limit.
DEFAULTS = {LATENT: (400, 24), MAX_DAMAGE: (200, 32)}


def resolve(config: AttackConfig, kind: str) -> AttackConfig:
    """The config with `steps` / `exploration_starts` left None set to `kind`'s defaults."""
    steps, starts = DEFAULTS[kind]
    return dataclasses.replace(
        config,
        steps=steps if config.steps is None else config.steps,
        exploration_starts=starts if config.exploration_starts is None else config.exploration_starts,
    )


# --------------------------------------------------------------------------
# Validation


def validate_config(config: AttackConfig) -> None:
    """Raises ConfigError for unusable attack settings."""
    if not isinstance(config, AttackConfig):
        raise ConfigError(f"attack config must be an AttackConfig, got {type(config).__name__}.")
    if config.method not in METHODS:
        raise ConfigError(f"attack method {config.method!r} is unknown; choose one of {', '.join(METHODS)}.")
    for name in ("steps", "restarts", "exploration_starts", "chunk_size"):
        value = getattr(config, name)
        if value is None and name in ("steps", "exploration_starts"):
            continue  # the attack's default, see `resolve`
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"attack {name} must be an integer >= 1, got {value!r}.")
    frac = config.initial_step_fraction
    if not (isinstance(frac, (int, float)) and math.isfinite(frac) and frac > 0):
        raise ConfigError(f"attack initial_step_fraction must be a finite number > 0, got {frac!r}.")


def validate_budget(budget, flag: str = "budget") -> float:
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"attack {flag} must be a number > 0 (L2 norm of the perturbation), got {budget!r}.") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"attack {flag} must be a finite number > 0 (L2 norm of the perturbation), got {budget!r}.")
    return value


def validate_images(images, name: str = "images") -> np.ndarray:
    """float32 [N, H, W, C] in [0, 1], finite; raises DataError otherwise."""
    try:
        arr = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array [N, H, W, C] in [0, 1]; could not convert it ({exc}).") from None
    if arr.ndim != 4:
        raise DataError(
            f"{name} must be a batch [N, H, W, C] of float images in [0, 1]; got shape {arr.shape}. "
            "Add a batch axis for one image and a channel axis for grey images."
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape}); pass at least one image.")
    bad = ~np.isfinite(arr).all(axis=(1, 2, 3))
    if bad.any():
        raise DataError(f"{name} contain NaN or infinite pixels in {int(bad.sum())} of {arr.shape[0]} images.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{name} must be float pixels in [0, 1]; found values in [{lo:g}, {hi:g}] "
            "(divide uint8 images by 255, e.g. with robust_dae_tf.data.to_float)."
        )
    return arr


def _check_finite_rows(values: np.ndarray, what: str, total: int) -> None:
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"the model produced NaN {what} for {int(bad.sum())} of {total} images; check the "
            "SavedModel (a diverged or corrupt checkpoint) before attacking it."
        )


# --------------------------------------------------------------------------
# Projection


def _norm(v: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=1))


def project_l2_box(v, lower, upper, budget, bisection_steps: int = PROJECTION_BISECTION_STEPS,
                   polish_steps: int = PROJECTION_POLISH_STEPS) -> tf.Tensor:
    """Exact Euclidean projection of each row of v onto {||d||_2 <= budget} ∩ [lower, upper].

    Args:
      v, lower, upper: [B, P] float32 with lower <= 0 <= upper.
      budget: scalar or [B] radius > 0.
    Returns d = clip(v / (1 + mu), lower, upper), [B, P] (see the module docstring).
    """
    v = tf.convert_to_tensor(v, tf.float32)
    lower = tf.convert_to_tensor(lower, tf.float32)
    upper = tf.convert_to_tensor(upper, tf.float32)
    budget = tf.broadcast_to(tf.cast(budget, tf.float32), tf.shape(v)[:1])
    budget_sq = tf.square(budget)

    d0 = tf.clip_by_value(v, lower, upper)
    inside = _norm(d0) <= budget  # mu = 0
    s_lo = tf.minimum(1.0, budget / tf.maximum(_norm(v), _TINY))  # always feasible
    s_hi = tf.ones_like(s_lo)

    def clipped_norm_sq(s):
        return tf.reduce_sum(tf.square(tf.clip_by_value(s[:, None] * v, lower, upper)), axis=1)

    for _ in range(bisection_steps):
        mid = 0.5 * (s_lo + s_hi)
        ok = clipped_norm_sq(mid) <= budget_sq
        s_lo = tf.where(ok, mid, s_lo)
        s_hi = tf.where(ok, s_hi, mid)
    v_sq = tf.square(v)
    for _ in range(polish_steps):
        u = s_lo[:, None] * v
        clipped = (u < lower) | (u > upper)
        clipped_sq = tf.reduce_sum(tf.where(clipped, tf.square(tf.clip_by_value(u, lower, upper)), 0.0), axis=1)
        free_sq = tf.reduce_sum(tf.where(clipped, 0.0, v_sq), axis=1)
        s_new = tf.sqrt(tf.maximum(budget_sq - clipped_sq, 0.0) / tf.maximum(free_sq, _TINY))
        s_lo = tf.maximum(s_lo, tf.minimum(s_new, s_hi))
    d = tf.clip_by_value(s_lo[:, None] * v, lower, upper)
    d = tf.where(inside[:, None], d0, d)
    scale = tf.minimum(1.0, budget / tf.maximum(_norm(d), _TINY))
    return d * scale[:, None]


# --------------------------------------------------------------------------
# Objectives


def _flat(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [tf.shape(t)[0], -1])


def _objective(model, kind: str, x_adv: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
    """Per-row squared objective: latent ||g(x_adv) - z_t||^2; max damage ||f(g(x_adv)) - rec||^2."""
    z = tf.cast(model.encode(x_adv), tf.float32)
    if kind == LATENT:
        out = z
    else:
        out = _flat(tf.cast(model.decode(z), tf.float32))
    return tf.reduce_sum(tf.square(_flat(out) - reference), axis=1)


def _reference(model, kind: str, images: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    """Latent: g(x_t) [N, D]; max damage: f(g(x)) flattened [N, P]. NaN -> DataError."""
    n = images.shape[0]
    if kind == LATENT:
        z = np.asarray(model.encode(tf.constant(targets)), np.float32)
        _check_finite_rows(z, "latents (of the target images)", n)
        z_src = np.asarray(model.encode(tf.constant(images)), np.float32)
        _check_finite_rows(z_src, "latents", n)
        return z.reshape(n, -1)
    z = np.asarray(model.encode(tf.constant(images)), np.float32)
    _check_finite_rows(z, "latents", n)
    rec = np.asarray(model.decode(tf.constant(z)), np.float32)
    _check_finite_rows(rec, "reconstructions", n)
    return rec.reshape(n, -1)


def _eval_batches(fn, arrays, batch: int):
    outs = []
    n = arrays[0].shape[0]
    for i in range(0, n, batch):
        outs.append(np.asarray(fn(*[tf.constant(a[i:i + batch]) for a in arrays])))
    return np.concatenate(outs)


def attack_loss(model, kind: str, adversarial: np.ndarray, reference: np.ndarray, batch: int = 1000) -> np.ndarray:
    """The objective value (not squared) at given adversarial images, [N]."""

    def fn(x, ref):
        return tf.sqrt(_objective(model, kind, x, ref))

    return _eval_batches(fn, [adversarial.astype(np.float32), reference.astype(np.float32)], batch)


# --------------------------------------------------------------------------
# Random starts


class _StartStream:
    """Random start perturbations, drawn image after image for consecutive chunks.

    Start r uses generators seeded by (seed, r): a direction ~ N(0, I) normalised, a
    radius lambda * u^(1/P) (uniform in the L2 ball), then projected onto the box. A
    prefix of images (a chunk) or of starts gives the same values as a larger call.
    """

    def __init__(self, budget: float, count: int, seed: int):
        self.budget = budget
        self.count = count
        self.gens = [(np.random.default_rng([int(seed), r, 0]), np.random.default_rng([int(seed), r, 1]))
                     for r in range(count)]

    def next(self, images: np.ndarray, directions: np.ndarray | None = None) -> np.ndarray:
        """Starts for the next `len(images)` images: [count, m, H, W, C].

        With `directions` ([m, H, W, C], the latent attack's x_t - x), start 0 of each
        image is the projection of its direction (the point of the segment towards the
        target image at the budget) instead of a random point.
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
    return _StartStream(budget, restarts, seed).next(images)


# --------------------------------------------------------------------------
# PGD


_PGD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _pgd_function(model, kind: str, image_shape: tuple, reference_dim: int, jit_compile: bool):
    """The compiled attack loop for one model, objective and image shape (cached per model)."""
    try:
        per_model = _PGD_CACHE.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no cache
        per_model = {}
    key = (kind, tuple(image_shape), int(reference_dim), bool(jit_compile))
    if key in per_model:
        return per_model[key]
    sign = -1.0 if kind == LATENT else 1.0  # descent for latent, ascent for max damage
    signature = [
        tf.TensorSpec([None, *image_shape], tf.float32),  # x
        tf.TensorSpec([None, reference_dim], tf.float32),  # reference
        tf.TensorSpec([None, *image_shape], tf.float32),  # d0
        tf.TensorSpec([], tf.float32),  # budget
        tf.TensorSpec([], tf.int32),  # steps
        tf.TensorSpec([], tf.int32),  # restarts (starts per image in this call)
        tf.TensorSpec([], tf.float32),  # initial step fraction
    ]

    @tf.function(input_signature=signature, jit_compile=bool(jit_compile))
    def run(x, reference, d0, budget, steps, restarts, frac):
        # x, d0: [R*n, H, W, C] restart-major; reference: [R*n, K].
        shape = tf.shape(x)
        rows = shape[0]
        x_flat = _flat(x)
        lower, upper = -x_flat, 1.0 - x_flat
        steps_f = tf.cast(steps, tf.float32)

        def loss_sq(d_flat):
            x_adv = tf.clip_by_value(tf.reshape(x_flat + d_flat, shape), 0.0, 1.0)
            return _objective(model, kind, x_adv, reference)

        def better(new, old):
            return new < old if kind == LATENT else new > old

        def curve_value(best):
            per_restart = tf.reshape(best, [restarts, -1])
            agg = tf.reduce_min(per_restart, 0) if kind == LATENT else tf.reduce_max(per_restart, 0)
            return tf.reduce_mean(agg)

        init_best = tf.fill([rows], np.inf if kind == LATENT else -np.inf)
        d_init = _flat(d0)

        def body(k, d, best, best_d, curve):
            with tf.GradientTape() as tape:
                tape.watch(d)
                obj = loss_sq(d)
                total = tf.reduce_sum(obj)
            grad = tape.gradient(total, d)
            loss = tf.sqrt(obj)
            improved = better(loss, best)
            best = tf.where(improved, loss, best)
            best_d = tf.where(improved[:, None], d, best_d)
            curve = tf.cond(
                k > 0,
                lambda: tf.tensor_scatter_nd_update(curve, [[k - 1]], [curve_value(best)]),
                lambda: curve,
            )
            grad = tf.where(tf.math.is_finite(grad), grad, 0.0)
            # Feasible direction: drop components pushing pixels further out of the box.
            step_dir = sign * grad
            blocked = (((d <= lower + _BOX_TOLERANCE) & (step_dir < 0))
                       | ((d >= upper - _BOX_TOLERANCE) & (step_dir > 0)))
            grad = tf.where(blocked, 0.0, grad)
            unit = grad / tf.maximum(_norm(grad), 1e-12)[:, None]
            eta = frac * budget * 0.5 * (1.0 + tf.cos(math.pi * tf.cast(k, tf.float32) / steps_f))
            d = project_l2_box(d + sign * eta * unit, lower, upper, budget)
            return k + 1, d, best, best_d, curve

        _, d, best, best_d, curve = tf.while_loop(
            lambda k, *_: k < steps,
            body,
            (tf.constant(0), d_init, init_best, d_init, tf.zeros([steps], tf.float32)),
            parallel_iterations=1,
        )
        loss = tf.sqrt(loss_sq(d))
        improved = better(loss, best)
        best = tf.where(improved, loss, best)
        best_d = tf.where(improved[:, None], d, best_d)
        curve = tf.tensor_scatter_nd_update(curve, [[steps - 1]], [curve_value(best)])
        return tf.reshape(best_d, shape), best, curve

    per_model[key] = run
    return run


def _pgd_phase(model, kind, images, reference, starts, budget, steps, frac, chunk_rows, keep, jit, directions=None):
    """Runs PGD for `steps` steps on every (start, image) row; keeps the `keep` best per image.

    Args:
      starts: a `_StartStream` or an array [C, n, H, W, C'] of start perturbations.
      chunk_rows: at most this many rows per compiled call (at least one image with all
        its starts).
      jit: one-element list [use XLA]; set to False (for the caller's later phases too)
        when XLA fails to compile the model's functions.
    Returns (best_d [keep, n, H, W, C'] best first, loss [keep, n], curve [steps] = mean
    over images of the best-over-starts loss after each iteration).
    """
    count = starts.count if isinstance(starts, _StartStream) else starts.shape[0]
    n = images.shape[0]
    per_call = max(1, chunk_rows // count)
    best_d = np.empty((keep, *images.shape), np.float32)
    best = np.empty((keep, n), np.float32)
    curve = np.zeros(steps, np.float64)
    for i in range(0, n, per_call):
        j = min(n, i + per_call)
        m = j - i
        chunk_starts = (starts.next(images[i:j], None if directions is None else directions[i:j])
                        if isinstance(starts, _StartStream) else starts[:, i:j])
        x = np.concatenate([images[i:j]] * count)
        ref = np.concatenate([reference[i:j]] * count)
        d0 = chunk_starts.reshape(count * m, *images.shape[1:])
        args = (tf.constant(x), tf.constant(ref), tf.constant(d0), tf.constant(budget, tf.float32),
                tf.constant(steps), tf.constant(count), tf.constant(frac, tf.float32))
        try:
            d, loss, chunk_curve = _pgd_function(model, kind, images.shape[1:], reference.shape[1], jit[0])(*args)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as err:
            if not jit[0]:
                raise
            logger.warning("XLA could not compile the attack on this model (%s); running it without XLA.",
                            str(err).strip().splitlines()[0][:200])
            jit[0] = False
            d, loss, chunk_curve = _pgd_function(model, kind, images.shape[1:], reference.shape[1], False)(*args)
        d = d.numpy().reshape(count, m, *images.shape[1:])
        loss = loss.numpy().reshape(count, m)
        order = np.argsort(loss if kind == LATENT else -loss, axis=0, kind="stable")[:keep]
        best_d[:, i:j] = d[order, np.arange(m)[None, :]]
        best[:, i:j] = loss[order, np.arange(m)[None, :]]
        curve += chunk_curve.numpy().astype(np.float64) * m
    return best_d, best, curve / n


def pgd_phases(config: AttackConfig, kind: str = MAX_DAMAGE) -> list[tuple[int, int, float]]:
    """[(starts per image, steps, first step as a fraction of lambda)] of each PGD phase."""
    config = resolve(config, kind)
    a, s, r = config.initial_step_fraction, config.steps, config.restarts
    if config.exploration_starts <= 1:
        return [(r, s, a)]
    return [(config.exploration_starts * r, max(1, -(-s // EXPLORATION_STEPS_DIVISOR)), a),
            (r, s, a * REFINE_STEP_FACTOR)]


def exploration_schedule(config: AttackConfig, kind: str = MAX_DAMAGE) -> tuple[int, int]:
    """(starts, steps) of the exploration phase for a config (0 starts = no exploration)."""
    phases = pgd_phases(config, kind)
    if len(phases) == 1:
        return 0, 0
    return phases[0][0], phases[0][1]


def _pgd(model, kind, images, reference, budget, config: AttackConfig, seed: int, record_curve: bool,
         directions=None) -> AttackResult:
    chunk_rows = config.chunk_size * config.restarts
    phases = pgd_phases(config, kind)
    starts = _StartStream(budget, phases[0][0], seed)
    curves = []
    jit = [bool(config.jit_compile)]  # switched off for good if XLA fails on this model
    for i, (_, steps, frac) in enumerate(phases):
        keep = phases[i + 1][0] if i + 1 < len(phases) else 1
        starts, best, curve = _pgd_phase(model, kind, images, reference, starts, budget, steps, frac, chunk_rows,
                                         keep, jit, directions if i == 0 else None)
        curves.append(curve)
    best_d = starts
    # Same float32 arithmetic as the objective evaluation inside the loop.
    adversarial = np.clip(images + best_d[0], 0.0, 1.0).astype(np.float32)
    if not record_curve:
        return AttackResult(adversarial, best[0])
    explore_curve = np.concatenate(curves[:-1]).astype(np.float32) if len(curves) > 1 else None
    return AttackResult(adversarial, best[0], curves[-1].astype(np.float32), explore_curve)


# --------------------------------------------------------------------------
# L-BFGS-B (reference-style second attacker)


def _lbfgsb(model, kind, images, reference, budget, config: AttackConfig, seed: int, record_curve: bool) -> AttackResult:
    from scipy import optimize

    n = images.shape[0]
    image_shape = images.shape[1:]
    p = int(np.prod(image_shape))
    sign = 1.0 if kind == LATENT else -1.0  # scipy minimises sign * loss

    @tf.function(input_signature=[
        tf.TensorSpec([1, *image_shape], tf.float32),
        tf.TensorSpec([1, None], tf.float32),
        tf.TensorSpec([1, p], tf.float32),
        tf.TensorSpec([], tf.float32),
    ])
    @tf.autograph.experimental.do_not_convert
    def value_and_grad(x, ref, d, lam):
        with tf.GradientTape() as tape:
            tape.watch(d)
            scale = tf.minimum(1.0, lam / tf.maximum(_norm(d), _TINY))  # rescale onto the ball
            d_in = d * scale[:, None]
            x_adv = tf.clip_by_value(x + tf.reshape(d_in, tf.shape(x)), 0.0, 1.0)
            loss = tf.sqrt(_objective(model, kind, x_adv, ref) + 1e-20)[0]
        return loss, tape.gradient(loss, d), x_adv

    starts = random_starts(images, budget, config.restarts, seed)
    adversarial = np.empty_like(images)
    losses = np.empty(n, np.float32)
    curves = np.zeros((n, config.steps))
    lam = tf.constant(budget, tf.float32)
    for i in range(n):
        x = tf.constant(images[i:i + 1])
        ref = tf.constant(reference[i:i + 1])
        flat_x = images[i].reshape(-1).astype(np.float64)
        bounds = optimize.Bounds(-flat_x, 1.0 - flat_x)
        best = {"loss": np.inf if kind == LATENT else -np.inf, "x": images[i]}
        restart_curves = []
        for r in range(config.restarts):
            run = {"loss": np.inf if kind == LATENT else -np.inf}

            def fun(d, run=run):
                loss, grad, x_adv = value_and_grad(x, ref, tf.constant(d[None].astype(np.float32)), lam)
                loss = float(loss)
                if np.isfinite(loss) and sign * loss < sign * run["loss"]:
                    run["loss"] = loss
                    if sign * loss < sign * best["loss"]:
                        best["loss"], best["x"] = loss, x_adv.numpy()[0]
                grad = grad.numpy()[0].astype(np.float64)
                return sign * loss, sign * np.where(np.isfinite(grad), grad, 0.0)

            run_curve = []
            optimize.minimize(
                fun, starts[r, i].reshape(-1).astype(np.float64), jac=True, method="L-BFGS-B", bounds=bounds,
                options={"maxiter": config.steps, "maxcor": LBFGSB_MEMORY, "ftol": 1e-12, "gtol": 1e-10},
                callback=lambda _xk, run=run, run_curve=run_curve: run_curve.append(run["loss"]),
            )
            run_curve = (run_curve or [run["loss"]])[: config.steps]
            run_curve += [run["loss"]] * (config.steps - len(run_curve))
            run_curve[-1] = run["loss"]
            restart_curves.append(run_curve)
        # Best over restarts after k iterations of each restart.
        curves[i] = np.min(restart_curves, 0) if kind == LATENT else np.max(restart_curves, 0)
        adversarial[i] = best["x"]
        losses[i] = best["loss"] if np.isfinite(best["loss"]) else np.nan
    curve = curves.mean(0).astype(np.float32) if record_curve else None
    return AttackResult(adversarial, losses, curve)


# --------------------------------------------------------------------------
# Public API


def _attack(kind, model, images, targets, budget, config, seed, record_curve) -> AttackResult:
    validate_config(config)
    config = resolve(config, kind)
    budget = validate_budget(budget)
    images = validate_images(images, "images")
    if kind == LATENT:
        targets = validate_images(targets, "targets")
        if targets.shape != images.shape:
            raise DataError(
                f"targets must have the same shape as images (one target per image); got {targets.shape} "
                f"for targets and {images.shape} for images."
            )
    for name in ("encode", "decode"):
        if not callable(getattr(model, name, None)):
            raise ConfigError(
                f"the model has no callable {name}(); pass an ExportedAutoencoder (robust_dae_tf.export) "
                "or an object with encode(images) and decode(latents)."
            )
    reference = _reference(model, kind, images, targets)
    if config.method == "pgd":
        result = _pgd(model, kind, images, reference, budget, config, int(seed), record_curve,
                      directions=targets - images if kind == LATENT else None)
    else:
        result = _lbfgsb(model, kind, images, reference, budget, config, int(seed), record_curve)
    bad = ~np.isfinite(result.loss)
    if bad.any():
        what = "latents" if kind == LATENT else "latents/reconstructions"
        raise DataError(
            f"the model produced NaN {what} for {int(bad.sum())} of {images.shape[0]} images at the perturbed "
            "inputs of the attack; check the SavedModel (a diverged or corrupt checkpoint)."
        )
    return result


def latent_attack(model, images, targets, budget: float, config: AttackConfig = AttackConfig(), seed: int = 0,
                  record_curve: bool = False) -> AttackResult:
    """Targeted latent-space attack (eq. 12): min ||g(x + d) - g(x_t)||_2, ||d||_2 <= budget, x + d in [0, 1].

    Args:
      model: object with tf-callable, differentiable `encode(images) -> [N, D]` and
        `decode(latents)` (e.g. `robust_dae_tf.export.ExportedAutoencoder`).
      images, targets: float32 [N, H, W, C] in [0, 1]; targets[i] is the target of images[i].
      budget: L2 radius lambda > 0.
      config: `AttackConfig`; seed: random starts; record_curve: fill `loss_curve`.
    """
    return _attack(LATENT, model, images, targets, budget, config, seed, record_curve)


def max_damage_attack(model, images, budget: float, config: AttackConfig = AttackConfig(), seed: int = 0,
                      record_curve: bool = False) -> AttackResult:
    """Maximum-damage attack (eq. 13): max ||f(g(x + d)) - f(g(x))||_2, ||d||_2 <= budget, x + d in [0, 1]."""
    return _attack(MAX_DAMAGE, model, images, None, budget, config, seed, record_curve)
