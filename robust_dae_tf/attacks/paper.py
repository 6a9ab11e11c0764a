"""The attacker behind the paper's numbers (method "paper"), re-implemented exactly.

This is the building block of the paper's evaluation protocol; the protocol layer
(not this module) must add what the paper's REPORTING does on top of it, notably the
decode-time latent noise (std 0.4 / 0.004) of the reported reconstructions.

Per image, one call of `scipy.optimize.fmin_l_bfgs_b` on the noise n (the perturbation,
flattened to d = H * W * C float64 values):

* ONE start, `sample_d_ball(rng, d, lambda)`: a standard-normal direction normalised to
  unit length, times u^(1/d) with u ~ U[0, 1), times a radius r ~ U(1e-8, lambda). It is
  not projected onto the box: L-BFGS-B itself projects its start onto the bounds.
* box bounds [-x, 1 - x] per pixel on the noise;
* settings per objective (class attributes of `objectives.Objective`):
  latent attack (eq. 12) m = 25, factr = 10 (`paper_lbfgsb_memory`, `paper_lbfgsb_factr`);
  maximum damage (eq. 13) m = 100, factr = 10, pgtol = 1e-20 (`paper_lbfgsb_pgtol`).
  Every other argument is scipy's default (scipy 1.17 signature): approx_grad=0,
  epsilon=1e-8, maxfun=15000, maxiter=15000, maxls=20, no callback unless a curve is
  recorded; the latent attack's pgtol is scipy's default 1e-5.
* the L2 budget is enforced INSIDE the objective: when ||n|| > lambda the noise is
  rescaled onto the sphere, n_s = lambda * n / ||n|| (else n_s = n), the model is called
  at x + n_s, and the gradient handed to L-BFGS-B is the gradient with respect to n_s,
  NOT chained through the rescaling (unlike `lbfgsb.py`, which differentiates through it).
  x + n_s is not clipped: n_s lies in the box because n does and the box contains 0.
* the loss minimised is the objective's sqrt(loss_sq) (not squared), times -1 for an
  objective that is maximised: latent ||g(x + n_s) - g(x_t)||_2, maximum damage
  -||f(g(x + n_s)) - f(g(x))||_2. Its gradient is computed by TensorFlow in float32 and
  passed as float64; non-finite gradient entries (sqrt at a zero loss) become 0.
* after the optimiser stops, its final noise (not the best point seen) is rescaled onto
  the ball once more (if outside) and x_a = x + n, clipped to [0, 1] (this only removes
  float32 rounding: the bounds already keep x + n in the box).

`AttackResult.loss` is the objective (not squared, not negated) at exactly the returned
x_a. The config's steps, restarts, exploration_starts, initial_step_fraction, chunk_size
and jit_compile are ignored (the paper runs to scipy's limits from one start).

Random numbers (so that an independent implementation reproduces the starts): image i
of the call (0-based) uses `np.random.default_rng([seed, i])`, from which
`sample_d_ball` draws, in this order, `rng.standard_normal(d)`, `rng.random()` (u) and
`rng.uniform(1e-8, lambda)` (r); the start is direction / ||direction|| * u ** (1 / d) * r.

`record_curve`: loss_curve[k] is the mean over images of the loss at the iterate after
iteration k + 1 (each image's curve padded with its last value to the longest run).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks.config import AttackConfig, AttackResult
from robust_dae_tf.attacks.objectives import Objective
from robust_dae_tf.errors import ConfigError

MIN_RADIUS = 1e-8  # lower end of the start radius U(1e-8, lambda)


def sample_d_ball(rng: np.random.Generator, d: int, budget: float) -> np.ndarray:
    """The paper's start: [d] float64, a unit normal direction * u^(1/d) * U(1e-8, budget).

    Draws rng.standard_normal(d), then u = rng.random(), then r = rng.uniform(1e-8, budget).
    """
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    u = rng.random()
    radius = rng.uniform(MIN_RADIUS, budget)
    return direction * u ** (1.0 / d) * radius


def onto_ball(noise: np.ndarray, budget: float) -> np.ndarray:
    """`noise` rescaled onto the sphere of radius `budget` when it lies outside the ball."""
    norm = float(np.linalg.norm(noise))
    return noise * (budget / norm) if norm > budget else noise


def settings(objective: Objective) -> dict:
    """The fmin_l_bfgs_b keyword arguments of `objective` (ConfigError if it is not one of the paper's)."""
    memory, factr, pgtol = (objective.paper_lbfgsb_memory, objective.paper_lbfgsb_factr,
                            objective.paper_lbfgsb_pgtol)
    if memory is None or factr is None or pgtol is None:
        raise ConfigError(
            f"attack method 'paper' has no settings for the attack {objective.name!r} (set its paper_lbfgsb_memory, "
            "paper_lbfgsb_factr and paper_lbfgsb_pgtol); use method 'pgd' or 'lbfgsb'."
        )
    return {"m": int(memory), "factr": float(factr), "pgtol": float(pgtol)}


def run(model, objective: Objective, images: np.ndarray, reference: np.ndarray, budget: float, config: AttackConfig,
        seed: int, record_curve: bool) -> AttackResult:
    """The paper's attacker on validated inputs (`runner.run_validated` prepares them)."""
    from scipy import optimize  # pylint: disable=import-outside-toplevel

    del config  # see the module docstring: the paper's settings come from the objective
    options = settings(objective)
    n = images.shape[0]
    image_shape = images.shape[1:]
    p = int(np.prod(image_shape))
    sign = -objective.sign  # scipy minimises sign * loss

    @tf.function(input_signature=[
        tf.TensorSpec([1, *image_shape], tf.float32),
        tf.TensorSpec([1, None], tf.float32),
        tf.TensorSpec([1, p], tf.float32),
    ])
    @tf.autograph.experimental.do_not_convert
    def value_and_grad(x, ref, noise):
        with tf.GradientTape() as tape:
            tape.watch(noise)
            loss = tf.sqrt(objective.loss_sq(model, x + tf.reshape(noise, tf.shape(x)), ref))[0]
        return loss, tape.gradient(loss, noise)

    adversarial = np.empty_like(images)
    losses = np.empty(n, np.float32)
    curves = []
    for i in range(n):
        x = tf.constant(images[i:i + 1])
        ref = tf.constant(reference[i:i + 1])
        flat_x = images[i].reshape(-1).astype(np.float64)
        start = sample_d_ball(np.random.default_rng([int(seed), i]), p, budget)
        last = {}

        def fun(noise):
            inside = onto_ball(noise, budget)  # the budget, enforced inside the objective
            loss, grad = value_and_grad(x, ref, tf.constant(inside[None].astype(np.float32)))
            grad = grad.numpy()[0].astype(np.float64)
            last["noise"], last["loss"] = noise.copy(), float(loss)
            return sign * float(loss), sign * np.where(np.isfinite(grad), grad, 0.0)

        curve = []

        def callback(noise, curve=curve, last=last):
            if "noise" in last and np.array_equal(noise, last["noise"]):
                curve.append(last["loss"])
            else:
                curve.append(sign * fun(noise)[0])

        noise, _, _ = optimize.fmin_l_bfgs_b(
            fun, start, bounds=list(zip(-flat_x, 1.0 - flat_x)), callback=callback if record_curve else None,
            **options)
        noise = onto_ball(noise, budget)
        adversarial[i] = np.clip(images[i] + noise.reshape(image_shape).astype(np.float32), 0.0, 1.0)
        loss = objective.loss_sq(model, tf.constant(adversarial[i:i + 1]), ref)
        losses[i] = float(np.sqrt(np.asarray(loss)[0]))
        curves.append(curve or [float(losses[i])])
    curve = None
    if record_curve:
        length = max(len(c) for c in curves)
        curve = np.mean([c + [c[-1]] * (length - len(c)) for c in curves], 0).astype(np.float32)
    return AttackResult(adversarial, losses, curve)
