"""The attack ensemble (method "ensemble"): diverse members under one budget, per-image worst case.

One setting: the total gradient evaluations per image, `AttackConfig.gradient_evaluations`
(None = `default_evaluations(objective)`, a quarter of what today's PGD defaults spend:
500 for maximum damage, 800 for the latent attack). The members (`MEMBERS`; the defaults
of each attack in `DEFAULT_MEMBERS`, others selectable by `AttackConfig.ensemble_members`)
share it in fixed fractions (`Member.share`, renormalised over the members that run;
`allocate`):

* "apgd" (1/4): APGD (`apgd.py`) on the attack's own objective; for an objective with a
  start direction (the latent attack: x_t - x) one run from there (the target-directed
  start), otherwise 4 random starts in the ball sharing the member's budget;
* "apgd_geometry" (1/4): APGD on the attack's own objective from 4 starts +-lambda v along
  the top 2 eigenvectors v of the pullback metric at each image (`geometry.py`: the input
  directions of largest local change of what the attack compares; the latent attack's start
  0 stays the target-directed one); the power iteration (8 gradient evaluations per
  eigenvector) is paid from the member's share;
* "apgd_towards" (1/2) and "apgd_towards_long" (1/4): APGD on the attack's own objective
  from 4 (resp. 2, so longer runs) starts towards other images of the batch
  (`starts.towards_other_images`; the latent attack's start 0 stays the target-directed one);
* "apgd_msssim" (1/4): APGD on the reported metric, MS-SSIM in the paper's convention
  (`surrogates.LatentMsssim` / `MaxDamageMsssim`; latent: from the target-directed start);
* "pgd" (1/2): today's PGD (`pgd.py`) at the member's share: 1 restart, 8 exploration
  starts, S refinement steps with S a multiple of 8 and 2 S <= share (it spends 2 S);
* "apgd_cosine" (1/4): APGD on the scale-free cosine distance of latents
  (`surrogates.LatentCosine` / `MaxDamageCosine`).

Defaults: maximum damage "apgd", "apgd_towards", "apgd_towards_long" (125 + 250 + 125 of
500); the latent attack "apgd", "apgd_msssim", "pgd" (200 + 200 + 400 of 800).
Objectives other than the paper's two get "apgd" and "pgd". Every member runs on all
images; per image the result is the member whose adversarial image is the strongest
attack on the attack's OWN loss (`Objective.better`; ties go to the earlier member in
`MEMBERS` order), and the returned loss is that loss at exactly the returned image. The
run also records (`AttackResult.info`):

* "gradient_evaluations_per_image": what all members spent, summed (<= the budget);
* "member_wins": member -> images won under that rule; "member_gradient_evaluations";
* "worst_by_msssim": the other rule, per image the member whose image gives the strongest
  reported MS-SSIM (paper convention, `Objective.compared_with` vs f(g(x_a)), lower is
  stronger when the attack maximises its loss, higher when it minimises): its "metric"
  name, the "mean" over images and its "member_wins"; and "msssim_of_returned": the mean
  MS-SSIM of the returned images. (Without decode noise, i.e. the strong protocol's
  reported value; None where MS-SSIM does not exist: images below 16x16, objectives
  without `compared_with`.)
* "nan_fallback": member -> images for which it returned a NaN loss (its own objective or
  the attack's at its image); those images fall back to the other members. An image for
  which every member failed gets a NaN loss (the runner then raises DataError).

The members' specification, the budget split and the default budget are in `budgets.py`
(TensorFlow-free, used by `config.py` when a config is built); they are re-exported here.
"""

from __future__ import annotations

import numpy as np

from robust_dae_tf.attacks.budgets import (  # noqa: F401  (re-exported)
    APGD_MIN_EVALUATIONS, DEFAULT_BUDGET_FRACTION, DEFAULT_MEMBERS, GENERIC_MEMBERS, MEMBER_NAMES, MEMBERS, PGD_MIN_EVALUATIONS,
    Member, allocate, check, default_members, minimum_evaluations, select)
from robust_dae_tf.attacks import budgets


def _has_start_direction(objective) -> bool:
    from robust_dae_tf.attacks.objectives import Objective  # pylint: disable=import-outside-toplevel

    return type(objective).start_directions is not Objective.start_directions


def restarts_for(member: Member, objective) -> int:
    """APGD starts per image of `member` on `objective`: `member.restarts`, except for random
    starts on an objective with a start direction (the latent attack): one, the
    target-directed start."""
    if member.starts == "random" and _has_start_direction(objective):
        return 1
    return member.restarts


