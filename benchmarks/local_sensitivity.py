"""An attack-free robustness score: the local gain of each model at each test image.

The gain is the operator norm of the Jacobian J of the map an attack compares, at the clean
image: sqrt of the top eigenvalue of the pullback metric J^T J (Khan and Storkey, arXiv
2208.03923), `robust_dae_tf.evaluation.sensitivity.local_gain` (orthogonal iteration on
gradient products, 8 gradient evaluations per image and attack). For maximum damage the map is the autoencoder f o g (the gain is how far, to
first order, the reconstruction moves per unit of L2 input change: a small attack of size
lambda moves it by about gain x lambda); for the latent attack the encoder g. Pixels in
[0, 1]; L2 norms.

Images: those `bin/evaluate.py --num_images=N --trials=1 --seed=S` attacks (its protocol's
image selection over the test split), so the per-image gains can be set against that
evaluation's per-image results (`--evaluations`: one evaluation directory per model, in the
order of --models; prints the Spearman rank correlation of the gain with the reported
MS-SSIM of each attack and budget). With two models, the paired difference of their gains.

Usage (repository root):
  python benchmarks/local_sensitivity.py --models=runs/saved_models/celeb_a_gmm_dae_s0_e20,runs/saved_models/celeb_a_robust_s0_e20 \
    --data_dir=../shared/data/celeba_subset --num_images=100 --output=local_sensitivity.json
Writes --output (JSON, atomically) with the per-image gains and the summaries it prints.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from robust_dae_tf import attacks, data, export, fileio  # noqa: E402  (before TensorFlow: start-up lines dropped)
from robust_dae_tf.evaluation.sensitivity import local_gain  # noqa: E402
from robust_dae_tf.evaluation import robustness  # noqa: E402


def summary(values):
    finite = values[np.isfinite(values)]
    return {"mean": float(finite.mean()), "median": float(np.median(finite)),
            "standard_error": float(finite.std(ddof=1) / math.sqrt(finite.size)) if finite.size > 1 else None,
            "n": int(finite.size)}


def spearman(a, b):
    from scipy import stats
    keep = np.isfinite(a) & np.isfinite(b)
    return float(stats.spearmanr(a[keep], b[keep]).statistic)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--models", required=True, help="SavedModel directories, comma separated")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--dataset", default=None, help="default: the first model's metadata")
    p.add_argument("--num_images", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--evaluations", default=None, help="bin/evaluate.py outputs, one per model (comma separated)")
    p.add_argument("--output", default=None)
    args = p.parse_args()
    paths = args.models.split(",")
    evaluations = args.evaluations.split(",") if args.evaluations else [None] * len(paths)
    if len(evaluations) != len(paths):
        sys.exit("error: --evaluations needs one directory per --models entry.")
    if args.output:
        fileio.check_writable(args.output, "--output")
    models = [export.load_saved_model(path) for path in paths]
    dataset = args.dataset or models[0].metadata.get("dataset")
    splits = data.load_splits(dataset, data_dir=args.data_dir)
    images, labels = data.take_arrays(splits["test"])
    images = images.astype(np.float32) / 255.0  # as bin/evaluate.py and bin/check_attacks.py
    _, sources, _ = robustness.select_trials(labels, robustness.Protocol(num_images=args.num_images, trials=1,
                                                                         seed=args.seed))
    x = images[sources[0]]
    out = {"images": int(len(x)), "seed": args.seed, "dataset": dataset, "models": {}}
    from robust_dae_tf.machine import cpu_name
    print(f"{dataset}: {len(x)} test images (seed {args.seed}); CPU {cpu_name()}", flush=True)
    per_model = {}
    for path, model, evaluation in zip(paths, models, evaluations):
        name = os.path.basename(os.path.normpath(path))
        entry = {}
        for attack in (attacks.MAX_DAMAGE, attacks.LATENT):
            t0 = time.time()
            g = local_gain(model, attack, x)
            entry[attack] = {"gain": g.tolist(), **summary(g), "seconds": time.time() - t0}
            line = (f"{name} {attack}: gain mean {entry[attack]['mean']:.3f} (SE {entry[attack]['standard_error']:.3f}),"
                    f" median {entry[attack]['median']:.3f}, {entry[attack]['seconds']:.1f} s")
            if evaluation:
                from robust_dae_tf.reporting import per_image
                values = per_image.load(os.path.join(evaluation, "robustness", per_image.FILE))
                metric = attacks.objective(attack).main_metric
                for budget, metrics in sorted(values.get(attack, {}).items(), key=lambda kv: float(kv[0])):
                    rho = spearman(g, np.asarray(metrics[metric])[:len(g)])
                    entry[attack][f"spearman_{metric}_{budget}"] = rho
                    line += f"; Spearman with {metric} at lambda={float(budget):g}: {rho:+.2f}"
            print(line, flush=True)
            per_model.setdefault(attack, []).append(g)
        out["models"][name] = entry
    if len(paths) == 2:
        from robust_dae_tf.reporting import paired_difference
        for attack, (a, b) in per_model.items():
            stats = paired_difference(a, b, higher_is_more_robust=False)
            out.setdefault("paired", {})[attack] = stats
            print(f"paired {attack} gain B - A: {stats['mean_difference']:+.3f} (SE {stats['standard_error']:.3f}); "
                  f"B lower on {stats['b_more_robust']} / {stats['n']} images", flush=True)
    if args.output:
        fileio.write_text_atomic(args.output, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
