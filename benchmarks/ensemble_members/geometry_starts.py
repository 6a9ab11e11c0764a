"""Maximum damage: do starts along the top eigenvectors of the autoencoder's pullback metric help APGD?

Khan and Storkey (arXiv 2208.03923) read an encoder's local robustness from its pullback
metric J^T J (J the Jacobian at x); its top eigenvector is the input direction of largest
first-order change, the direction an optimal small attack takes. For maximum damage (eq. 13,
loss ||f(g(x + d)) - f(g(x))||_2) the relevant map is the whole autoencoder h = f o g, and
its loss_sq has gradient 2 J(x + d)^T (h(x + d) - h(x)) ~ 2 J^T J d for a small d: one
gradient evaluation of the objective is one product with J^T J. The library's member "apgd_geometry"
(`robust_dae_tf/attacks/geometry.py`: block power iteration, 8 steps, for the top 2
eigenvectors; APGD from P(+lambda v_i) and P(-lambda v_i), 4 starts; the 16 gradient
evaluations of the power iteration are paid from its budget) is run alone at 125 and 250
gradient evaluations, next to the random-start and towards-other-images candidates of
measure_candidates.py at the same budget (same model, images and seed); then the ensemble at
500 with its former maximum-damage members (apgd, apgd_towards, apgd_towards_long) and with
apgd_geometry in place of apgd (the library's per-image worst case). Conventions: pixels in
[0, 1], the report's attack loss, means over the images; "+" = stronger than PGD's default.

Usage (repository root, PYTHONPATH=.):
  python benchmarks/ensemble_members/geometry_starts.py runs/saved_models/mnist_<m>_s1_e100 runs/select/<m>_s1.json
(the JSON: measure_candidates.py's output for the same model: images seed 11, 100 images.)
"""
import json
import sys
import time

import numpy as np

from robust_dae_tf import attacks, data, export  # before tensorflow: its start-up lines are dropped
from robust_dae_tf.attacks import AttackConfig, budgets, geometry
from robust_dae_tf.evaluation import robustness

model = export.load_saved_model(sys.argv[1], trust=True)
store = json.load(open(sys.argv[2]))
splits = data.load_splits("mnist", data_dir="../shared/data/mnist")
images, labels = data.take_arrays(splits["test"])
images = images.astype(np.float32) / 255.0
_, s, _ = robustness.select_trials(labels, robustness.Protocol(num_images=100, trials=1, seed=11))
x = images[s[0]]
SEED = 5


def ensemble(members, evaluations, lam):
    config = AttackConfig(method="ensemble", gradient_evaluations=evaluations, ensemble_members=members)
    t0 = time.time()
    result = attacks.run("max_damage", model, x, lam, config, seed=SEED)
    return result, time.time() - t0


def gap(value, base):
    return f"{value:.4f} ({100 * (value - base) / base:+.2f}%)"


reference = geometry.own_reference(model, "max_damage", x)
_, ritz = geometry.top_directions(model, "max_damage", x, reference, count=2)
print(f"pullback metric of f o g at the {len(x)} images: mean top eigenvalue {ritz[0].mean():.1f}, "
      f"second {ritz[1].mean():.1f} (Ritz values after {budgets.GEOMETRY_POWER_STEPS} steps)", flush=True)

for lam in (1.0, 3.0, 5.0):
    cell = store[f"max_damage_{lam:g}"]
    base = float(np.mean(cell["pgd_default"]["loss"]))
    print(f"lambda {lam:g}: pgd default {base:.4f}", flush=True)
    for evaluations in (125, 250):
        geo, seconds = ensemble(("apgd_geometry",), evaluations, lam)
        line = f"  @{evaluations}: apgd_geometry {gap(float(geo.loss.mean()), base)} [{seconds:.1f}s]"
        for name in (f"apgd:4@{evaluations}", f"apgd_towards:4@{evaluations}"):
            if name in cell:
                line += f" | {name} {gap(float(np.mean(cell[name]['loss'])), base)}"
        print(line, flush=True)
    before, t_before = ensemble(("apgd", "apgd_towards", "apgd_towards_long"), 500, lam)
    after, t_after = ensemble(("apgd_geometry", "apgd_towards", "apgd_towards_long"), 500, lam)
    print(f"  ensemble @500 apgd + towards + towards_long: {gap(float(before.loss.mean()), base)} "
          f"wins {before.info['member_wins']} [{t_before:.1f}s]", flush=True)
    print(f"  ensemble @500 apgd_geometry + towards + towards_long: {gap(float(after.loss.mean()), base)} "
          f"wins {after.info['member_wins']}, spent {after.info['member_gradient_evaluations']} [{t_after:.1f}s]",
          flush=True)
    print(f"  per image: geometry ensemble stronger on {int(np.sum(after.loss > before.loss))}, weaker on "
          f"{int(np.sum(after.loss < before.loss))} of {len(x)}", flush=True)
