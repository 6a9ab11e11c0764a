"""L2 attacks on autoencoders (paper section 4): objectives, optimisers, the projection.

Pixels are float32 in [0, 1]; the perturbation budget lambda > 0 bounds ||d||_2 over all
pixels of one image, and the adversarial image x + d stays in [0, 1].

    objectives.py   what an attack optimises and how reports name it (`Objective`):
                    `LatentAttack` (eq. 12, min ||g(x + d) - g(x_t)||_2),
                    `MaximumDamageAttack` (eq. 13, max ||f(g(x + d)) - f(g(x))||_2),
                    the registry (`OBJECTIVES`, `register`, `objective(name)`)
    pgd.py          batched, compiled PGD with exploration + refinement (the default)
    apgd.py         batched, compiled APGD: step size from its own progress, one setting
                    (gradient evaluations per image); method "apgd"
    ensemble.py     the attack ensemble (method "ensemble"): APGD members on the attack's
                    objective and on surrogates (`surrogates.py`: MS-SSIM, cosine of
                    latents) and a reduced PGD under one budget, per-image worst case
    lbfgsb.py       the reference implementation's L-BFGS-B attacker (a second opinion)
    paper.py        the exact attacker behind the paper's numbers (method "paper")
    projection.py   exact projection onto the L2 ball ∩ pixel box (also SE training)
    starts.py       seeded random starts in the ball
    gradients.py    `check_input_gradient`: one clear error for a model without an input
                    gradient (constant / stop-gradient encoder), before any optimiser runs
    config.py       `AttackConfig` (validated when built; `for_model` sets its automatic
                    memory-bounded chunk size and XLA choice), `AttackResult`, input checks
    runner.py       `run(objective, model, images, budget, ...)`, `latent_attack`,
                    `max_damage_attack`
    measures.py     `attack_loss`, `reconstruct`, `reconstruct_and_msssim` (measuring attacked images)
    budgets.py      gradient evaluations per image: PGD's cost, the ensemble's members and split
    precision.py    the arithmetic of the search (`AttackConfig.precision`): a bfloat16 twin
                    of the model for the latent attack, the images found scored in float32
    progress.py     progress within a run: the batched optimisers report the gradient
                    evaluations of each compiled call; `progress.bar` shows them

Every attack returns an `AttackResult` whose `loss` is the achieved objective (not
squared) at exactly the returned `adversarial` images. Method, defaults and the strength
check against a 16x-compute run and L-BFGS-B: docs/attacks.md.

Names from the modules that need TensorFlow (the optimisers, the projection, the
runner) are loaded on first access, so reports can use the objectives' names and
labels without importing TensorFlow.
"""

from __future__ import annotations

from robust_dae_tf.attacks.config import (
    ATTACK_MEMORY_BYTES,
    MAX_CHUNK_SIZE,
    METHODS,
    PRECISIONS,
    STRONG_PROTOCOL_METHOD,
    ROW_BYTES_PER_PIXEL,
    AttackConfig,
    AttackResult,
    budget_key,
    check_finite_rows,
    default_chunk_size,
    default_jit_compile,
    for_model,
    model_architecture,
    validate_budget,
    validate_config,
    validate_images,
)
from robust_dae_tf.lazy import lazy_exports
from robust_dae_tf.attacks.objectives import (
    ATTACK_LOSS,
    DEFAULTS,
    INPUT_L2,
    INPUT_MSSSIM,
    LATENT,
    LATENT_OBJECTIVE,
    MAX_DAMAGE,
    MAX_DAMAGE_OBJECTIVE,
    OBJECTIVES,
    PAPER_OBJECTIVES,
    LatentAttack,
    MaximumDamageAttack,
    Objective,
    objective,
    register,
    resolve,
    squared_distance,
)

# submodule -> the names re-exported from it, imported on first access (they import TensorFlow).
_LAZY_EXPORTS = {
    "projection": ("project_l2_box", "PROJECTION_BISECTION_STEPS", "PROJECTION_POLISH_STEPS"),
    "starts": ("random_starts", "StartStream"),
    "gradients": ("check_input_gradient",),
    "pgd": ("pgd_phases", "exploration_schedule", "EXPLORATION_STEPS_DIVISOR", "REFINE_STEP_FACTOR"),
    "lbfgsb": ("LBFGSB_MEMORY",),
    "paper": ("sample_d_ball",),
    "runner": ("run", "run_validated", "latent_attack", "max_damage_attack"),
    "measures": ("attack_loss",),
}
__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, _LAZY_EXPORTS)

__all__ = [
    "ATTACK_MEMORY_BYTES", "MAX_CHUNK_SIZE", "ROW_BYTES_PER_PIXEL", "default_chunk_size", "default_jit_compile",
    "for_model", "model_architecture", "ATTACK_LOSS", "DEFAULTS", "INPUT_L2", "INPUT_MSSSIM", "LATENT", "LATENT_OBJECTIVE", "MAX_DAMAGE",
    "MAX_DAMAGE_OBJECTIVE", "METHODS", "STRONG_PROTOCOL_METHOD", "OBJECTIVES", "PAPER_OBJECTIVES", "AttackConfig", "AttackResult",
    "LatentAttack", "MaximumDamageAttack", "Objective", "budget_key", "check_finite_rows", "objective", "register",
    "resolve", "squared_distance", "validate_budget", "validate_config", "validate_images", *_LAZY_NAMES,
]

