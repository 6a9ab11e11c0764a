"""Batched APGD (Croce and Hein 2020, L2) on any `Objective`: a step size the optimiser
controls from its own progress; one setting, the gradient evaluations per image.

Conventions as everywhere in `attacks`: pixels in [0, 1]; d is the perturbation of one
image, ||d||_2 over all its pixels <= lambda and 0 <= x + d <= 1; P is the exact
Euclidean projection onto that set (`projection.project_l2_box`); the loss is the
objective's sqrt(loss_sq) per image, minimised or maximised as `Objective.maximize` says
(`sign` = +1 ascent, -1 descent; "improved" = `Objective.better`).

With N gradient evaluations per start, iterates d_0 .. d_N (d_0 a start: uniform in the
ball and projected on the box, or the projection of the objective's start direction,
`starts.StartStream`). For k = 0 .. N-1 the loss and its gradient are evaluated at d_k
(one gradient evaluation each; d_N is evaluated without a gradient), then

    u_k     = feasible unit direction of the gradient (`pgd.feasible_unit_direction`:
              components that would push a pixel on the box boundary further out are
              dropped, then g / ||g||_2)
    z       = P(d_k + sign * eta * u_k)
    d_{k+1} = P(d_k + a (z - d_k) + (1 - a)(d_k - d_{k-1})),  a = 1 at k = 0, else 0.75

eta starts at 2 * lambda. Checkpoints w_j = ceil(p_j N) with p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (`checkpoints`). At a checkpoint k = w_j
(j >= 1, k <= N - 1, after evaluating d_k) eta is halved and the iterate restarts from
the best point so far (d_k = best, with its direction; the momentum term restarts at 0,
d_{k-1} = best) when

  1. the loss improved in fewer than rho * (w_j - w_{j-1}) of the steps k' in
     (w_{j-1}, w_j] (improved: loss(d_k') better than loss(d_{k'-1})), rho = 0.75, or
  2. eta was not halved at w_{j-1} and the best loss did not improve since w_{j-1}
     (at j = 1 the reference is the loss of the start d_0).

After a restart the next step's "previous loss" is the best loss. Every quantity (eta,
counters, best point) is per row (image x start). The best iterate of each image over
its starts and all iterates is returned; an image whose loss was never finite gets a NaN
loss (the ensemble then falls back to its other members). Differences from AutoAttack's
code, on purpose: condition 1 is "fewer than" as in the paper (the code uses <=); the
checkpoints are the paper's p_j (the code shrinks the interval in whole iterations); the
momentum term is zero right after a restart.

Batched and compiled like `pgd`: every row of one chunk in ONE `tf.function` (a
`tf.while_loop` over the N steps), cached per model, objective and image shape; images
are chunked by `config.chunk_size`; XLA per `config.jit_compile` with the same fallback
(`pgd.call_compiled`).
"""

from __future__ import annotations

import math
import weakref

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks import objectives
from robust_dae_tf.attacks.config import AttackResult
from robust_dae_tf.attacks.objectives import flatten
from robust_dae_tf.attacks.pgd import call_compiled, feasible_unit_direction, model_cache
from robust_dae_tf.attacks.projection import project_l2_box
from robust_dae_tf.attacks.starts import StartStream, directions_of_chunk

MOMENTUM = 0.75  # alpha
RHO = 0.75  # condition 1: fraction of improving steps between checkpoints
INITIAL_STEP_FACTOR = 2.0  # eta_0 = 2 * lambda
P1, P_DECREASE, P_MIN = 0.22, 0.03, 0.06  # checkpoint schedule
MIN_EVALUATIONS = 5  # fewer gradient evaluations per start leave no checkpoint worth the name

