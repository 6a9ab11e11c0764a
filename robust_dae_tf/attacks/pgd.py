"""Batched projected gradient attack ("pgd", the default optimiser) on any `Objective`.

Projected gradient steps along the objective's direction (`Objective.sign`: descent when
it minimises, ascent when it maximises) with normalised L2 steps and the exact Euclidean
projection P onto the feasible set of each image (`projection.project_l2_box`),

    d_{k+1} = P(d_k + sign * eta_k * u_k),   u_k = g_k / ||g_k||_2,
    eta_k   = eta_0 * (1 + cos(pi k / K)) / 2          (k = 0 .. K-1, cosine decay to 0),

where g_k is the gradient with the components that point out of the box at pixels
already on it (x + d = 0 and the step would lower it, or x + d = 1 and it would raise
it) set to 0: the projection would clip them away anyway, and leaving them in the
normalisation shortens the useful part of the step (on MNIST most pixels sit at 0 or 1).

Two phases (explore, then refine), both batched:

1. Exploration: `exploration_starts * restarts` random starts per image (`starts`), each
   run for K = ceil(steps / 8) steps with eta_0 = initial_step_fraction * lambda. When
   the objective gives `start_directions` (the latent attack: x_t - x), the first start
   is their projection instead of a random point.
2. Refinement: the best `restarts` exploration points of each image (their best
   iterates) are run for K = `steps` steps with eta_0 = 0.25 * initial_step_fraction *
   lambda (they start at a good point, so the first jump is smaller).

The objective is evaluated at every iterate (and the last one) and the best iterate of
each image is kept. Cost: (exploration_starts / 8 + 1) * restarts * steps gradient
evaluations per image. The tuning behind this split and the defaults
(`Objective.default_steps`, `default_exploration_starts`) is in docs/attacks.md.

Every image x start of one phase runs in ONE `tf.function` (a `tf.while_loop` over the
steps; no Python loop over images), cached per model, objective and image shape;
images are processed in chunks so that one call holds at most `chunk_size * restarts`
rows (by default a memory bound, `config.default_chunk_size`). The loop is XLA-compiled
when `jit_compile` (by default for FC nets, not conv nets: `config.default_jit_compile`);
if XLA cannot compile a model's functions the attack logs a warning and runs without it.
"""

from __future__ import annotations

import logging
import math
import weakref

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks.config import AttackConfig, AttackResult
from robust_dae_tf.attacks import budgets, objectives, progress
from robust_dae_tf.attacks.budgets import EXPLORATION_STEPS_DIVISOR, REFINE_STEP_FACTOR  # noqa: F401  (re-exported)
from robust_dae_tf.attacks.objectives import MAX_DAMAGE, Objective, flatten
from robust_dae_tf.attacks.projection import l2_norm, project_l2_box
from robust_dae_tf.attacks.starts import StartStream, directions_of_chunk

logger = logging.getLogger(__name__)

# Exploration phase: ceil(steps / EXPLORATION_STEPS_DIVISOR) steps per start; the
# refinement's first step is REFINE_STEP_FACTOR * initial_step_fraction * lambda (`budgets.py`).
# A pixel counts as on the box boundary within this distance (pixel units).
_BOX_TOLERANCE = 1e-6

_PGD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_cache(cache: "weakref.WeakKeyDictionary", model) -> dict:
    """The dict of compiled attack loops of `model` in `cache` (a fresh, unkept dict when the
    model cannot be weakly referenced: no cache)."""
    try:
        return cache.setdefault(model, {})
    except TypeError:  # not weak-referenceable
        return {}


def feasible_unit_direction(grad, d, lower, upper, sign):
    """The normalised step direction u = g' / ||g'||_2 per row ([B, P]) of the gradient
    `grad` of the summed loss at perturbations `d`, where g' is `grad` with non-finite
    components set to 0 and with the components dropped that would push a pixel already
    on the box boundary (d within _BOX_TOLERANCE of `lower` / `upper`) further out when
    stepping along `sign * u` (the feasible direction; module docstring). A zero
    gradient gives u = 0."""
    grad = tf.where(tf.math.is_finite(grad), grad, 0.0)
    step_dir = sign * grad
    blocked = (((d <= lower + _BOX_TOLERANCE) & (step_dir < 0))
               | ((d >= upper - _BOX_TOLERANCE) & (step_dir > 0)))
    grad = tf.where(blocked, 0.0, grad)
    return grad / tf.maximum(l2_norm(grad), 1e-12)[:, None]


