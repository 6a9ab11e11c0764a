"""Does PGD get stronger at equal cost when some exploration starts point towards other images? (seed-1 selection models)

Usage (repository root, PYTHONPATH=.): python benchmarks/ensemble_members/pgd_towards.py MODEL_DIR RESULTS.json
(RESULTS.json: measure_candidates.py's output for the same model, for PGD's default loss on the same images and seed.)
"""
import json, sys, time
import numpy as np
from robust_dae_tf import attacks, data, export
from robust_dae_tf.attacks import AttackConfig, pgd, starts
from robust_dae_tf.evaluation import robustness
model = export.load_saved_model(sys.argv[1], trust=True)
splits = data.load_splits("mnist", data_dir="../shared/data/mnist")
images, labels = data.take_arrays(splits["test"]); images = images.astype(np.float32) / 255.0
_, s, t = robustness.select_trials(labels, robustness.Protocol(num_images=100, trials=1, seed=11))
x = images[s[0]]
obj = attacks.MAX_DAMAGE_OBJECTIVE
ref = obj.reference(model, x, None)
cfg = attacks.for_model(obj.resolve(AttackConfig()), model, x.shape[1:])
store = json.load(open(sys.argv[2]))
for lam in (1.0, 3.0, 5.0):
    base = np.mean(store[f"max_damage_{lam:g}"]["pgd_default"]["loss"])
    for k in (16, 32):
        t0 = time.time()
        r = pgd.run(model, obj, x, ref, lam, cfg, 100, False, directions=starts.towards_other_images(x, k, 5))
        print(f"lambda {lam:g} pgd default {base:.4f}  with {k} of 64 exploration starts towards other images {r.loss.mean():.4f} ({100*(r.loss.mean()-base)/base:+.2f}%) {time.time()-t0:.1f}s", flush=True)
q = attacks.for_model(obj.resolve(AttackConfig(steps=96, restarts=1, exploration_starts=32)), model, x.shape[1:])
for lam in (1.0, 3.0, 5.0):
    base = np.mean(store[f"max_damage_{lam:g}"]["pgd_default"]["loss"])
    r = pgd.run(model, obj, x, ref, lam, q, 100, False, directions=starts.towards_other_images(x, 16, 5))
    print(f"lambda {lam:g} pgd default {base:.4f}  quarter-cost PGD 32 x 12 + 96 (480) with 16 starts towards {r.loss.mean():.4f} ({100*(r.loss.mean()-base)/base:+.2f}%)", flush=True)
