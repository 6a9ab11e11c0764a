#!/usr/bin/env python
"""Time the full robustness protocol and the speed-up of batched attacks.

Runs `robustness.evaluate_robustness` (the paper's 2 attacks x budgets x --num_images x --trials,
the paper's protocol by default: 2 x 3 x 100 x 10) on the test split and reports the
wall time, images*trials per second and the peak resident memory (RSS) of the process. Then measures the speed-up of attacking all
num_images * trials images in one batched call over attacking one image per call: one
batched maximum-damage attack at the largest budget on all images is timed, then
--sequential_n images are attacked one per call and the time is extrapolated.

    python bin/benchmark_attacks.py --model=saved_models/mnist_robust --data_dir=/path/to/mnist
    python bin/benchmark_attacks.py --model=saved_models/digits_robust --num_images=50 --trials=2
    python bin/benchmark_attacks.py --model=saved_models/mnist_robust --data_dir=... --protocol=both \
        --sequential_n=0          # the paper protocol next to the strong one

--protocol=strong|paper|both times the named evaluation protocol(s) (`robustness.Protocol`;
paper = the paper's L-BFGS-B attacker + decode noise) on the same images, one after the
other, and extrapolates each to the full 100 images x 10 trials (time is linear in the
image-trials: every image is attacked independently). A short run (e.g. --num_images=20
--trials=1) estimates the full one.

Targets: the full MNIST strong protocol with the FC model under 10 minutes on 2 CPU cores
(docs/attacks.md); the full MNIST paper protocol under 20 minutes.
"""

import json
import os
import resource
import time

from absl import flags

from robust_dae_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
cli.define_model_data_flags()
flags.DEFINE_integer("num_images", 100, "Images per trial.")
flags.DEFINE_integer("trials", 10, "Trials.")
flags.DEFINE_list("budgets", ["1", "3", "5"], "L2 budgets lambda.")
flags.DEFINE_integer("steps", None, "AttackConfig.steps (default: per attack, see attacks.DEFAULTS).")
flags.DEFINE_integer("restarts", 2, "AttackConfig.restarts.")
flags.DEFINE_integer("exploration_starts", None, "AttackConfig.exploration_starts (default: per attack).")
flags.DEFINE_bool("xla", None, "AttackConfig.jit_compile (default: as bin/evaluate.py, on for FC nets, off for conv "
                  "nets).")
flags.DEFINE_integer("chunk_size", None, "AttackConfig.chunk_size, images per compiled call (default: as "
                     "bin/evaluate.py, a ~1 GiB memory bound from the image size).")
flags.DEFINE_integer("sequential_n", 3, "Images attacked one per call to extrapolate the unbatched time (0: skip).")
flags.DEFINE_integer("seed", 0, "Protocol seed.")
flags.DEFINE_enum("protocol", "strong", ["strong", "paper", "both"], "Evaluation protocol(s) to time.")
FULL_IMAGE_TRIALS = 100 * 10  # the paper's 100 images x 10 trials
flags.DEFINE_string("output", None, "Optional JSON file for the numbers.")


