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

Speed (the result of every image is that of its own fmin_l_bfgs_b run; only the model
calls are shared): up to `CONCURRENT_IMAGES` images are optimised at once, each by its
own `fmin_l_bfgs_b` call in a worker thread. Their objectives run in lockstep rounds:
a round's requests (one per running image) are evaluated by ONE call of a traced
function of fixed batch shape [CONCURRENT_IMAGES, ...] (idle rows are padding), which is
~25x cheaper per image than a call per evaluation on the MNIST FC model; scipy's own
work per iteration is small once BLAS runs single-threaded (`threadpoolctl`: OpenBLAS
threads competing with TensorFlow's made it 100x slower). Rows of a call do not interact,
the batch shape is fixed, and which image runs in which row depends only on the
images' own iteration counts (a row freed in a round gets the next image, in image
order, rows in increasing order, before the round is evaluated), never on thread
timing: results are deterministic and do not depend on how many images one call
attacks (image i depends only on (seed, i)). They differ from a one-image-per-call
evaluation only by float32 rounding of the batched kernels.

`record_curve`: loss_curve[k] is the mean over images of the loss at the iterate after
iteration k + 1 (each image's curve padded with its last value to the longest run).
"""

from __future__ import annotations

import threading

import numpy as np
import tensorflow as tf

from robust_dae_tf.attacks.config import AttackConfig, AttackResult
from robust_dae_tf.attacks.objectives import Objective
from robust_dae_tf.errors import ConfigError

MIN_RADIUS = 1e-8  # lower end of the start radius U(1e-8, lambda)
# Images optimised concurrently: the width of every model call (see "Speed" in the module docstring).
CONCURRENT_IMAGES = 64
_WAIT_SECONDS = 0.5  # the coordinator wakes up this often (so Ctrl-C and dead workers are noticed)


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


class _Aborted(Exception):
    """Raised inside a worker's objective when the attack stops (an error elsewhere)."""


class _Rounds:
    """Lockstep rounds of concurrent per-image fmin_l_bfgs_b runs (see the module docstring).

    `slots` worker threads each run one image's optimiser at a time; its objective
    `request(slot, noise)` blocks until the coordinator (`run`, the calling thread) has
    evaluated the requests of ALL busy slots as one batch. Which image runs in which slot
    and which requests form a round depend only on the images' own iteration counts, never
    on thread timing: a slot freed in a round gets the next image (in image order, slots in
    increasing order) before the round's batch is evaluated.
    """

    def __init__(self, slots: int, num_images: int, optimise, assign, evaluate):
        self.slots, self.optimise, self.assign, self.evaluate = slots, optimise, assign, evaluate
        self.cond = threading.Condition()
        self.image = [None] * slots  # slot -> image index it runs, None when idle
        self.requests, self.replies, self.done = {}, {}, {}
        self.errors: list = []
        self.stop = False
        self.pending = iter(range(num_images))

    def request(self, slot: int, noise: np.ndarray):
        with self.cond:
            if self.stop:
                raise _Aborted
            self.requests[slot] = noise
            self.cond.notify_all()
            while slot not in self.replies and not self.stop:
                self.cond.wait()
            if self.stop:
                raise _Aborted
            return self.replies.pop(slot)

    def _worker(self, slot: int):
        while True:
            with self.cond:
                while self.image[slot] is None and not self.stop:
                    self.cond.wait()
                if self.stop:
                    return
                index = self.image[slot]
            try:
                outcome = self.optimise(slot, index)
            except _Aborted:
                return
            except BaseException as err:  # pylint: disable=broad-except  (re-raised by the coordinator)
                with self.cond:
                    self.errors.append(err)
                    self.stop = True
                    self.cond.notify_all()
                return
            with self.cond:
                self.done[slot] = (index, outcome)
                self.image[slot] = None
                self.cond.notify_all()

    def _next(self, slot: int) -> bool:
        index = next(self.pending, None)
        if index is None:
            return False
        self.assign(slot, index)
        self.image[slot] = index
        return True

    def run(self) -> dict:
        """{image index: the optimiser's outcome} for every image."""
        threads = [threading.Thread(target=self._worker, args=(j,), daemon=True, name=f"paper-attack-{j}")
                   for j in range(self.slots)]
        outcomes = {}
        try:
            with self.cond:
                for j in range(self.slots):
                    self._next(j)
            for thread in threads:
                thread.start()
            while True:
                with self.cond:
                    while True:
                        if self.errors:
                            raise self.errors[0]
                        busy = [j for j in range(self.slots) if self.image[j] is not None]
                        if all(j in self.requests for j in busy):  # every slot asked or finished
                            if self.done:  # slots freed in this round get the next images, in slot order
                                for j in sorted(self.done):
                                    index, outcome = self.done.pop(j)
                                    outcomes[index] = outcome
                                    self._next(j)
                                self.cond.notify_all()
                                continue  # wait for the new images' first requests
                            if not busy:
                                return outcomes
                            break
                        self.cond.wait(_WAIT_SECONDS)
                    batch, self.requests = self.requests, {}
                replies = self.evaluate(batch)
                with self.cond:
                    self.replies.update(replies)
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.stop = True
                self.cond.notify_all()
            for thread in threads:
                if thread.is_alive():
                    thread.join()


def run(model, objective: Objective, images: np.ndarray, reference: np.ndarray, budget: float, config: AttackConfig,
        seed: int, record_curve: bool) -> AttackResult:
    """The paper's attacker on validated inputs (`runner.run_validated` prepares them)."""
    from scipy import optimize  # pylint: disable=import-outside-toplevel
    from threadpoolctl import threadpool_limits  # pylint: disable=import-outside-toplevel

    del config  # see the module docstring: the paper's settings come from the objective
    options = settings(objective)
    n = images.shape[0]
    image_shape = images.shape[1:]
    p = int(np.prod(image_shape))
    sign = -objective.sign  # scipy minimises sign * loss
    slots = int(CONCURRENT_IMAGES)
    reference = reference.astype(np.float32)

    @tf.function(input_signature=[
        tf.TensorSpec([slots, *image_shape], tf.float32),
        tf.TensorSpec([slots, reference.shape[1]], tf.float32),
        tf.TensorSpec([slots, p], tf.float32),
    ])
    @tf.autograph.experimental.do_not_convert
    def value_and_grad(x, ref, noise):
        with tf.GradientTape() as tape:
            tape.watch(noise)
            loss = tf.sqrt(objective.loss_sq(model, x + tf.reshape(noise, tf.shape(x)), ref))
        return loss, tape.gradient(loss, noise)  # rows are independent: row i's gradient of loss i

    slot_x = np.zeros((slots, *image_shape), np.float32)
    slot_ref = np.zeros((slots, reference.shape[1]), np.float32)

    def assign(slot, index):
        slot_x[slot], slot_ref[slot] = images[index], reference[index]

    def evaluate(batch):
        noise = np.zeros((slots, p), np.float32)
        for slot, inside in batch.items():
            noise[slot] = inside
        loss, grad = value_and_grad(tf.constant(slot_x), tf.constant(slot_ref), tf.constant(noise))
        loss, grad = loss.numpy(), grad.numpy()
        return {slot: (float(loss[slot]), grad[slot].astype(np.float64)) for slot in batch}

    def optimise(slot, index):
        flat_x = images[index].reshape(-1).astype(np.float64)
        start = sample_d_ball(np.random.default_rng([int(seed), index]), p, budget)
        last = {}

        def fun(noise):
            evaluations[index] = evaluations.get(index, 0) + 1  # one gradient evaluation
            inside = onto_ball(noise, budget)  # the budget, enforced inside the objective
            loss, grad = rounds.request(slot, inside.astype(np.float32))
            last["noise"], last["loss"] = noise.copy(), loss
            return sign * loss, sign * np.where(np.isfinite(grad), grad, 0.0)

        curve = []

        def callback(noise):
            if "noise" in last and np.array_equal(noise, last["noise"]):
                curve.append(last["loss"])
            else:
                curve.append(sign * fun(noise)[0])

        noise, _, _ = optimize.fmin_l_bfgs_b(
            fun, start, bounds=list(zip(-flat_x, 1.0 - flat_x)), callback=callback if record_curve else None,
            **options)
        return onto_ball(noise, budget), curve

    evaluations = {}  # image index -> objective + gradient evaluations (each image in one thread)
    rounds = _Rounds(min(slots, n), n, optimise, assign, evaluate)
    with threadpool_limits(limits=1, user_api="blas"):  # BLAS threads would fight TensorFlow's (100x slower)
        outcomes = rounds.run()
    adversarial = np.empty_like(images)
    for index, (noise, _) in outcomes.items():
        adversarial[index] = np.clip(images[index] + noise.reshape(image_shape).astype(np.float32), 0.0, 1.0)
    losses = np.empty(n, np.float32)
    for start in range(0, n, slots):  # the objective at exactly the returned images, same batch shape
        stop = min(start + slots, n)
        x = np.zeros((slots, *image_shape), np.float32)
        ref = np.zeros((slots, reference.shape[1]), np.float32)
        x[:stop - start], ref[:stop - start] = adversarial[start:stop], reference[start:stop]
        losses[start:stop] = np.sqrt(np.asarray(objective.loss_sq(model, tf.constant(x), tf.constant(ref))))[
            :stop - start]
    curve = None
    if record_curve:
        curves = [outcomes[i][1] or [float(losses[i])] for i in range(n)]
        length = max(len(c) for c in curves)
        curve = np.mean([c + [c[-1]] * (length - len(c)) for c in curves], 0).astype(np.float32)
    spent = float(np.mean([evaluations.get(i, 0) for i in range(n)]))
    return AttackResult(adversarial, losses, curve, info={"gradient_evaluations_per_image": spent})
