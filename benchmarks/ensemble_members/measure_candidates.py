"""Per-image strength of candidate ensemble members on a model that is NOT reported (issue 23, round 2).

Usage (repository root, PYTHONPATH=.):

    python benchmarks/ensemble_members/measure_candidates.py MODEL_DIR OUT.json [N_IMAGES] [DATA_DIR]

Every candidate runs alone on the same N test images (seed 11, targets of another class) at
lambda = 1, 3, 5 for both attacks, next to today's PGD default. Per run the JSON keeps the
per-image attack loss, the reported MS-SSIM (paper convention, no decode noise), the
gradient evaluations spent and the seconds (not benchmarks when the machine is shared).
A finished run is kept in OUT.json (temp file + rename) and skipped by a rerun.

Candidates: "pgd:E,S" = PGD with 1 restart, E exploration starts of ceil(S/8) steps, then S
refinement steps (cost E ceil(S/8) + S); "apgd:R" = APGD with R random starts (the latent
attack's start 0 is the target-directed one); "apgd_towards:R" = APGD from R starts towards
other images of the batch (`towards_run`); "apgd_msssim" = APGD on the MS-SSIM surrogate; "@N" = gradient evaluations per image.
"""

import json
import os
import sys
import time

import numpy as np

from robust_dae_tf import attacks, data, export, fileio
from robust_dae_tf.attacks import AttackConfig, apgd, ensemble, pgd, runner
from robust_dae_tf.attacks.ensemble import Member
from robust_dae_tf.evaluation import robustness

MODEL, OUT = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 100
DATA_DIR = sys.argv[4] if len(sys.argv) > 4 else "../shared/data/mnist"