def call_compiled(build, args, jit, evaluations: int):
    """`build(jit[0])(*args)`: a compiled attack loop called on one chunk, falling back to
    plain graph mode (and setting jit[0] = False for the caller's later calls) with a
    warning when XLA cannot compile the model's functions. `evaluations` (the call's rows x
    steps) is reported to `progress` when the call has finished."""
    try:
        out = build(jit[0])(*args)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as err:
        if not jit[0]:
            raise
        logger.warning("XLA could not compile the attack on this model (%s); running it without XLA.",
                       str(err).strip().splitlines()[0][:200])
        jit[0] = False
        out = build(False)(*args)
    progress.report(evaluations)
    return out


def _pgd_function(model, objective, image_shape: tuple, reference_dim: int, jit_compile: bool):
    """The compiled attack loop for one model, objective and image shape (cached per model)."""
    attack = objectives.objective(objective)
    per_model = model_cache(_PGD_CACHE, model)
    key = (attack, tuple(image_shape), int(reference_dim), bool(jit_compile))
    if key in per_model:
        return per_model[key]
    sign = attack.sign
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
        x_flat = flatten(x)
        lower, upper = -x_flat, 1.0 - x_flat
        steps_f = tf.cast(steps, tf.float32)

        def loss_sq(d_flat):
            x_adv = tf.clip_by_value(tf.reshape(x_flat + d_flat, shape), 0.0, 1.0)
            return attack.loss_sq(model, x_adv, reference)

        def curve_value(best):
            per_restart = tf.reshape(best, [restarts, -1])
            return tf.reduce_mean(attack.best_tf(per_restart, 0))

        init_best = tf.fill([rows], attack.worst)
        d_init = flatten(d0)

        def body(k, d, best, best_d, curve):
            with tf.GradientTape() as tape:
                tape.watch(d)
                obj = loss_sq(d)
                total = tf.reduce_sum(obj)
            grad = tape.gradient(total, d)
            loss = tf.sqrt(obj)
            improved = attack.better(loss, best)
            best = tf.where(improved, loss, best)
            best_d = tf.where(improved[:, None], d, best_d)
            curve = tf.cond(
                k > 0,
                lambda: tf.tensor_scatter_nd_update(curve, [[k - 1]], [curve_value(best)]),
                lambda: curve,
            )
            unit = feasible_unit_direction(grad, d, lower, upper, sign)
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
        improved = attack.better(loss, best)
        best = tf.where(improved, loss, best)
        best_d = tf.where(improved[:, None], d, best_d)
        curve = tf.tensor_scatter_nd_update(curve, [[steps - 1]], [curve_value(best)])
        return tf.reshape(best_d, shape), best, curve

    per_model[key] = run
    return run