_APGD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def checkpoint_fractions() -> list[float]:
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), all p_j <= 1
    (rounded to 12 decimals against float drift)."""
    p = [0.0, P1]
    while True:
        nxt = round(p[-1] + max(p[-1] - p[-2] - P_DECREASE, P_MIN), 12)
        if nxt > 1.0:
            return p
        p.append(nxt)


def checkpoints(n: int) -> list[int]:
    """Checkpoint iterations w_j = ceil(p_j n) (distinct, increasing, w_0 = 0) for n
    gradient evaluations per start; only those <= n - 1 act (`run`)."""
    out = []
    for p in checkpoint_fractions():
        w = int(math.ceil(round(p * n, 9)))
        if not out or w > out[-1]:
            out.append(w)
    return out


def _schedule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(is_checkpoint [n] bool, interval [n] int: w_j - w_{j-1} at checkpoint w_j) for the
    iterations 0 .. n-1 of the loop."""
    is_cp = np.zeros(n, bool)
    interval = np.zeros(n, np.int32)
    ws = checkpoints(n)
    for prev, w in zip(ws[:-1], ws[1:]):
        if w <= n - 1:
            is_cp[w] = True
            interval[w] = w - prev
    return is_cp, interval


def _apgd_function(model, objective, image_shape: tuple, reference_dim: int, jit_compile: bool, trace: bool = False):
    """The compiled APGD loop for one model, objective and image shape (cached per model).
    Returns (best d, best loss) and with `trace` also the loss at d_k and the step size
    used for the step from d_k, each [steps, rows]."""
    attack = objectives.objective(objective)
    per_model = model_cache(_APGD_CACHE, model)
    key = (attack, tuple(image_shape), int(reference_dim), bool(jit_compile), bool(trace))
    if key in per_model:
        return per_model[key]
    sign = attack.sign
    signature = [
        tf.TensorSpec([None, *image_shape], tf.float32),  # x
        tf.TensorSpec([None, reference_dim], tf.float32),  # reference
        tf.TensorSpec([None, *image_shape], tf.float32),  # d0
        tf.TensorSpec([], tf.float32),  # budget
        tf.TensorSpec([None], tf.bool),  # is_checkpoint [steps]
        tf.TensorSpec([None], tf.int32),  # interval [steps]
    ]

    @tf.function(input_signature=signature, jit_compile=bool(jit_compile))
    def run(x, reference, d0, budget, is_checkpoint, interval):
        shape = tf.shape(x)
        rows = shape[0]
        steps = tf.shape(is_checkpoint)[0]
        x_flat = flatten(x)
        lower, upper = -x_flat, 1.0 - x_flat

        def loss_sq(d_flat):
            x_adv = tf.clip_by_value(tf.reshape(x_flat + d_flat, shape), 0.0, 1.0)
            return attack.loss_sq(model, x_adv, reference)

        def keep_best(loss, d, unit, best, best_d, best_unit):
            improved = attack.better(loss, best)
            return (tf.where(improved, loss, best), tf.where(improved[:, None], d, best_d),
                    tf.where(improved[:, None], unit, best_unit))

        def body(k, d, d_prev, eta, best, best_d, best_unit, prev_loss, count, reduced_last, best_at_cp, traces):
            with tf.GradientTape() as tape:
                tape.watch(d)
                obj = loss_sq(d)
                total = tf.reduce_sum(obj)  # the squared loss: no sqrt in the gradient (finite at 0)
            grad = tape.gradient(total, d)
            loss = tf.sqrt(obj)
            unit = feasible_unit_direction(grad, d, lower, upper, sign)
            count = count + tf.cast((k > 0) & attack.better(loss, prev_loss), tf.int32)
            best, best_d, best_unit = keep_best(loss, d, unit, best, best_d, best_unit)
            if_cp = is_checkpoint[k]
            few_improvements = tf.cast(count, tf.float32) < RHO * tf.cast(interval[k], tf.float32)
            stalled = tf.logical_not(reduced_last) & tf.logical_not(attack.better(best, best_at_cp))
            reduce = if_cp & (few_improvements | stalled)
            eta = tf.where(reduce, 0.5 * eta, eta)
            d = tf.where(reduce[:, None], best_d, d)
            d_prev = tf.where(reduce[:, None], best_d, d_prev)
            unit = tf.where(reduce[:, None], best_unit, unit)
            current = tf.where(reduce, best, loss)
            reduced_last = tf.where(if_cp, reduce, reduced_last)
            best_at_cp = tf.where(if_cp, best, best_at_cp)
            count = tf.where(if_cp, tf.zeros_like(count), count)
            z = project_l2_box(d + sign * eta[:, None] * unit, lower, upper, budget)
            a = tf.where(k > 0, MOMENTUM, 1.0)
            d_next = project_l2_box(d + a * (z - d) + (1.0 - a) * (d - d_prev), lower, upper, budget)
            if trace:
                traces = (tf.tensor_scatter_nd_update(traces[0], [[k]], loss[None]),
                          tf.tensor_scatter_nd_update(traces[1], [[k]], eta[None]))
            return k + 1, d_next, d, eta, best, best_d, best_unit, current, count, reduced_last, best_at_cp, traces

        d_init = flatten(d0)
        worst = tf.fill([rows], attack.worst)
        state = (tf.constant(0), d_init, d_init, tf.fill([rows], INITIAL_STEP_FACTOR) * budget, worst, d_init,
                 tf.zeros_like(d_init), worst, tf.zeros([rows], tf.int32), tf.zeros([rows], tf.bool), worst,
                 (tf.zeros([steps, rows]), tf.zeros([steps, rows])) if trace else ())
        _, d, _, _, best, best_d, best_unit, _, _, _, _, traces = tf.while_loop(
            lambda k, *_: k < steps, body, state, parallel_iterations=1)
        best, best_d, _ = keep_best(tf.sqrt(loss_sq(d)), d, best_unit, best, best_d, best_unit)
        return (tf.reshape(best_d, shape), best, *traces)

    per_model[key] = run
    return run


