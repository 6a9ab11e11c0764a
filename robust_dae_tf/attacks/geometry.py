"""Directions of largest local change: the top eigenvectors of the pullback metric.

Khan and Storkey (arXiv 2208.03923) read a model's local robustness at an image x from the
pullback metric M = J^T J, J = dh/dx [K, D] the Jacobian at x of the map an attack compares:
here h = the encoder g for the latent attack and the autoencoder f o g for maximum damage
(whatever the objective's `loss_sq` measures against its reference). M's top eigenvector is
the input direction of largest first-order change of h, the direction an optimal small
attack takes; its eigenvalue is the squared local sensitivity.

No Jacobian is formed. With the objective's squared loss against h(x) itself,
L(d) = ||h(x + d) - h(x)||^2 (for maximum damage that is its own reference; for a targeted
attack the reference of the image as its own target), the gradient at a small step is
grad L(eps v) = 2 J(x + eps v)^T (h(x + eps v) - h(x)) = 2 eps M v + O(eps^2), so one
gradient evaluation is one product with M. Orthogonal (block power) iteration
V <- orth(M V) (QR per image), `steps` times from a seeded Gaussian block of `count`
columns, costs count x steps gradient evaluations per image and converges to the top-`count`
eigenspace at the rate (mu_{count+1} / mu_count)^steps; the last product is used for a
Rayleigh-Ritz step instead of a QR (the eigenvectors of the small matrix V^T M V rotate V
within its span), so the columns come out ordered and separated within the subspace.

Conventions: images [N, H, W, C] in [0, 1]; eps in the pixel L2 norm (`EPS`); the
evaluation point x + eps v is not clipped to the box (h is evaluated up to eps outside
[0, 1]; only directions are taken from it). Returns unit-L2 directions [count, N, H, W, C]
and their Ritz values [count, N] (estimates of the top eigenvalues, the squared local
sensitivities), in decreasing order: direction 0 estimates the top eigenvector. An image
whose loss was not finite at any of its products (a model giving NaN or Inf near it) gets
NaN directions and values (the ensemble then falls back to its other members for it).

Used by the attack ensemble's "apgd_geometry" member (`budgets.MEMBERS`): APGD from the
starts P(+lambda v_i) and P(-lambda v_i).
"""

from __future__ import annotations

import weakref

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks import objectives
from robust_dae_tf.attacks.budgets import GEOMETRY_POWER_STEPS as POWER_STEPS
from robust_dae_tf.attacks.objectives import flatten
from robust_dae_tf.attacks.pgd import call_compiled, model_cache

EPS = 0.05  # pixel L2 length of the step at which M v is read off the gradient

_GEOMETRY_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def own_reference(model, objective, images: np.ndarray) -> np.ndarray:
    """The objective's reference of each image compared with itself: h(x) (for a targeted
    attack the reference with the image as its own target)."""
    attack = objectives.objective(objective)
    return attack.reference(model, images, images if attack.needs_targets else None)