def _pgd_phase(model, attack: Objective, images, reference, starts, budget, steps, frac, chunk_rows, keep, jit,
               directions=None):
    """Runs PGD for `steps` steps on every (start, image) row; keeps the `keep` best per image.

    Args:
      starts: a `StartStream` or an array [C, n, H, W, C'] of start perturbations.
      chunk_rows: at most this many rows per compiled call (at least one image with all
        its starts).
      jit: one-element list [use XLA]; set to False (for the caller's later phases too)
        when XLA fails to compile the model's functions.
    Returns (best_d [keep, n, H, W, C'] best first, loss [keep, n], curve [steps] = mean
    over images of the best-over-starts loss after each iteration).
    """
    count = starts.count if isinstance(starts, StartStream) else starts.shape[0]
    n = images.shape[0]
    per_call = max(1, chunk_rows // count)
    best_d = np.empty((keep, *images.shape), np.float32)
    best = np.empty((keep, n), np.float32)
    curve = np.zeros(steps, np.float64)
    for i in range(0, n, per_call):
        j = min(n, i + per_call)
        m = j - i
        chunk_starts = (starts.next(images[i:j], directions_of_chunk(directions, images, i, j))
                        if isinstance(starts, StartStream) else starts[:, i:j])
        x = np.concatenate([images[i:j]] * count)
        ref = np.concatenate([reference[i:j]] * count)
        d0 = chunk_starts.reshape(count * m, *images.shape[1:])
        args = (tf.constant(x), tf.constant(ref), tf.constant(d0), tf.constant(budget, tf.float32),
                tf.constant(steps), tf.constant(count), tf.constant(frac, tf.float32))
        d, loss, chunk_curve = call_compiled(
            lambda xla: _pgd_function(model, attack, images.shape[1:], reference.shape[1], xla), args, jit,
            evaluations=count * m * steps)
        d = d.numpy().reshape(count, m, *images.shape[1:])
        loss = loss.numpy().reshape(count, m)
        order = np.argsort(attack.ranking_key(loss), axis=0, kind="stable")[:keep]
        best_d[:, i:j] = d[order, np.arange(m)[None, :]]
        best[:, i:j] = loss[order, np.arange(m)[None, :]]
        curve += chunk_curve.numpy().astype(np.float64) * m
    return best_d, best, curve / n


def pgd_phases(config: AttackConfig, objective=MAX_DAMAGE) -> list[tuple[int, int, float]]:
    """[(starts per image, steps, first step as a fraction of lambda)] of each PGD phase,
    with the fields of `config` left None set to the defaults of `objective` (or its name)."""
    return budgets.pgd_phases_of(objectives.resolve(config, objective))


def gradient_evaluations(config: AttackConfig, objective=MAX_DAMAGE) -> int:
    """Gradient evaluations per image that PGD spends with `config` (fields left None: the
    defaults of `objective`): the sum over its phases of starts x steps, e.g. 64 x 25 + 2 x 200
    = 2000 for the maximum-damage defaults and 48 x 50 + 2 x 400 = 3200 for the latent ones."""
    return budgets.pgd_cost(objectives.resolve(config, objective))


def exploration_schedule(config: AttackConfig, objective=MAX_DAMAGE) -> tuple[int, int]:
    """(starts, steps) of the exploration phase for a config (0 starts = no exploration)."""
    phases = pgd_phases(config, objective)
    if len(phases) == 1:
        return 0, 0
    return phases[0][0], phases[0][1]


def run(model, objective: Objective, images: np.ndarray, reference: np.ndarray, budget: float,
           config: AttackConfig, seed: int, record_curve: bool, directions: np.ndarray | None = None) -> AttackResult:
    """PGD on validated inputs (`runner.run_validated` prepares them): images [N, H, W, C],
    the objective's reference [N, K], a config resolved for the objective and the model
    (`Objective.resolve`, `config.for_model`); `directions` [N, H, W, C] replace the first
    exploration start, [k, N, H, W, C] the first k (`starts.StartStream.next`)."""
    chunk_rows = config.chunk_size * config.restarts
    phases = pgd_phases(config, objective)
    starts = StartStream(budget, phases[0][0], seed)
    curves = []
    jit = [bool(config.jit_compile)]  # switched off for good if XLA fails on this model
    for i, (_, steps, frac) in enumerate(phases):
        keep = phases[i + 1][0] if i + 1 < len(phases) else 1
        starts, best, curve = _pgd_phase(model, objective, images, reference, starts, budget, steps, frac,
                                         chunk_rows, keep, jit, directions if i == 0 else None)
        curves.append(curve)
    best_d = starts
    # Same float32 arithmetic as the objective evaluation inside the loop.
    adversarial = np.clip(images + best_d[0], 0.0, 1.0).astype(np.float32)
    info = {"gradient_evaluations_per_image": int(sum(count * steps for count, steps, _ in phases))}
    if not record_curve:
        return AttackResult(adversarial, best[0], info=info)
    explore_curve = np.concatenate(curves[:-1]).astype(np.float32) if len(curves) > 1 else None
    return AttackResult(adversarial, best[0], curves[-1].astype(np.float32), explore_curve, info=info)