def run(model, objective, images: np.ndarray, reference: np.ndarray, budget: float, evaluations: int, seed: int,
        chunk_size: int, jit_compile: bool, directions: np.ndarray | None = None, restarts: int = 1) -> AttackResult:
    """APGD on validated inputs (as `pgd.run` gets them): images [N, H, W, C] in [0, 1],
    the objective's reference [N, K], the L2 budget lambda; `evaluations` gradient
    evaluations per image, split over `restarts` starts (N = evaluations // restarts each,
    at least MIN_EVALUATIONS); starts from `StartStream(budget, restarts, seed)`, start 0
    the projection of `directions` [N, H, W, C] when given, or starts 0 .. k-1 those of
    `directions` [k, N, H, W, C] (k <= restarts). Returns the best iterate per image;
    `AttackResult.info["gradient_evaluations_per_image"]` = restarts * N (spent)."""
    attack = objectives.objective(objective)
    steps = int(evaluations) // int(restarts)
    if steps < MIN_EVALUATIONS:
        raise ValueError(f"APGD needs >= {MIN_EVALUATIONS} gradient evaluations per start, got {steps}.")
    is_cp, interval = _schedule(steps)
    n = images.shape[0]
    stream = StartStream(budget, restarts, seed)
    adversarial = np.empty_like(images)
    loss = np.empty(n, np.float32)
    jit = [bool(jit_compile)]
    per_call = max(1, int(chunk_size))
    for i in range(0, n, per_call):
        j = min(n, i + per_call)
        m = j - i
        d0 = stream.next(images[i:j], directions_of_chunk(directions, images, i, j))
        args = (tf.constant(np.concatenate([images[i:j]] * restarts)),
                tf.constant(np.concatenate([reference[i:j]] * restarts).astype(np.float32)),
                tf.constant(d0.reshape(restarts * m, *images.shape[1:])), tf.constant(budget, tf.float32),
                tf.constant(is_cp), tf.constant(interval))
        d, best = call_compiled(
            lambda xla: _apgd_function(model, attack, images.shape[1:], reference.shape[1], xla), args, jit,
            evaluations=restarts * m * steps)
        d = d.numpy().reshape(restarts, m, *images.shape[1:])
        best = best.numpy().reshape(restarts, m)
        key = np.where(np.isfinite(best), attack.ranking_key(best), np.inf)
        order = np.argmin(key, axis=0)
        pick = best[order, np.arange(m)]
        loss[i:j] = np.where(np.isfinite(pick), pick, np.nan)
        # Same float32 arithmetic as the objective evaluation inside the loop.
        adversarial[i:j] = np.clip(images[i:j] + d[order, np.arange(m)], 0.0, 1.0)
    return AttackResult(adversarial.astype(np.float32), loss,
                        info={"gradient_evaluations_per_image": int(steps * restarts)})