def start_directions(member: Member, objective, images, targets, seed: int):
    """The directed starts of `member`'s APGD run: None, [N, H, W, C] (start 0) or
    [k, N, H, W, C] (starts 0 .. k-1): the objective's own start direction first (if any),
    then for `starts="towards"` directions towards other images of the batch."""
    from robust_dae_tf.attacks.starts import directed_starts  # pylint: disable=import-outside-toplevel

    own = objective.start_directions(images, targets)
    towards = restarts_for(member, objective) - (own is not None) if member.starts == "towards" else 0
    return directed_starts(own, images, towards, seed)


def geometry_starts(member: Member, model, objective, images, targets, reference, budget: float, seed: int,
                    chunk_size: int, jit_compile: bool):
    """(directions, gradient evaluations per image spent on them) of a `starts="geometry"`
    member: the objective's own start direction first (if any), then +lambda v and -lambda v
    along the top eigenvectors v of the pullback metric at each image (`geometry.py`)."""
    from robust_dae_tf.attacks import geometry  # pylint: disable=import-outside-toplevel

    own = objective.start_directions(images, targets)
    count = restarts_for(member, objective) - (own is not None)
    if count < 1:
        return own, 0
    # h(x): the attack's own reference unless it is targeted (then the image is its own target).
    own_reference = geometry.own_reference(model, objective, images) if objective.needs_targets else reference
    directions, _ = geometry.top_directions(
        model, objective, images, own_reference,
        budgets.geometry_directions(count), seed=seed, chunk_size=chunk_size, jit_compile=jit_compile)
    signed = geometry.signed_starts(directions, budget, count)
    return (signed if own is None else np.concatenate([own[None], signed])), member.start_evaluations(count)


def members_for(objective, names=None) -> tuple[Member, ...]:
    """The members that run on `objective`: the selection (None: the attack's default
    members, `DEFAULT_MEMBERS`); for objectives other than the paper's two only "apgd" and
    "pgd" of it (all of them when none of those is selected)."""
    from robust_dae_tf.attacks import objectives  # pylint: disable=import-outside-toplevel

    members = select(names, objective.name)
    if objective.name in (objectives.LATENT, objectives.MAX_DAMAGE):
        return members
    generic = tuple(m for m in members if m.name in GENERIC_MEMBERS)
    return generic or select(GENERIC_MEMBERS)


def default_evaluations(objective) -> int:
    """The ensemble's default budget for `objective` (`budgets.default_evaluations`: a
    quarter of PGD's default cost, 500 maximum damage and 800 latent)."""
    from robust_dae_tf.attacks.config import AttackConfig  # pylint: disable=import-outside-toplevel

    return budgets.default_evaluations(objective.resolve(AttackConfig()), objective.name)


def _surrogate(objective, kind):
    from robust_dae_tf.attacks import objectives, surrogates  # pylint: disable=import-outside-toplevel

    if kind is None:
        return objective
    table = {(objectives.LATENT, "msssim"): surrogates.LATENT_MSSSIM,
             (objectives.MAX_DAMAGE, "msssim"): surrogates.MAX_DAMAGE_MSSSIM,
             (objectives.LATENT, "cosine"): surrogates.LATENT_COSINE,
             (objectives.MAX_DAMAGE, "cosine"): surrogates.MAX_DAMAGE_COSINE}
    return table[(objective.name, kind)]


