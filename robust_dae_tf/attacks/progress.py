"""Progress inside one attack run, counted in gradient evaluations.

An attack run on a conv net can take an hour (measured costs: docs/attacks.md, "Cost of one
gradient evaluation"). The batched optimisers (PGD,
APGD, and so the ensemble, whose members are those) `report` the image x gradient
evaluations of every compiled chunk call they finish; whoever runs the attack may listen:

    with progress.run_bar(objective, config, num_images=n, budget=5.0):
        result = attacks.run_validated(objective, model, images, 5.0, config, ...)

Nothing is reported to nobody unless a listener is set (`listening`), so the optimisers pay
nothing otherwise. The sum of the reports of one run is N x the run's
`info["gradient_evaluations_per_image"]` (N images). L-BFGS-B and the paper's attacker
(per-image SciPy loops) do not report. TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

_LISTENER: contextvars.ContextVar[Callable[[int], object] | None] = contextvars.ContextVar(
    "robust_dae_tf_attack_progress", default=None)


@contextlib.contextmanager
def listening(callback: Callable[[int], object]) -> Iterator[None]:
    """Within the block, `callback(evaluations)` receives every `report` (image x gradient
    evaluations finished by one compiled call); the previous listener is restored after."""
    token = _LISTENER.set(callback)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def report(evaluations: int) -> None:
    """Called by an optimiser after each compiled call: `evaluations` = rows x steps done."""
    callback = _LISTENER.get()
    if callback is not None:
        callback(int(evaluations))


def expected_evaluations(config) -> int | None:
    """Gradient evaluations per image a RESOLVED config (`Objective.resolve`) will spend: PGD
    its phases' starts x steps, APGD its budget, the ensemble at most its budget (members'
    allocations round down); None for the optimisers that do not report (lbfgsb, paper)."""
    from robust_dae_tf.attacks import budgets  # pylint: disable=import-outside-toplevel

    if config.method == "pgd":
        return budgets.pgd_cost(config)
    if config.method in ("apgd", "ensemble"):
        return int(config.gradient_evaluations)
    return None


@contextlib.contextmanager
def bar(total: int | None, desc: str, enabled: bool = True) -> Iterator[None]:
    """A tqdm progress bar (stderr, removed when done) advanced by the reports inside the
    block; `total` None or `enabled` False: no bar, nothing listens."""
    if not enabled or not total:
        yield
        return
    from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

    shown = tqdm(total=int(total), desc=desc, unit="eval", unit_scale=True, leave=False)
    try:
        with listening(shown.update):
            yield
    finally:
        shown.close()


def run_bar(objective, config, num_images: int, budget: float, enabled: bool = True):
    """`bar` for one attack run of `objective` (an `Objective`) with `config` on `num_images`
    images: total = num_images x `expected_evaluations(objective.resolve(config))`, labelled
    "<attack> λ=<budget>"."""
    evaluations = expected_evaluations(objective.resolve(config))
    return bar(evaluations and evaluations * num_images, f"{objective.name} λ={budget:g}", enabled)
