"""Per-image losses of candidate members on the digits model (not a reported model)."""
import numpy as np, time, json
from robust_dae_tf import attacks, export, data
from robust_dae_tf.evaluation import robustness
from robust_dae_tf.attacks import AttackConfig, ensemble, runner
from robust_dae_tf.attacks.ensemble import Member
m = export.load_saved_model("/tmp/ens_digits/model", trust=True)
splits = data.load_splits("digits")
images, labels = data.take_arrays(splits["test"]); images = images.astype(np.float32)/255.0
N = 40
p = robustness.Protocol(num_images=N, trials=1, seed=11)
_, s, t = robustness.select_trials(labels, p)
x, xt = images[s[0]], images[t[0]]
cfg = attacks.for_model(AttackConfig(), m, x.shape[1:])
out = {}
for obj in attacks.PAPER_OBJECTIVES:
  B = ensemble.default_evaluations(obj)
  ref = obj.reference(m, x, xt)
  clean = runner.reconstruct(m, x)
  cands = []
  for frac in (0.25, 0.5, 1.0):
    for r in (1, 2, 4):
      cands.append((Member(f"apgd_r{r}", "apgd", None, 1, r), int(B*frac)))
    cands.append((Member("pgd", "pgd", None, 1), int(B*frac) - int(B*frac) % 16))
  for frac in (0.25, 0.5):
    cands.append((Member("apgd_msssim", "apgd", "msssim", 1), int(B*frac)))
    cands.append((Member("apgd_cosine", "apgd", "cosine", 1), int(B*frac)))
  for lam in (1.0, 3.0, 5.0):
    key = f"{obj.name}_{lam:g}"; out[key] = {}
    for i, (mem, ev) in enumerate(cands):
      t0 = time.time()
      r = ensemble.run_member(mem, m, obj, x, xt, ref, lam, ev, cfg, 100 + i)
      loss = r.loss if mem.surrogate is None else runner.attack_loss(m, obj, r.adversarial, ref)
      ms = runner.reconstruct_and_msssim(m, obj.compared_with(x, xt, clean), r.adversarial)
      out[key][f"{mem.name}@{ev}"] = {"loss": [float(v) for v in loss], "msssim": [float(v) for v in ms], "sec": time.time()-t0}
      print(key, mem.name, ev, "%.4f %.4f %.1fs" % (np.mean(loss), np.mean(ms), time.time()-t0), flush=True)
    r = attacks.run(obj, m, x, lam, AttackConfig(), targets=xt, seed=7)
    ms = runner.reconstruct_and_msssim(m, obj.compared_with(x, xt, clean), r.adversarial)
    out[key]["pgd_default"] = {"loss": [float(v) for v in r.loss], "msssim": [float(v) for v in ms]}
    print(key, "pgd_default", "%.4f %.4f" % (r.loss.mean(), ms.mean()), flush=True)
    json.dump(out, open("benchmarks/ensemble_members/digits_members.json", "w"))
