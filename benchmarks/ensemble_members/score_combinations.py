import json, numpy as np
d = json.load(open("benchmarks/ensemble_members/digits_members.json"))
combos = {"max_damage": [("apgd_r4@125", "pgd@240", "apgd_msssim@125"), ("apgd_r4@250", "pgd@240"), ("apgd_r2@125","pgd@240","apgd_msssim@125")],
          "latent": [("apgd_r1@200", "pgd@400", "apgd_msssim@200"), ("apgd_r1@400", "pgd@400"), ("apgd_r1@200","pgd@400","apgd_cosine@200"), ("apgd_r1@200", "pgd@400", "apgd_msssim@200", "apgd_cosine@200")]}
for key, runs in d.items():
    att = "max_damage" if key.startswith("max") else "latent"; mx = att == "max_damage"
    base = np.mean(runs["pgd_default"]["loss"]); bms = np.mean(runs["pgd_default"]["msssim"])
    for c in combos[att]:
        L = np.array([runs[m]["loss"] for m in c]); M = np.array([runs[m]["msssim"] for m in c])
        pick = (np.argmax if mx else np.argmin)(L, 0); cols = np.arange(L.shape[1])
        loss = L[pick, cols].mean(); ms = M[pick, cols].mean(); msw = (M.min(0) if mx else M.max(0)).mean()
        gap = (base - loss)/base if mx else (loss - base)/base
        wins = {m: int((pick == i).sum()) for i, m in enumerate(c)}
        print(f"{key:13s} {str(c):60s} loss {loss:.4f} (pgd {base:.4f}, shortfall {100*gap:+.2f}%) msssim@loss-rule {ms:.4f} (pgd {bms:.4f}) worst-msssim {msw:.4f} wins {wins}")
