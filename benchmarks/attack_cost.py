"""The cost of one gradient evaluation on the CelebA conv net: attacks vs a training step vs the CPU's peak.

    python benchmarks/attack_cost.py --images_dir=../shared/data/celeba_subset/img_align_celeba \
        --output=attack_cost.json                      # ~5 min of CPU on an idle 2-core machine

NOT part of the `robust_dae_tf` package (nothing imports it). Issue 23, item 6.

Workload. The model is built the way training builds it: `configs/celeb_a.py` (conv nets,
128/256/512/1024 filters, latent 64; `--variant` defaults to the config's, "robust") and
`fit.compile_model(config, (64, 64, 3), tf.distribute.get_strategy())`, i.e. the
config's seed-0 random initial weights (throughput does not depend on the weights), or
trained ones with `--checkpoint` (a training checkpoint prefix or its directory; only the
model's variables are read). The images are B (`--batch_size`, 32) CelebA images
(`--images_dir`: the first B JPEGs by name, preprocessed as the data pipeline does:
centre crop 140, resized to 64x64x3) or, without it, uniform random pixels. The latent
attack's targets are the same images shifted by one (image i aims at image i+1).

What is timed (every time is the median of `--repeats` calls, after one untimed warm-up
call that traces the graphs; nothing here is XLA-compiled, as the library does for conv
nets: the attack's `default_jit_compile` and training's `jit_compile_default` are off
for "conv"; the Keras model carries no run metadata, so the attack is given
`jit_compile=False` explicitly):

1. The attacks' compiled PGD loop: `robust_dae_tf.attacks.run(objective, model, images,
   lambda, AttackConfig(steps=S, restarts=1, exploration_starts=1, jit_compile=False))`,
   one phase of S steps on the B images in one compiled call, for the latent attack
   (encoder only) and maximum damage (encoder + decoder). One loop step is one gradient
   evaluation per image (forward and backward to the input). A call also does fixed work
   outside the loop (the reference g(x) or f(g(x)), the eager input-gradient check, one
   last forward pass, the NumPy bookkeeping), so each attack is timed at S (`--steps`) and
   at S0 (`--short_steps`) steps and

       loop time per gradient evaluation  t_eval = (t(S) - t(S0)) / (S - S0)
       loop throughput                    B / t_eval   images x gradient evaluations / s

   The end-to-end rate B * S / t(S) is reported as well.
2. A training step: Keras' compiled train function (`model.make_train_function()`,
   steps_per_execution 1) on the same batch, repeated: images / s = B / t_step. For the
   robust variant a step is: encoder on x, the FGSM example (encoder forward and input
   gradient), encoder on x_adv, decoder, and the backward pass of the whole loss to the
   weights, plus Adam.
3. The CPU's measured peak: a chain of `--matmul_repeats` N x N matmuls (`--matmul_size`,
   2048) in one tf.function, 2 N^3 FLOPs each, in float32 and in bfloat16.
4. bfloat16: the same model built under `keras.mixed_precision.set_global_policy(
   "mixed_bfloat16")` (the global policy is restored afterwards), with the float32
   model's weights copied in (`set_weights`: identical weights; variables stay float32,
   the hidden layers compute in bfloat16, the latent and output layers in float32), timed
   the same way. Attack loss agreement: both attacks at lambda = `--budget` (1.0), seed
   `--seed`, S steps, from both models; rel. difference = (mean loss bf16 - mean loss fp32)
   / mean loss fp32, (a) each run's own reported loss, and (b) the bf16 run's
   adversarial images re-scored by the float32 model (what the float32 evaluation would
   report for the bf16 attack's images). Issue 23's bar for bf16: within 0.5 %. For scale,
   the float32 attacks are also run from seed + 1 (the spread between two seeds of the
   same float32 attack; a bf16 difference inside it is not distinguishable from a reseed).
   The meta block records the load average at the start and the end and the cores this
   process used on average (~2 on an idle 2-core machine; less means it shared the CPU).
5. What `--attack_precision=auto` chooses on this CPU (with bfloat16 in --precisions): the
   library's own choice (`attacks.precision.search_precision`) for the latent attack on the
   float32 model and these images, with its measurement (result key "auto").

FLOPs (multiply-add = 2 FLOPs; per image; BatchNorm, ReLU, the sigmoid, the projection
and other elementwise work are not counted), from the layers of the built nets:

    Conv2D            forward F = 2 * H_out * W_out * k * k * C_in * C_out
    Conv2DTranspose   forward F = 2 * H_in  * W_in  * k * k * C_in * C_out
    Dense             forward F = 2 * n_in * n_out
    backward: input (data) gradient = F, weight gradient = F, per layer

so with F_e, F_d the encoder's and decoder's forward FLOPs and F_e1 the first conv's:

    latent attack, one gradient evaluation     2 F_e                (forward + data gradient;
    maximum damage, one gradient evaluation    2 (F_e + F_d)         no weight gradients)
    training step, gmm_dae                     3 F_e + 3 F_d - F_e1  (forward + data + weight
    training step, augmented / robust          8 F_e + 3 F_d - 2 F_e1  gradients; + FGSM 2 F_e,
                                                                   encoder on x_adv)

Training's backward is thus ~2x its forward, the attack's ~1x (only d needs a gradient).
That assumes TensorFlow prunes the weight-gradient ops the attack does not use; if it did
not, the attack's real work would be 1.5x the count above and its fraction of peak 1.5x
higher than reported. Fraction of peak = counted FLOPs / time / measured float32 matmul
FLOP/s (the bf16 loops also against the bfloat16 matmul peak).

Output: a Markdown table on stdout (CPU name, TensorFlow version, B, S, every number) and,
with `--output`, the same results as JSON (written atomically).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import importlib.util
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, REPO)

import robust_dae_tf  # noqa: E402,F401 - first: keeps TensorFlow's start-up notes off stderr (tf_startup)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from robust_dae_tf import attacks, config_lib, fileio, fit  # noqa: E402
from robust_dae_tf.machine import cpu_name  # noqa: E402
from robust_dae_tf.attacks import precision as attack_precision  # noqa: E402
from robust_dae_tf.data import batches, specs  # noqa: E402

ATTACKS = (attacks.LATENT, attacks.MAX_DAMAGE)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--batch_size", type=int, default=32, help="B: images per attack call and training step")
    p.add_argument("--steps", type=int, default=12, help="S: PGD steps of the timed (and compared) attack calls")
    p.add_argument("--short_steps", type=int, default=2, help="S0: PGD steps of the second timing (fixed work)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    p.add_argument("--budget", type=float, default=1.0, help="L2 budget lambda of the attacks")
    p.add_argument("--seed", type=int, default=0, help="attack seed (random starts)")
    p.add_argument("--variant", default=None, help="model.variant (default: the config's)")
    p.add_argument("--images_dir", default=None, help="CelebA img_align_celeba folder (default: random pixels)")
    p.add_argument("--checkpoint", default=None, help="training checkpoint (prefix or directory) to restore")
    p.add_argument("--matmul_size", type=int, default=2048)
    p.add_argument("--matmul_repeats", type=int, default=20, help="matmuls per timed call")
    p.add_argument("--precisions", default="float32,bfloat16", help="float32 and/or bfloat16")
    p.add_argument("--output", default=None, help="JSON results (written atomically)")
    args = p.parse_args(argv)
    if not 1 <= args.short_steps < args.steps:
        p.error("need 1 <= --short_steps < --steps")
    return args


def celeba_config(variant=None):
    spec = importlib.util.spec_from_file_location("_attack_cost_celeb_a", os.path.join(REPO, "configs", "celeb_a.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if variant:
        config.model.variant = variant
    config_lib.resolve_defaults(config)
    return config


def load_images(images_dir, n, image_shape, seed=0):
    if not images_dir:
        return np.random.default_rng(seed).uniform(0.0, 1.0, (n, *image_shape)).astype(np.float32), "uniform random pixels"
    files = sorted(glob.glob(os.path.join(images_dir, "*.jpg")))[:n]
    if len(files) < n:
        raise SystemExit(f"{images_dir} has {len(files)} JPEGs, need {n}")
    spec = specs.get_spec("celeb_a")
    images = [specs.preprocess(spec, tf.io.decode_jpeg(tf.io.read_file(f), channels=3)) for f in files]
    first, last = os.path.basename(files[0]), os.path.basename(files[-1])
    return np.asarray(batches.to_float(tf.stack(images))), f"CelebA {first}..{last} (crop 140, 64x64)"


def build_model(config, image_shape, policy=None):
    if policy is None:
        return fit.compile_model(config, image_shape, tf.distribute.get_strategy())
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        return fit.compile_model(config, image_shape, tf.distribute.get_strategy())
    finally:
        keras.mixed_precision.set_global_policy(previous)


def restore(model, path):
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not prefix:
        raise SystemExit(f"no checkpoint in {path}")
    tf.train.Checkpoint(model=model).read(prefix).expect_partial().assert_existing_objects_matched()
    return prefix


# -- FLOPs ------------------------------------------------------------------------------


def layer_flops(layer) -> int:
    """Forward FLOPs per image of one Conv2D / Conv2DTranspose / Dense layer (0 for others)."""
    if isinstance(layer, keras.layers.Conv2DTranspose):  # kernel (k, k, C_out, C_in), one scatter per input pixel
        _, h, w, _ = layer.input.shape
        return 2 * h * w * int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, _ = layer.output.shape
        return 2 * h * w * int(np.prod(layer.kernel.shape))
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(np.prod(layer.kernel.shape))
    return 0


def flop_counts(model, variant) -> dict:
    enc = [layer_flops(layer) for layer in model.encoder.layers]
    dec = [layer_flops(layer) for layer in model.decoder.layers]
    f_e, f_d = sum(enc), sum(dec)
    f_e1 = next(f for f in enc if f)
    adversarial = variant in ("augmented", "robust")
    train = 8 * f_e + 3 * f_d - 2 * f_e1 if adversarial else 3 * f_e + 3 * f_d - f_e1
    return {"encoder_forward": f_e, "decoder_forward": f_d, "first_conv_forward": f_e1,
            attacks.LATENT: 2 * f_e, attacks.MAX_DAMAGE: 2 * (f_e + f_d), "train_step": train}


# -- timing -----------------------------------------------------------------------------


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def matmul_peak(dtype, n, count, repeats):
    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((n, n)).astype(np.float32), dtype=dtype)
    b = tf.constant((rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32), dtype=dtype)

    @tf.function
    def chain(x):
        for _ in range(count):  # dependent chain: nothing to hoist or skip
            x = tf.linalg.matmul(x, b)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    chain(a).numpy()
    t, times = median_time(lambda: chain(a).numpy(), repeats)
    return {"flops_per_s": 2.0 * n ** 3 * count / t, "seconds": t, "times": times, "size": n, "count": count}


def attack_config(steps):
    return attacks.AttackConfig(steps=steps, restarts=1, exploration_starts=1, jit_compile=False)


def time_attack(model, name, images, targets, args):
    """Warm-up, then medians at S and S0 steps; returns the timings and the S-step result."""
    def call(steps):
        return attacks.run(name, model, images, args.budget, attack_config(steps), targets=targets, seed=args.seed)

    call(args.short_steps)  # traces the loop (steps is a tensor: one trace for both step counts)
    t_long, long_times = median_time(lambda: call(args.steps), args.repeats)
    t_short, short_times = median_time(lambda: call(args.short_steps), args.repeats)
    result = call(args.steps)  # untimed: the result compared between precisions (deterministic per seed)
    b = images.shape[0]
    t_eval = (t_long - t_short) / (args.steps - args.short_steps)
    return {"t_long": t_long, "t_short": t_short, "long_times": long_times, "short_times": short_times,
            "seconds_per_evaluation": t_eval, "loop_images_evals_per_s": b / t_eval,
            "end_to_end_images_evals_per_s": b * args.steps / t_long}, result


def time_training(model, images, repeats):
    ds = tf.data.Dataset.from_tensors(tf.constant(images)).repeat()
    iterator = iter(ds)
    model.make_train_function()
    train_fn = model.train_function
    train_fn(iterator)  # trace
    t, times = median_time(lambda: [float(v) for v in train_fn(iterator).values()], repeats)
    return {"seconds_per_step": t, "times": times, "images_per_s": images.shape[0] / t}


# -- report -----------------------------------------------------------------------------


def fmt(x, digits=3):
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"


def markdown(r) -> str:
    m = r["meta"]
    lines = [f"CPU: {m['cpu']}, {m['cores']} cores; TensorFlow {m['tensorflow']}, Keras {m['keras']}; "
             f"B = {m['batch_size']}, S = {m['steps']} (S0 = {m['short_steps']}), lambda = {m['budget']}, "
             f"seed {m['seed']}, {m['repeats']} repeats (median); variant {m['variant']}; weights: {m['weights']}; "
             f"images: {m['images']}; {m['date']}; load average {m['load_average_start']:.2f} at the start, "
             f"{m['load_average_end']:.2f} at the end; this process used {m['cores_used']:.2f} cores on average "
             f"({m['cpu_seconds']:.0f} s CPU in {m['wall_seconds']:.0f} s)", ""]
    peak = r["matmul"]
    lines.append("| matmul peak | GFLOP/s |")
    lines.append("|---|---|")
    for dt, v in peak.items():
        lines.append(f"| {m['matmul_size']}x{m['matmul_size']} {dt} | {fmt(v['flops_per_s'] / 1e9)} |")
    lines.append("")
    fl = r["flops"]
    lines.append(f"FLOPs per image: encoder forward {fl['encoder_forward'] / 1e9:.3f} G, decoder forward "
                 f"{fl['decoder_forward'] / 1e9:.3f} G; one gradient evaluation: latent {fl[attacks.LATENT] / 1e9:.3f} G, "
                 f"maximum damage {fl[attacks.MAX_DAMAGE] / 1e9:.3f} G; training step ({m['variant']}) "
                 f"{fl['train_step'] / 1e9:.3f} G.")
    lines.append("")
    head = ("| precision | loop | ms per image x evaluation (step) | images x evals / s (images / s) | "
            "end-to-end images x evals / s | GFLOP/s | fraction of fp32 peak | fraction of own-dtype peak | "
            "in attack evaluations (of that precision) |")
    lines += [head, "|" + "---|" * 9]
    for prec, p in r["precisions"].items():
        own = peak.get(prec, {}).get("flops_per_s")
        for name in ATTACKS:
            a = p[name]
            lines.append(f"| {prec} | {name} attack | {1e3 * a['seconds_per_evaluation'] / m['batch_size']:.2f} | "
                         f"{fmt(a['loop_images_evals_per_s'])} | {fmt(a['end_to_end_images_evals_per_s'])} | "
                         f"{fmt(a['flops_per_s'] / 1e9)} | {a['fraction_of_fp32_peak']:.1%} | "
                         f"{'-' if own is None else format(a['flops_per_s'] / own, '.1%')} | 1 |")
        t = p["train_step"]
        own_frac = "-" if own is None else format(t["flops_per_s"] / own, ".1%")
        lines.append(f"| {prec} | training step | {1e3 * t['seconds_per_step'] / m['batch_size']:.2f} | "
                     f"{fmt(t['images_per_s'])} | - | {fmt(t['flops_per_s'] / 1e9)} | {t['fraction_of_fp32_peak']:.1%} | "
                     f"{own_frac} | {t['latent_evals']:.1f} latent = {t['max_damage_evals']:.1f} max damage |")
    if "comparison" in r:
        c = r["comparison"]
        lines += ["", "| bf16 vs fp32 | latent | max damage | training step | matmul |", "|---|---|---|---|---|"]
        lines.append(f"| throughput ratio bf16 / fp32 | {c['speed_ratio'][attacks.LATENT]:.2f} | "
                     f"{c['speed_ratio'][attacks.MAX_DAMAGE]:.2f} | {c['speed_ratio']['train_step']:.2f} | "
                     f"{c['speed_ratio']['matmul']:.2f} |")
        for key, label in (("mean_loss_float32", "mean attack loss, fp32"),
                           ("mean_loss_bfloat16", "mean attack loss, bf16 (own)"),
                           ("rel_diff", "rel. difference (own loss)"),
                           ("mean_loss_bfloat16_rescored", "bf16 attack's images scored by fp32 model"),
                           ("rel_diff_rescored", "rel. difference (re-scored)"),
                           ("mean_loss_float32_next_seed", "fp32, seed + 1 (seed spread)"),
                           ("rel_diff_float32_next_seed", "rel. difference fp32 seed + 1 vs seed")):
            vals = [c[name][key] for name in ATTACKS]
            if key.startswith("rel"):
                cells = [f"{v:+.3%}" for v in vals]
            else:
                cells = [f"{v:.5g}" for v in vals]
            lines.append(f"| {label} | {cells[0]} | {cells[1]} | - | - |")
        lines.append(f"| within 0.5 % (own / re-scored) | {c[attacks.LATENT]['within_target']} | "
                     f"{c[attacks.MAX_DAMAGE]['within_target']} | - | - |")
    if "auto" in r:
        a = r["auto"]
        measured = a["precision_measurement"]
        lines += ["", f"`--attack_precision=auto` on this CPU (latent attack, its own measurement on "
                      f"{measured['images']} images): **{a['precision']}**; gradient call float32 "
                      f"{measured['float32_seconds']:.3f} s, bfloat16 {measured['bfloat16_seconds']:.3f} s, "
                      f"speed-up {measured['speedup']:.2f}x (bfloat16 needs >= {measured['min_speedup']:g}x)."]
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    config = celeba_config(args.variant)
    image_shape = specs.get_spec(config.dataset).image_shape
    images, images_note = load_images(args.images_dir, args.batch_size, image_shape)
    targets = np.roll(images, -1, axis=0)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    policies = {"float32": None, "bfloat16": "mixed_bfloat16"}
    if not precisions or any(p not in policies for p in precisions):
        raise SystemExit(f"--precisions: choose from {', '.join(policies)}")

    results = {"meta": {
        "cpu": cpu_name(), "cores": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "batch_size": args.batch_size, "steps": args.steps, "short_steps": args.short_steps, "repeats": args.repeats,
        "budget": args.budget, "seed": args.seed, "variant": config.model.variant, "images": images_note,
        "matmul_size": args.matmul_size, "image_shape": list(image_shape), "weights": "random (config seed)",
        "date": datetime.date.today().isoformat(), "command": " ".join(sys.argv),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "load_average_start": os.getloadavg()[0]}, "precisions": {}, "matmul": {}}
    print(f"# {results['meta']['cpu']}, TF {tf.__version__}; B={args.batch_size}, S={args.steps}", flush=True)

    for prec in precisions:
        dtype = tf.float32 if prec == "float32" else tf.bfloat16
        results["matmul"][prec] = matmul_peak(dtype, args.matmul_size, args.matmul_repeats, args.repeats)
        print(f"matmul {prec}: {results['matmul'][prec]['flops_per_s'] / 1e9:.1f} GFLOP/s", flush=True)

    base = build_model(config, image_shape)
    if args.checkpoint:
        results["meta"]["weights"] = f"checkpoint {restore(base, args.checkpoint)}"
    flops = flop_counts(base, config.model.variant)
    results["flops"] = flops
    peak32 = results["matmul"].get("float32", {}).get("flops_per_s")
    attack_results = {}
    for prec in precisions:
        model = base if prec == "float32" else build_model(config, image_shape, policies[prec])
        if model is not base:
            model.set_weights(base.get_weights())
        entry = {"policy": str(model.dtype_policy.name)}
        attack_results[prec] = {}
        for name in ATTACKS:
            timing, result = time_attack(model, name, images, targets if name == attacks.LATENT else None, args)
            timing["flops_per_s"] = flops[name] * args.batch_size / timing["seconds_per_evaluation"]
            timing["fraction_of_fp32_peak"] = timing["flops_per_s"] / peak32 if peak32 else None
            timing["mean_loss"] = float(np.mean(result.loss))
            if prec == "float32":  # the seed's own spread: the same attack from another seed
                other = attacks.run(name, model, images, args.budget, attack_config(args.steps),
                                    targets=targets if name == attacks.LATENT else None, seed=args.seed + 1)
                timing["mean_loss_next_seed"] = float(np.mean(other.loss))
            entry[name] = timing
            attack_results[prec][name] = result
            print(f"{prec} {name}: {timing['loop_images_evals_per_s']:.1f} images x evals/s "
                  f"(t(S)={timing['t_long']:.2f}s, t(S0)={timing['t_short']:.2f}s), mean loss {timing['mean_loss']:.5g}",
                  flush=True)
        train = time_training(model, images, args.repeats)
        train["flops_per_s"] = flops["train_step"] * args.batch_size / train["seconds_per_step"]
        train["fraction_of_fp32_peak"] = train["flops_per_s"] / peak32 if peak32 else None
        train["latent_evals"] = train["seconds_per_step"] / entry[attacks.LATENT]["seconds_per_evaluation"]
        train["max_damage_evals"] = train["seconds_per_step"] / entry[attacks.MAX_DAMAGE]["seconds_per_evaluation"]
        entry["train_step"] = train
        print(f"{prec} training step: {train['images_per_s']:.1f} images/s ({train['seconds_per_step']:.2f} s/step)",
              flush=True)
        results["precisions"][prec] = entry
        if model is not base:
            results["bf16_model"] = model  # kept for the re-scoring below (removed before writing)

    if {"float32", "bfloat16"} <= set(precisions):
        p32, p16 = results["precisions"]["float32"], results["precisions"]["bfloat16"]
        comparison = {"speed_ratio": {
            **{n: p16[n]["loop_images_evals_per_s"] / p32[n]["loop_images_evals_per_s"] for n in ATTACKS},
            "train_step": p16["train_step"]["images_per_s"] / p32["train_step"]["images_per_s"],
            "matmul": results["matmul"]["bfloat16"]["flops_per_s"] / results["matmul"]["float32"]["flops_per_s"]}}
        for name in ATTACKS:
            objective = attacks.objective(name)
            reference = np.asarray(objective.reference(base, images, targets if name == attacks.LATENT else None))
            rescored = attacks.attack_loss(base, objective, attack_results["bfloat16"][name].adversarial, reference)
            l32, l16, l16r = p32[name]["mean_loss"], p16[name]["mean_loss"], float(np.mean(rescored))
            rel, rel_r = (l16 - l32) / l32, (l16r - l32) / l32
            l32s = p32[name]["mean_loss_next_seed"]
            comparison[name] = {"mean_loss_float32": l32, "mean_loss_bfloat16": l16,
                                "mean_loss_float32_next_seed": l32s, "rel_diff_float32_next_seed": (l32s - l32) / l32,
                                "mean_loss_bfloat16_rescored": l16r, "rel_diff": rel, "rel_diff_rescored": rel_r,
                                "within_target": f"{'yes' if abs(rel) <= 0.005 else 'no'} / "
                                                 f"{'yes' if abs(rel_r) <= 0.005 else 'no'}"}
        results["comparison"] = comparison
    results.pop("bf16_model", None)
    if "bfloat16" in precisions:  # what --attack_precision=auto chooses here: the library's own measurement
        objective = attacks.objective(attacks.LATENT)
        reference = np.asarray(objective.reference(base, images, targets), np.float32)
        _, _, log = attack_precision.search_precision(objective, base, attacks.AttackConfig(precision="auto"),
                                                      images, targets, reference)
        results["auto"] = log
    results["meta"]["load_average_end"] = os.getloadavg()[0]
    cpu = time.process_time() - cpu0
    results["meta"]["cpu_seconds"] = cpu
    results["meta"]["wall_seconds"] = time.perf_counter() - wall0
    results["meta"]["cores_used"] = cpu / results["meta"]["wall_seconds"]  # ~2 when the run had both cores
    text = markdown(results)
    print("\n" + text, flush=True)
    if args.output:
        fileio.write_text_atomic(args.output, json.dumps(results, indent=2, sort_keys=True) + "\n")
    return results


if __name__ == "__main__":
    main()
