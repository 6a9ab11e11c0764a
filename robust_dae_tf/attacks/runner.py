"""Running an attack: inputs checked, the objective's reference computed, an optimiser run.

`run(objective, model, images, budget, ...)` is the entry point for any `Objective`;
`latent_attack` / `max_damage_attack` are the paper's two attacks. `run_validated` is the
same without the checks of the budget and the config, for callers that validated them
where they were built (`robustness.Protocol`).
"""

from __future__ import annotations

import numpy as np

from robust_dae_tf.attacks import apgd, ensemble, gradients, lbfgsb, objectives, paper, pgd, precision, starts
from robust_dae_tf.attacks.config import (AttackConfig, AttackResult, for_model, validate_budget, validate_config,
                                          validate_images)
from robust_dae_tf.attacks.measures import attack_loss, reconstruct, reconstruct_and_msssim  # noqa: F401  (re-exported)
from robust_dae_tf.errors import ConfigError, DataError


def run_validated(objective, model, images, budget: float, config: AttackConfig, targets=None, seed: int = 0,
                  record_curve: bool = False) -> AttackResult:
    """`run` for a budget and config that were validated where they were built."""
    objective = objectives.objective(objective)
    images = validate_images(images, "images")
    config = for_model(objective.resolve(config), model, images.shape[1:])
    if objective.needs_targets:
        targets = validate_images(targets, "targets")
        if targets.shape != images.shape:
            raise DataError(
                f"targets must have the same shape as images (one target per image); got {targets.shape} "
                f"for targets and {images.shape} for images."
            )
    else:
        targets = None
    for name in ("encode", "decode"):
        if not callable(getattr(model, name, None)):
            raise ConfigError(
                f"the model has no callable {name}(); pass an ExportedAutoencoder (robust_dae_tf.export) "
                "or an object with encode(images) and decode(latents)."
            )
    reference = objective.reference(model, images, targets)
    gradients.check_input_gradient(model, objective, images, reference, budget, int(seed))  # once per attack
    # The search may run on a bfloat16 twin (`precision.py`); its images are scored in float32 below.
    search_model, search_reference, precision_log = precision.search_precision(
        objective, model, config, images, targets, np.asarray(reference))
    if config.method == "pgd":
        directions = starts.directed_starts(objective.start_directions(images, targets), images,
                                            config.towards_starts, int(seed))
        result = pgd.run(search_model, objective, images, search_reference, budget, config, int(seed), record_curve,
                         directions=directions)
    elif config.method == "apgd":
        result = apgd.run(search_model, objective, images, search_reference, budget, config.gradient_evaluations,
                          int(seed), config.chunk_size, config.jit_compile,
                          directions=objective.start_directions(images, targets))
    elif config.method == "ensemble":
        result = ensemble.run(search_model, objective, images, targets, search_reference, budget, config, int(seed))
    elif config.method == "paper":
        result = paper.run(model, objective, images, reference, budget, config, int(seed), record_curve)
    else:
        result = lbfgsb.run(model, objective, images, reference, budget, config, int(seed), record_curve)
    result = precision.rescore(result, objective, model, np.asarray(reference), precision_log)
    bad = ~np.isfinite(result.loss)
    if bad.any():
        raise DataError(
            f"the model produced NaN {objective.model_outputs} for {int(bad.sum())} of {images.shape[0]} images at "
            "the perturbed inputs of the attack; check the SavedModel (a diverged or corrupt checkpoint)."
        )
    return result


def run(objective, model, images, budget: float, config: AttackConfig = AttackConfig(), targets=None, seed: int = 0,
        record_curve: bool = False) -> AttackResult:
    """Attacks `images` with `objective`: optimises it over d with ||d||_2 <= budget, x + d in [0, 1].

    Args:
      objective: an `attacks.Objective` or the name of a registered one ("latent", "max_damage").
      model: object with tf-callable, differentiable `encode(images) -> [N, D]` and
        `decode(latents)` (e.g. `robust_dae_tf.export.ExportedAutoencoder`).
      images: float32 [N, H, W, C] in [0, 1].
      budget: L2 radius lambda > 0.
      config: `AttackConfig` (fields left None: the objective's defaults).
      targets: [N, H, W, C] targets for objectives that need them (`needs_targets`).
      seed: random starts; record_curve: fill `loss_curve` / `exploration_curve`.
    Returns an `AttackResult` whose loss is the objective at exactly the returned images.
    """
    validate_config(config)
    return run_validated(objective, model, images, validate_budget(budget), config, targets, seed, record_curve)


def latent_attack(model, images, targets, budget: float, config: AttackConfig = AttackConfig(), seed: int = 0,
                  record_curve: bool = False) -> AttackResult:
    """Targeted latent-space attack (eq. 12): min ||g(x + d) - g(x_t)||_2, ||d||_2 <= budget, x + d in [0, 1].

    targets[i] is the target of images[i]; other arguments as for `run`.
    """
    return run(objectives.LATENT_OBJECTIVE, model, images, budget, config, targets, seed, record_curve)


def max_damage_attack(model, images, budget: float, config: AttackConfig = AttackConfig(), seed: int = 0,
                      record_curve: bool = False) -> AttackResult:
    """Maximum-damage attack (eq. 13): max ||f(g(x + d)) - f(g(x))||_2, ||d||_2 <= budget, x + d in [0, 1]."""
    return run(objectives.MAX_DAMAGE_OBJECTIVE, model, images, budget, config, None, seed, record_curve)
