import json, numpy as np, itertools
d = json.load(open("benchmarks/ensemble_members/digits_members.json"))
for key, runs in d.items():
    maximize = key.startswith("max_damage")
    B = 500 if maximize else 800
    best = (lambda a: np.max(a, 0)) if maximize else (lambda a: np.min(a, 0))
    base = np.mean(runs["pgd_default"]["loss"]); base_ms = np.mean(runs["pgd_default"]["msssim"])
    print(f"== {key}: pgd_default loss {base:.4f} msssim {base_ms:.4f}")
    for name, r in runs.items():
        if name != "pgd_default": print(f"   {name:22s} {np.mean(r['loss']):.4f} {np.mean(r['msssim']):.4f}")
    # all combinations of candidate runs with total cost <= B
    names = [n for n in runs if n != "pgd_default"]
    cost = {n: int(n.split("@")[1]) for n in names}
    res = []
    for k in (1, 2, 3, 4):
        for combo in itertools.combinations(names, k):
            if sum(cost[c] for c in combo) > B: continue
            if len(set(c.split("@")[0] for c in combo)) < k: continue
            L = best(np.array([runs[c]["loss"] for c in combo]))
            ms = np.array([runs[c]["msssim"] for c in combo]); pick = (np.argmax if maximize else np.argmin)(np.array([runs[c]["loss"] for c in combo]), 0)
            res.append((np.mean(L), np.mean(ms[pick, np.arange(ms.shape[1])]), combo))
    res.sort(key=lambda t: -t[0] if maximize else t[0])
    for r in res[:6]: print(f"   combo {r[0]:.4f} ms {r[1]:.4f} {r[2]}")