def main(argv):
    from robust_dae_tf.errors import ConfigError, UserError

    if len(argv) > 1:
        raise UserError(f"unexpected arguments {argv[1:]}; flags are written --name=value (see --help).")
    cli.check_model_data_flags()
    try:
        budgets = tuple(float(b) for b in FLAGS.budgets)
    except ValueError:
        raise ConfigError(f"--budgets must be numbers separated by commas, got {','.join(FLAGS.budgets)}.") from None
    from robust_dae_tf import attacks, fileio
    from robust_dae_tf.evaluation.settings import validate_budgets

    budgets = validate_budgets(budgets)
    config = attacks.AttackConfig(steps=FLAGS.steps, restarts=FLAGS.restarts, chunk_size=FLAGS.chunk_size,
                                  exploration_starts=FLAGS.exploration_starts, jit_compile=FLAGS.xla)
    if FLAGS.output:
        fileio.check_writable(FLAGS.output, "--output")  # before the long run

    # TensorFlow from here on: every flag above fails within a second.
    import numpy as np
    import tensorflow as tf

    from robust_dae_tf.evaluation import robustness, speed
    from robust_dae_tf.attacks import paper as paper_attacker

    model, dataset, images, labels = cli.load_model_and_test_images()
    names = ("strong", "paper") if FLAGS.protocol == "both" else (FLAGS.protocol,)
    protocols = {name: robustness.Protocol(num_images=FLAGS.num_images, trials=FLAGS.trials, budgets=budgets,
                                           seed=FLAGS.seed, name=name,
                                           attack=config if name == "strong" else attacks.AttackConfig(method="paper"))
                 for name in names}
    threads = (tf.config.threading.get_intra_op_parallelism_threads(), os.cpu_count())
    out = {"model": FLAGS.model, "dataset": dataset, "cpu_count": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0], "protocols": {}}
    image_trials = FLAGS.num_images * FLAGS.trials
    for name, protocol in protocols.items():
        print(f"model {FLAGS.model} ({dataset}), protocol {name}: {FLAGS.num_images} images x {FLAGS.trials} trials "
              f"x {len(budgets)} budgets x {len(protocol.objectives)} attacks, {protocol.attack}, CPUs: {threads[1]}",
              flush=True)
        report = robustness.evaluate_robustness(model, images, labels, protocol, progress=True)
        seconds = report["timing"]["seconds"]
        full = seconds * FULL_IMAGE_TRIALS / image_trials
        # Peak resident memory of this process so far (Linux: KiB): test split + protocols so far + attacks.
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["protocols"][name] = {"protocol": report["protocol"], "timing": report["timing"],
                                  "extrapolated_seconds_100x10": full, "peak_rss_mb_so_far": peak_rss_mb}
        note = ""
        if name == "paper" and image_trials < paper_attacker.CONCURRENT_IMAGES:
            note = (f" (an upper bound: below {paper_attacker.CONCURRENT_IMAGES} image-trials the paper attacker's "
                    "batched model calls are partly empty)")
        elif name == "strong":
            note = " (includes the XLA compilation)"
        print(f"{name} protocol: {seconds:.1f} s, {report['timing']['images_x_trials_per_second']:.2f} images x "
              f"trials / s; extrapolated to {FULL_IMAGE_TRIALS} image-trials: {full:.0f} s ({full / 60:.1f} min)"
              f"{note}; peak RSS so far {peak_rss_mb:.0f} MB", flush=True)
        for objective in protocol.objectives:
            for key, entry in report[objective.name].items():
                print(f"  {objective.name:10s} lambda={key}: attack loss {entry['attack_loss']['mean']:.4f} "
                      f"+- {entry['attack_loss']['std']:.4f}, MS-SSIM {entry[objective.main_metric]['mean']:.3f}",
                      flush=True)
    if "strong" in out["protocols"]:  # the layout of earlier outputs
        out["protocol"], out["timing"] = (out["protocols"]["strong"][k] for k in ("protocol", "timing"))
    if FLAGS.sequential_n > 0:
        pool = images[np.random.default_rng(FLAGS.seed).choice(len(images), FLAGS.num_images * FLAGS.trials,
                                                               replace=len(images) < FLAGS.num_images * FLAGS.trials)]
        t0 = time.perf_counter()
        speed = speed.attack_one_at_a_time_speedup(model, pool, budget=max(budgets), config=config,
                                                        n=FLAGS.sequential_n)
        out["speedup"] = speed
        print(f"batched vs one image per call (max damage, lambda={max(budgets):g}, {speed['images']} images): "
              f"batched {speed['batched_seconds']:.1f} s, one at a time {speed['one_at_a_time_seconds_per_image']:.2f} "
              f"s/image -> {speed['one_at_a_time_seconds_extrapolated']:.0f} s extrapolated, "
              f"speed-up x{speed['speedup']:.1f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    out["load_average_1min_end"] = os.getloadavg()[0]
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if FLAGS.output:
        fileio.write_text_atomic(FLAGS.output, json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    cli.run_main(main, select_config=False)
