"""Chooses the ensemble's members from `measure_candidates.py`'s per-image results (issue 23, round 2).

Usage: python benchmarks/ensemble_members/select_members.py RESULTS.json [RESULTS2.json ...]

For each attack, every combination of up to 3 candidates (distinct kinds) whose summed cost
fits the budget (500 maximum damage, 800 latent) is scored by its per-image worst case on
every lambda and every results file: the gap of its mean attack loss to today's PGD default
(+ = stronger), relative to PGD's. A combination's score is its WORST gap over lambdas and
files (the target is "at least as strong in every cell"); printed: the 8 best, with their
mean reported MS-SSIM under the attack-loss rule next to PGD's.
"""

import itertools
import json
import sys

import numpy as np

BUDGET = {"max_damage": 500, "latent": 800}


def cost(name: str) -> int:
    return int(name.split("@")[1])


def kind(name: str) -> str:
    return name.split("@")[0]


def main(paths):
    data = [json.load(open(p)) for p in paths]
    for attack, budget in BUDGET.items():
        maximize = attack == "max_damage"
        cells = [(i, key, runs) for i, d in enumerate(data) for key, runs in d.items() if key.startswith(attack)]
        names = sorted(set.intersection(*[set(r) for _, _, r in cells]) - {"pgd_default"})
        names = [n for n in names if cost(n) <= budget]
        scored = []
        for k in (1, 2, 3):
            for combo in itertools.combinations(names, k):
                if sum(cost(c) for c in combo) > budget or len({kind(c) for c in combo}) < k:
                    continue
                gaps, ms_rows = [], []
                for _, _, runs in cells:
                    losses = np.array([runs[c]["loss"] for c in combo])
                    msssim = np.array([runs[c]["msssim"] for c in combo])
                    pick = (np.argmax if maximize else np.argmin)(losses, 0)
                    cols = np.arange(losses.shape[1])
                    mean = losses[pick, cols].mean()
                    base = np.mean(runs["pgd_default"]["loss"])
                    gaps.append((mean - base) / base if maximize else (base - mean) / base)
                    ms_rows.append((msssim[pick, cols].mean(), np.mean(runs["pgd_default"]["msssim"])))
                scored.append((min(gaps), gaps, ms_rows, combo))
        scored.sort(key=lambda t: -t[0])
        print(f"== {attack} (budget {budget}); cells: " + ", ".join(f"{i}:{key}" for i, key, _ in cells))
        for worst, gaps, ms_rows, combo in scored[:8]:
            print(f"  worst {100 * worst:+.2f}%  cost {sum(cost(c) for c in combo):4d}  {' + '.join(combo)}")
            print("      gaps " + " ".join(f"{100 * g:+.2f}%" for g in gaps)
                  + " | MS-SSIM (ens/pgd) " + " ".join(f"{a:.3f}/{b:.3f}" for a, b in ms_rows))


if __name__ == "__main__":
    main(sys.argv[1:])