def _power_function(model, objective, image_shape: tuple, reference_dim: int, count: int, jit_compile: bool):
    attack = objectives.objective(objective)
    per_model = model_cache(_GEOMETRY_CACHE, model)
    key = (attack, tuple(image_shape), int(reference_dim), int(count), bool(jit_compile))
    if key in per_model:
        return per_model[key]
    signature = [
        tf.TensorSpec([None, *image_shape], tf.float32),  # x
        tf.TensorSpec([None, reference_dim], tf.float32),  # h(x)
        tf.TensorSpec([None, None, count], tf.float32),  # V0 [rows, D, count], orthonormal columns
        tf.TensorSpec([], tf.int32),  # steps
        tf.TensorSpec([], tf.float32),  # eps
    ]

    @tf.function(input_signature=signature, jit_compile=bool(jit_compile))
    def run(x, reference, v0, steps, eps):
        rows = tf.shape(x)[0]
        x_rep = tf.repeat(x, count, axis=0)  # row r * count + i: image r, column i
        ref_rep = tf.repeat(reference, count, axis=0)

        def products(v):
            d = tf.reshape(tf.transpose(v, [0, 2, 1]), tf.shape(x_rep)) * eps  # [rows * count, H, W, C]
            with tf.GradientTape() as tape:
                tape.watch(d)
                loss_sq = attack.loss_sq(model, x_rep + d, ref_rep)
                total = tf.reduce_sum(loss_sq)
            grad = flatten(tape.gradient(total, d)) / (2.0 * eps)
            finite = tf.reduce_all(tf.reshape(tf.math.is_finite(loss_sq), [rows, count]), axis=1)
            return tf.transpose(tf.reshape(grad, [rows, count, -1]), [0, 2, 1]), finite  # M V: [rows, D, count]

        def body(k, v, ok):
            mv, finite = products(v)
            q, _ = tf.linalg.qr(mv)
            return k + 1, tf.ensure_shape(q, [None, None, count]), ok & finite

        _, v, ok = tf.while_loop(lambda k, v, ok: k < steps - 1, body,
                                 (tf.constant(0), v0, tf.ones([rows], tf.bool)))
        # Rayleigh-Ritz on the last block: the eigenvectors of V^T M V rotate V within its span.
        mv, finite = products(v)
        finite = finite & ok
        h = tf.matmul(v, mv, transpose_a=True)
        values, vectors = tf.linalg.eigh(0.5 * (h + tf.transpose(h, [0, 2, 1])))  # ascending
        nan = tf.constant(np.nan, tf.float32)
        directions = tf.where(finite[:, None, None], tf.matmul(v, tf.reverse(vectors, [2])), nan)
        return directions, tf.where(finite[:, None], tf.reverse(values, [1]), nan)

    per_model[key] = run
    return run


def top_directions(model, objective, images: np.ndarray, reference: np.ndarray, count: int,
                   steps: int = POWER_STEPS, seed: int = 0, chunk_size: int = 256, jit_compile: bool = False,
                   eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """(directions [count, N, H, W, C], Ritz values [count, N]) of the top-`count`
    eigenspace of the pullback metric at each image (module docstring); `reference` is
    h(x) (`own_reference`). Spends count x steps gradient evaluations per image (reported
    to `progress`); `chunk_size` images per compiled call."""
    if count < 1 or steps < 1:
        raise ValueError(f"count and steps must be >= 1, got {count}, {steps}.")
    n = images.shape[0]
    dim = int(np.prod(images.shape[1:]))
    rng = np.random.default_rng([int(seed), 3])
    v0 = np.linalg.qr(rng.standard_normal((n, dim, count)))[0].astype(np.float32)
    reference = np.asarray(reference, np.float32)
    jit = [bool(jit_compile)]
    directions = np.empty((count, n, *images.shape[1:]), np.float32)
    ritz = np.empty((count, n), np.float32)
    per_call = max(1, int(chunk_size))
    for i in range(0, n, per_call):
        j = min(n, i + per_call)
        args = (tf.constant(images[i:j]), tf.constant(reference[i:j]), tf.constant(v0[i:j]),
                tf.constant(int(steps)), tf.constant(float(eps), tf.float32))
        v, r = call_compiled(
            lambda xla: _power_function(model, objective, images.shape[1:], reference.shape[1], count, xla),
            args, jit, evaluations=(j - i) * count * int(steps))
        v = v.numpy()  # [m, D, count]
        directions[:, i:j] = np.transpose(v, (2, 0, 1)).reshape(count, j - i, *images.shape[1:])
        ritz[:, i:j] = r.numpy().T
    return directions, ritz


def signed_starts(directions: np.ndarray, budget: float, restarts: int) -> np.ndarray:
    """[restarts, N, H, W, C] start directions +lambda v_0, -lambda v_0, +lambda v_1, ... from
    `directions` [count, N, H, W, C] (count >= ceil(restarts / 2)); their projection onto the
    ball and box is the start (`StartStream`)."""
    out = [sign * float(budget) * directions[i // 2] for i, sign in zip(range(restarts), [1.0, -1.0] * restarts)]
    return np.stack(out).astype(np.float32)