def candidates(objective):
    """(name, runner) pairs; runner(model, x, xt, ref, lam, seed) -> AttackResult."""
    budget = ensemble.default_evaluations(objective)  # 500 / 800
    out = []

    def pgd_run(e, s):
        cfg = AttackConfig(steps=s, restarts=1, exploration_starts=e)

        def go(m, x, xt, ref, lam, seed):
            c = attacks.for_model(objective.resolve(cfg), m, x.shape[1:])
            return pgd.run(m, objective, x, ref, lam, c, seed, False, directions=objective.start_directions(x, xt))
        return go

    def member_run(member, ev):
        def go(m, x, xt, ref, lam, seed):
            c = attacks.for_model(objective.resolve(AttackConfig()), m, x.shape[1:])
            return ensemble.run_member(member, m, objective, x, xt, ref, lam, ev, c, seed)
        return go

    # PGD shapes at about 1/4, 1/2 and 1 of the ensemble budget (cost E*ceil(S/8) + S).
    shapes = {500: [(8, 64), (16, 64), (32, 48), (16, 128), (32, 96), (64, 56), (24, 128)],
              800: [(8, 96), (16, 96), (32, 64), (16, 256), (32, 160), (64, 88), (48, 128)]}[budget]
    for e, s in shapes:
        cost = e * -(-s // 8) + s
        out.append((f"pgd:{e},{s}@{cost}", pgd_run(e, s)))
    def apgd_run(ev, r):
        def go(m, x, xt, ref, lam, seed):
            c = attacks.for_model(objective.resolve(AttackConfig()), m, x.shape[1:])
            return apgd.run(m, objective, x, ref, lam, ev, seed, max(1, c.chunk_size * c.restarts // r), c.jit_compile,
                            directions=objective.start_directions(x, xt), restarts=r)
        return go

    def towards_run(ev, r):
        """APGD from r starts towards other images of the batch: start k of image i is
        P(x_{pi_k(i)} - x_i) for a random permutation pi_k without fixed points (k = 0 of the latent
        attack: the target), ev / r evaluations each; per image the best start."""
        def go(m, x, xt, ref, lam, seed):
            from robust_dae_tf.attacks.config import AttackResult
            c = attacks.for_model(objective.resolve(AttackConfig()), m, x.shape[1:])
            rng = np.random.default_rng(seed)
            best_adv, best_loss = None, None
            for k in range(r):
                if k == 0 and objective.needs_targets:
                    direction = objective.start_directions(x, xt)
                else:
                    perm = (np.arange(len(x)) + rng.integers(1, len(x))) % len(x)
                    direction = x[perm] - x
                res = apgd.run(m, objective, x, ref, lam, ev // r, seed + k, c.chunk_size * c.restarts, c.jit_compile,
                               directions=direction, restarts=1)
                if best_loss is None:
                    best_adv, best_loss = res.adversarial.copy(), res.loss.copy()
                else:
                    better = objective.better_np(res.loss, best_loss) if hasattr(objective, "better_np") else (
                        res.loss > best_loss if objective.maximize else res.loss < best_loss)
                    best_adv[better], best_loss[better] = res.adversarial[better], res.loss[better]
            return AttackResult(best_adv, best_loss, info={"gradient_evaluations_per_image": (ev // r) * r})
        return go

    for frac in (0.25, 0.5, 1.0):
        ev = int(budget * frac)
        for r in (2, 4, 8):
            out.append((f"apgd_towards:{r}@{ev}", towards_run(ev, r)))

    def nearest_run(ev, r):
        """Latent attack: APGD from the target-directed start and r - 1 starts towards the batch
        images whose codes are nearest the target's code (no labels), ev / r evaluations each."""
        def go(m, x, xt, ref, lam, seed):
            c = attacks.for_model(objective.resolve(AttackConfig()), m, x.shape[1:])
            codes = np.asarray(m.encode(x))
            dist = np.linalg.norm(codes[None, :, :] - np.asarray(ref)[:, None, :], axis=2)  # [i, j]
            np.fill_diagonal(dist, np.inf)
            nearest = np.argsort(dist, axis=1)[:, :r - 1]  # [N, r-1]
            directions = np.concatenate([(xt - x)[None], np.moveaxis(x[nearest] - x[:, None], 1, 0)])
            return apgd.run(m, objective, x, ref, lam, ev, seed, max(1, c.chunk_size * c.restarts // r),
                            c.jit_compile, directions=directions, restarts=r)
        return go

    if objective.needs_targets:
        for ev in (400, 800, 1600):
            for r in (2, 4, 8):
                out.append((f"apgd_nearest:{r}@{ev}", nearest_run(ev, r)))
        out.append(("pgd:32,320@1600", pgd_run(32, 320)))
        out.append(("apgd:4@1600", apgd_run(1600, 4)))
        out.append(("apgd_towards:8@1600", towards_run(1600, 8)))
    else:
        out.append(("pgd:32,200@1000", pgd_run(32, 200)))
        out.append(("apgd_towards:8@1000", towards_run(1000, 8)))
        out.append(("apgd_towards:16@500", towards_run(500, 16)))
        out.append(("apgd_towards:16@250", towards_run(250, 16)))

    for frac in (0.25, 0.5, 1.0):
        ev = int(budget * frac)
        for r in (1, 4, 16):
            if ev // r >= apgd.MIN_EVALUATIONS * 4:
                out.append((f"apgd:{r}@{ev}", apgd_run(ev, r)))
    ev = budget // 4
    out.append((f"apgd_msssim@{ev}", member_run(Member("apgd_msssim", "apgd", "msssim", 1), ev)))
    return out


def main():
    model = export.load_saved_model(MODEL, trust=True)
    splits = data.load_splits("mnist", data_dir=DATA_DIR)
    images, labels = data.take_arrays(splits["test"])
    images = images.astype(np.float32) / 255.0
    _, s, t = robustness.select_trials(labels, robustness.Protocol(num_images=N, trials=1, seed=11))
    x, xt = images[s[0]], images[t[0]]
    store = json.load(open(OUT)) if os.path.exists(OUT) else {}
    clean = runner.reconstruct(model, x)
    for objective in attacks.PAPER_OBJECTIVES:
        ref = objective.reference(model, x, xt)
        runs = [("pgd_default", lambda m, x_, xt_, ref_, lam, seed: attacks.run(
            objective, m, x_, lam, AttackConfig(), targets=xt_, seed=seed))] + candidates(objective)
        for lam in (1.0, 3.0, 5.0):
            key = f"{objective.name}_{lam:g}"
            store.setdefault(key, {})
            for i, (name, go) in enumerate(runs):
                if name in store[key]:
                    continue
                t0 = time.perf_counter()
                r = go(model, x, xt, ref, lam, 100 + i)
                sec = time.perf_counter() - t0
                loss = runner.attack_loss(model, objective, r.adversarial, ref)
                ms = runner.reconstruct_and_msssim(model, objective.compared_with(x, xt, clean), r.adversarial)
                store[key][name] = {"loss": [float(v) for v in loss], "msssim": [float(v) for v in ms],
                                    "evaluations": r.info.get("gradient_evaluations_per_image"), "seconds": sec}
                print(f"{key:14s} {name:22s} loss {np.mean(loss):.4f} ms-ssim {np.mean(ms):.4f} {sec:.1f}s", flush=True)
                fileio.write_text_atomic(OUT, json.dumps(store))


if __name__ == "__main__":
    main()
