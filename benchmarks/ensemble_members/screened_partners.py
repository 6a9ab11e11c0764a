"""Maximum damage: do starts towards the *most damaging* other images beat starts towards random ones?

For each image i the loss of eq. 13 is evaluated (forward passes only, no gradient) at every
projected start P_i(x_j - x_i), j != i, of the batch; APGD then runs from the k partners with
the highest loss, against the cyclic random partners of `starts.towards_other_images` (the
numbers of measure_candidates.py for the same model, images and seed). Conventions: pixels in
[0, 1], loss = ||f(g(x_a)) - f(g(x))||_2 per image (the report's attack loss), means over the
100 images; the screen costs N - 1 forward passes per image (~(N - 1) / 3 gradient
evaluations, printed as "+33").

Usage (repository root, PYTHONPATH=.):
  python benchmarks/ensemble_members/screened_partners.py runs/saved_models/mnist_<m>_s1_e100 runs/select/<m>_s1.json
(the JSON: measure_candidates.py's output for the same model.)
"""
import json, sys, time
import numpy as np
from robust_dae_tf import attacks, data, export  # before tensorflow: its start-up lines are dropped
import tensorflow as tf
from robust_dae_tf.attacks import apgd
from robust_dae_tf.attacks.projection import project_l2_box
from robust_dae_tf.evaluation import robustness
model = export.load_saved_model(sys.argv[1], trust=True)
store = json.load(open(sys.argv[2]))
splits = data.load_splits("mnist", data_dir="../shared/data/mnist")
images, labels = data.take_arrays(splits["test"]); images = images.astype(np.float32) / 255.0
_, s, t = robustness.select_trials(labels, robustness.Protocol(num_images=100, trials=1, seed=11))
x = images[s[0]]; n = len(x); p = int(np.prod(x.shape[1:]))
obj = attacks.MAX_DAMAGE_OBJECTIVE
ref = obj.reference(model, x, None)
def loss(xa, r):
    return obj.loss_sq(model, tf.constant(xa), tf.constant(r)).numpy()
flat = x.reshape(n, p)
for lam in (1.0, 3.0, 5.0):
    base = np.mean(store[f"max_damage_{lam:g}"]["pgd_default"]["loss"])
    # screen all partners: start P_i(x_j - x_i)
    scores = np.full((n, n), -np.inf, np.float32)
    for i in range(n):
        d = flat - flat[i]
        d = project_l2_box(d, np.broadcast_to(-flat[i], d.shape), np.broadcast_to(1 - flat[i], d.shape), lam).numpy()
        sc = loss((flat[i] + d).reshape(n, *x.shape[1:]), np.repeat(ref[i:i+1], n, 0))
        sc[i] = -np.inf
        scores[i] = sc

    for k, ev in ((4, 250), (4, 500), (8, 500), (2, 250)):
        top = np.argsort(-scores, axis=1)[:, :k].T  # [k, n]
        dirs = (x[top] - x[None]).astype(np.float32)
        t0 = time.time()
        r = apgd.run(model, obj, x, ref, lam, ev, 5, 100, False, directions=dirs, restarts=k)
        cyc = store[f"max_damage_{lam:g}"].get(f"apgd_towards:{k}@{ev}")
        cyc = np.mean(cyc["loss"]) if cyc else float("nan")
        print(f"lambda {lam:g} pgd {base:.4f} | screened {k}@{ev}+{(n-1)/3:.0f}: {r.loss.mean():.4f} ({100*(r.loss.mean()-base)/base:+.2f}%)"
              f" | cyclic {k}@{ev}: {cyc:.4f} ({100*(cyc-base)/base:+.2f}%) | best start only {np.sqrt(np.sort(scores,1)[:,-1]).mean():.4f} {time.time()-t0:.1f}s", flush=True)