def run_member(member: Member, model, objective, images, targets, reference, budget: float, evaluations: int,
               config, seed: int):
    """One member on validated inputs: an `AttackResult` whose `loss` is the member's own
    objective (NaN where it never became finite) and whose info has the evaluations spent."""
    from robust_dae_tf.attacks import apgd, pgd  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.attacks.config import AttackConfig  # pylint: disable=import-outside-toplevel

    if member.optimiser == "pgd":
        steps = evaluations // 2
        pgd_config = AttackConfig(steps=steps, restarts=1, exploration_starts=8,
                                  chunk_size=config.chunk_size * config.restarts, jit_compile=config.jit_compile)
        return pgd.run(model, objective, images, reference, budget, pgd_config, seed, False,
                       directions=objective.start_directions(images, targets))
    target = _surrogate(objective, member.surrogate)
    ref = reference if target is objective else target.reference(model, images, targets)
    restarts = restarts_for(member, target)
    # The same rows per compiled call as the config's memory bound (chunk_size x restarts).
    chunk = max(1, config.chunk_size * config.restarts // restarts)
    if member.starts == "geometry":
        directions, spent = geometry_starts(member, model, target, images, targets, ref, budget, seed, chunk,
                                            config.jit_compile)
    else:
        directions, spent = start_directions(member, target, images, targets, seed), 0
    result = apgd.run(model, target, images, ref, budget, evaluations - spent, seed, chunk, config.jit_compile,
                      directions=directions, restarts=restarts)
    result.info["gradient_evaluations_per_image"] += spent
    return result


def _reported_msssim(model, objective, images, targets, clean_rec, adversarial):
    """[N] reported MS-SSIM of the adversarial images, or None when it does not exist here
    (images below MS-SSIM's 16x16, or an objective without `compared_with`)."""
    from robust_dae_tf.attacks.measures import reconstruct_and_msssim  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.errors import DataError  # pylint: disable=import-outside-toplevel

    try:
        return reconstruct_and_msssim(model, objective.compared_with(images, targets, clean_rec), adversarial)
    except (DataError, NotImplementedError):
        return None


def run(model, objective, images, targets, reference, budget: float, config, seed: int, members=None):
    """The ensemble on validated inputs (`runner.run_validated`): images [N, H, W, C] in
    [0, 1], targets (or None), the objective's reference, a config resolved for the
    objective and model (its `gradient_evaluations` set). `members` overrides the
    selection (a sequence of `Member`; tests). Returns an `AttackResult` (module docstring)."""
    from robust_dae_tf.attacks.config import AttackResult  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.attacks.measures import attack_loss, reconstruct  # pylint: disable=import-outside-toplevel

    members = tuple(members) if members is not None else members_for(objective, config.ensemble_members)
    budgets = allocate(int(config.gradient_evaluations), members)
    n = images.shape[0]
    clean_rec = reconstruct(model, images)
    losses = np.full((len(members), n), np.nan, np.float64)
    msssims = np.full((len(members), n), np.nan, np.float64)
    advs, spent, fallback = [], {}, {}
    has_msssim = True
    for index, member in enumerate(members):
        member_seed = int(np.random.SeedSequence([int(seed), 7, index]).generate_state(1)[0])
        result = member.run(model, objective, images, targets, reference, budget, budgets[member.name], config,
                            member_seed) if callable(getattr(member, "run", None)) else run_member(
            member, model, objective, images, targets, reference, budget, budgets[member.name], config, member_seed)
        adversarial = np.asarray(result.adversarial, np.float32)
        own = np.asarray(result.loss, np.float64)
        main = own if member.surrogate is None else attack_loss(model, objective, adversarial, reference)
        failed = ~(np.isfinite(own) & np.isfinite(main))
        losses[index] = np.where(failed, np.nan, main)
        msssim = _reported_msssim(model, objective, images, targets, clean_rec, adversarial)
        has_msssim = has_msssim and msssim is not None
        if msssim is not None:
            msssims[index] = np.where(failed, np.nan, msssim)
        advs.append(adversarial)
        spent[member.name] = float(result.info.get("gradient_evaluations_per_image", 0))
        fallback[member.name] = int(failed.sum())
    winner = _winners(losses, objective.ranking_key)
    msssim_key = (lambda v: v) if objective.maximize else (lambda v: -v)  # stronger first
    winner_msssim = _winners(msssims, msssim_key)
    cols = np.arange(n)
    ok = winner >= 0
    pick = np.where(ok, winner, 0)
    adversarial = np.stack(advs)[pick, cols]
    loss = np.where(ok, losses[pick, cols], np.nan).astype(np.float32)
    ok_m = winner_msssim >= 0
    names = [m.name for m in members]
    info = {
        "gradient_evaluations_per_image": float(sum(spent.values())),
        "rule": "per image the member with the strongest attack loss (ties: earlier member)",
        "member_wins": {name: int(np.sum(winner == i)) for i, name in enumerate(names)},
        "member_gradient_evaluations": spent,
        "msssim_of_returned": float(np.mean(msssims[pick, cols][ok])) if has_msssim and ok.any() else None,
        "worst_by_msssim": {
            "metric": objective.main_metric,
            "mean": float(np.mean(msssims[np.where(ok_m, winner_msssim, 0), cols][ok_m])),
            "member_wins": {name: int(np.sum(winner_msssim == i)) for i, name in enumerate(names)},
        } if has_msssim and ok_m.any() else None,
        "nan_fallback": fallback,
    }
    return AttackResult(adversarial, loss, info=info)


def _winners(values: np.ndarray, key) -> np.ndarray:
    """Per column the index of the first row with the best `key` (ascending = stronger)
    among finite values; -1 where every row is NaN."""
    ranked = np.where(np.isfinite(values), key(values), np.inf)
    winner = np.argmin(ranked, axis=0)  # the first of equal values
    return np.where(np.isfinite(values).any(axis=0), winner, -1)
