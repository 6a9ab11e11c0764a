"""Strength and cost of attack methods side by side (`bin/check_attacks.py`).

For every attack (objective), budget and method, one "cell": the method attacks the same
images (and targets) with the same seed stream; per cell it records the per-image attack
loss (the objective at the returned images, not squared), the per-image reported MS-SSIM
(paper convention, `Objective.compared_with` vs f(g(x_a)), no decode noise: the strong
protocol's value), the gradient evaluations per image the method spent
(`AttackResult.info`), the seconds (wall clock, this machine, compilation included) and,
for the ensemble, its log (member_wins, ...). A finished cell is written to
`<output>/cells/<attack>_<budget>_<method>.json` (temp file + rename) with a fingerprint of
everything that determines it (model, images, targets, budget, the method's config, seed),
and a rerun with the same fingerprint reuses it instead of attacking again.

"Images won" of a method in a (attack, budget): images on which its loss is the strongest
of all methods of the check (ties count for every tied method).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from robust_dae_tf import fileio
from robust_dae_tf.attacks import objectives, progress
from robust_dae_tf.attacks.config import budget_key, config_record

CELL_FORMAT = 1


def cell_path(output: str, objective, budget: float, method: str) -> str:
    return os.path.join(output, "cells", f"{objectives.objective(objective).name}_{budget_key(budget)}_{method}.json")


def run_cell(model, objective, images, targets, budget: float, config, seed: int, clean_rec=None,
             show_progress: bool = False) -> dict:
    """One cell (module docstring): {"loss", "msssim" (per image), "mean_loss",
    "mean_msssim", "gradient_evaluations_per_image", "seconds", "log"}; `show_progress`: a
    progress bar of the gradient evaluations done (`attacks.progress`)."""
    from robust_dae_tf.attacks import runner  # pylint: disable=import-outside-toplevel

    objective = objectives.objective(objective)
    t0 = time.perf_counter()
    with progress.run_bar(objective, config, images.shape[0], budget, enabled=show_progress):
        result = runner.run_validated(objective, model, images, budget, config, targets=targets, seed=seed)
    seconds = time.perf_counter() - t0
    clean_rec = runner.reconstruct(model, images) if clean_rec is None else clean_rec
    msssim = runner.reconstruct_and_msssim(model, objective.compared_with(images, targets, clean_rec),
                                           result.adversarial)
    loss = result.loss.astype(np.float64)
    return {"loss": loss.tolist(), "msssim": msssim.tolist(), "mean_loss": float(loss.mean()),
            "mean_msssim": float(msssim.mean()),
            "gradient_evaluations_per_image": result.info.get("gradient_evaluations_per_image"),
            "seconds": float(seconds), "log": result.info}


def check_attacks(model, images, targets, budgets, attack_objectives, methods: dict, output: str, seed: int = 0,
                  model_id: str = "", log=print, show_progress: bool = False) -> dict:
    """Runs every (attack, budget, method) cell, reusing finished cells in `output`.

    Args:
      images, targets: float32 [N, H, W, C] in [0, 1] (targets used by targeted attacks).
      budgets: L2 budgets (validated); attack_objectives: objectives (or names).
      methods: {method name: AttackConfig} in table order (e.g. "ensemble", "pgd", "reference").
      output: directory of the cell files; seed: base seed (cell seed = seed + 1000 b).
      model_id: what identifies the model in the fingerprint (e.g. its path and hash).
      show_progress: a progress bar within each cell (gradient evaluations done).
    Returns {attack: {budget key: {method: cell, "images_won": {method: count}}}}.
    """
    from robust_dae_tf.attacks import runner  # pylint: disable=import-outside-toplevel

    base = {"format": CELL_FORMAT, "model": model_id, "images": fileio.array_digest(images), "targets": fileio.array_digest(targets)}
    clean_rec = None
    results = {}
    total = len(budgets) * len(attack_objectives) * len(methods)
    done = 0
    for objective in attack_objectives:
        objective = objectives.objective(objective)
        results[objective.name] = {}
        for b_index, budget in enumerate(budgets):
            cells = {}
            for method, config in methods.items():
                done += 1
                path = cell_path(output, objective, budget, method)
                cell_seed = int(seed) + 1000 * b_index
                fingerprint = json.dumps({**base, "objective": objective.name, "budget": float(budget),
                                          "config": config_record(config), "seed": cell_seed}, sort_keys=True)
                cell = None
                if os.path.exists(path):
                    try:
                        with open(path) as f:
                            stored = json.load(f)
                        if stored.get("fingerprint") == fingerprint:
                            cell = stored["cell"]
                    except (OSError, ValueError, KeyError):
                        cell = None
                if cell is not None:
                    log(f"[{done}/{total}] {objective.name} lambda={budget:g} {method}: reused {path}")
                else:
                    if clean_rec is None:
                        clean_rec = runner.reconstruct(model, images)
                    log(f"[{done}/{total}] {objective.name} lambda={budget:g} {method}: attacking {len(images)} images")
                    cell = run_cell(model, objective, images, targets, budget, config, cell_seed, clean_rec,
                                    show_progress)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    fileio.write_text_atomic(path, json.dumps({"fingerprint": fingerprint, "cell": cell}))
                    log(f"    mean loss {cell['mean_loss']:.4f}, MS-SSIM {cell['mean_msssim']:.4f}, "
                        f"{cell['gradient_evaluations_per_image']:g} gradient evaluations/image, {cell['seconds']:.1f} s")
                cells[method] = cell
            losses = np.array([cells[m]["loss"] for m in methods])
            best = objective.best_np(losses, 0)
            cells["images_won"] = {m: int(np.sum(losses[i] == best)) for i, m in enumerate(methods)}
            results[objective.name][budget_key(budget)] = cells
    return results


def markdown(results: dict, methods, meta: dict) -> str:
    """The side-by-side table (one row per attack, budget and method) with the setting."""
    lines = [
        "# Attack check: strength and cost side by side",
        "",
        f"Model `{meta['model']}`, dataset `{meta['dataset']}`, {meta['num_images']} test images (targets of "
        f"another class), seed {meta['seed']}. CPU: {meta['cpu']}.",
        "",
        "Attack loss: latent lower = stronger, maximum damage higher = stronger. MS-SSIM: the reported metric "
        "(paper convention, no decode noise); latent: MS-SSIM(x_t, x~_a), higher = stronger attack; maximum "
        "damage: MS-SSIM(x~, x~_a), lower = stronger. Images won: images where the method's attack loss is the "
        "strongest of the methods (ties count for each). Seconds: wall clock, compilation included.",
        "",
        "| attack | lambda | method | mean attack loss | vs pgd | mean MS-SSIM | MS-SSIM, worst by MS-SSIM | images won | gradient evaluations / image | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per_budget in results.items():
        objective = objectives.objective(name)
        for key, cells in per_budget.items():
            pgd = cells.get("pgd")
            for method in methods:
                cell = cells[method]
                gap = ("" if pgd is None or method == "pgd"
                       else f"{-100 * objective.shortfall(cell['mean_loss'], pgd['mean_loss']):+.2f}%")
                by_msssim = (cell.get("log") or {}).get("worst_by_msssim")
                by_msssim = f"{by_msssim['mean']:.4f}" if by_msssim else ""
                lines.append(f"| {name} | {float(key):g} | {method} | {cell['mean_loss']:.4f} | {gap} "
                             f"| {cell['mean_msssim']:.4f} | {by_msssim} | {cells['images_won'][method]}/{meta['num_images']} "
                             f"| {cell['gradient_evaluations_per_image']:g} | {cell['seconds']:.1f} |")
    lines += ["", "MS-SSIM, worst by MS-SSIM: the ensemble's other rule (per image the member with the strongest "
              "reported MS-SSIM; recorded, not returned).",
              "", "\"vs pgd\": how much stronger (+) or weaker (-) the mean attack loss is than pgd's, relative to pgd's.",
              "", "Methods: " + "; ".join(f"{m}: {meta['methods'][m]}" for m in methods), "", "Command:", "", "```",
              meta["command"], "```", ""]
    return "\n".join(lines)
