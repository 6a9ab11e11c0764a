"""Training throughput of our models and the baselines, with and without XLA, vs eager PyTorch.

The harness behind `bin/benchmark.py` (which defines no flags of its own and runs
`main` here); not part of the package: nothing in `robust_dae_tf` or `tests/` imports it.

    python bin/benchmark.py                        # ~2 min on an idle 2-core machine (more when busy)
    python bin/benchmark.py --steps=20 --repeats=3 --xla=off --torch=skip   # quick look
    python bin/benchmark.py --output=benchmarks/results.md                 # or .json
    python bin/benchmark.py --variants=gmm_dae,augmented,robust            # our three models only
    python bin/benchmark.py --breakdown            # + parts of the robust step and what-ifs (~5 min)

Workload: `config_lib.base_config()` with the MNIST defaults (fully connected nets
1024 -> 200 x4 -> 10, K = 10, batch 100, Adam 2e-4) on synthetic data (random
uniform uint8 images 32x32x1, 10,000 of them), fed through the real input pipeline
(`data.training_batches`: cache, per-epoch shuffle, batch, uint8 -> float, prefetch)
into `model.fit(..., steps_per_epoch=...)`, i.e. exactly the way `training.train`
drives the model. Each model is compiled like `training.train` compiles it, with
`jit_compile` False ("XLA off") or True ("XLA on") and the config's
`train.steps_per_execution` (--steps_per_execution). Every model of `--model`
(gmm_dae, augmented, robust and the six baselines) can be timed; ratios are given to
gmm_dae (the paper's target for robust) and to robust (the baselines' cost).

Methodology (see benchmarks/README.md):
* warm-up: one `fit` of --warmup_steps per model (tracing, XLA compilation) is not timed;
* a repeat is one `fit` call of --steps + 1 steps; a callback's clock runs from the end
  of its first step to the end of its last step, so fit's set-up and the first `get_next`
  (iterator creation, shuffle-buffer fill) are excluded, as they are amortised over a
  real 600-step epoch; images/s = steps * batch_size / time;
* repeats are interleaved round-robin over all configurations (A B C ... then the
  reverse order, alternately) so that drift of this shared machine hits all of them
  alike; tables give the median and the min-max over repeats, ratios are medians of
  the per-round paired ratios;
* PyTorch (benchmarks/torch_reference.py, an eager re-implementation of the same
  steps) runs in a worker subprocess that takes part in the same round-robin, so
  the two frameworks never run at the same time and never share a thread pool;
* both frameworks get the same number of threads (--threads, default: all cores):
  TensorFlow intra-op = inter-op = N, torch.set_num_threads(N) and
  torch.set_num_interop_threads(N);
* CPU time used by other processes during the timed chunks is measured from
  /proc/stat and reported, since it invalidates a comparison.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

from robust_dae_tf import config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_REFERENCE = os.path.join(REPO, "benchmarks", "torch_reference.py")
TORCH_INSTALL_HINT = "pip install torch==2.13.0"
ALL_VARIANTS = config_lib.MODELS
TORCH_VARIANTS = ("gmm_dae", "robust")
TARGET_ROBUST_RATIO = 1.8  # robust step time / gmm_dae step time, at most
TARGET_TORCH_SPEEDUP = 1.3  # torch robust step time / our robust step time, at least
IMAGE_SHAPE = (32, 32, 1)
WHATIF = "tensorflow, 1 step/call"  # --breakdown what-if rows: steps_per_execution = 1
NUM_EXAMPLES = 10000

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 80, "Timed training steps per repeat (per variant and setting).", lower_bound=1)
flags.DEFINE_integer("repeats", 10, "Interleaved repeats per variant and setting.", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 10, "Untimed steps per model before the first repeat.", lower_bound=1)
flags.DEFINE_integer("batch_size", 100, "Training batch size.", lower_bound=2)
flags.DEFINE_list("variants", list(ALL_VARIANTS), "Models to time (comma-separated): " + ", ".join(ALL_VARIANTS) + ".")
flags.DEFINE_integer(
    "steps_per_execution", config_lib.base_config().train.steps_per_execution,
    "Training steps per call into the compiled graph (the config default).", lower_bound=1,
)
flags.DEFINE_enum("xla", "both", ["both", "on", "off"], "jit_compile settings to time.")
flags.DEFINE_enum("torch", "auto", ["auto", "skip"], "auto: time the PyTorch reference if torch is installed.")
flags.DEFINE_integer("threads", os.cpu_count() or 1, "Threads for both frameworks (TF intra = inter op; torch).", lower_bound=1)
flags.DEFINE_bool(
    "breakdown",
    False,
    "Also time the parts of the robust step (encoder pass, FGSM crafting, regularizers with the prior's "
    "closed-form CDF and with TFP's MixtureSameFamily.cdf, decoder + reconstruction, Adam, raw "
    "train_function loop) in both frameworks, and the whole robust/gmm_dae steps with one step per "
    "call (steps_per_execution = 1), to show what each speed-up is worth.",
)
flags.DEFINE_string("output", None, "Also write the results to this path: .json for JSON, anything else Markdown.")


# -- load monitor ----------------------------------------------------------------------


class CpuMonitor:
    """System-wide busy CPU seconds from /proc/stat (None where it does not exist)."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def busy_seconds(self):
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / self.tick


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


_MONITOR = CpuMonitor()


def timed_chunk(run, steps, in_worker, foreign):
    """Runs run(steps) -> (seconds, worker CPU seconds) and appends to `foreign` the cores
    that OTHER processes used meanwhile: system busy time minus this process's CPU time
    minus, for chunks run in the PyTorch worker, the worker's own CPU time."""
    busy0, wall0, own0 = _MONITOR.busy_seconds(), time.perf_counter(), own_cpu_seconds()
    elapsed, worker_cpu = run(steps)
    wall = time.perf_counter() - wall0
    busy1 = _MONITOR.busy_seconds()
    if busy0 is not None and busy1 is not None and wall > 0:
        ours = own_cpu_seconds() - own0 + (worker_cpu if in_worker else 0.0)
        foreign.append((max(0.0, (busy1 - busy0) - ours), wall))
    return elapsed, worker_cpu


def load_summary(foreign):
    """(mean cores used by other processes over all chunks, max over chunks of >= 0.5 s);
    /proc/stat counts in clock ticks (10 ms), too coarse for shorter chunks."""
    if not foreign:
        return None, None
    mean = sum(cpu for cpu, _ in foreign) / sum(wall for _, wall in foreign)
    long_chunks = [cpu / wall for cpu, wall in foreign if wall >= 0.5]
    return mean, (max(long_chunks) if long_chunks else None)


# -- PyTorch worker ----------------------------------------------------------------------


class TorchWorker:
    """benchmarks/torch_reference.py --serve in a subprocess (JSON lines)."""

    def __init__(self, variants, batch_size, threads, loss_weights):
        self.proc = subprocess.Popen(
            [sys.executable, TORCH_REFERENCE, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.info = self.request(
            cmd="setup", variants=list(variants), batch_size=batch_size, threads=threads, loss_weights=loss_weights
        )

    def request(self, **payload):
        self.proc.stdin.write(json.dumps(payload) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited (status {self.proc.poll()})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "unknown error"))
        return reply

    def run(self, variant, steps):
        reply = self.request(cmd="run", variant=variant, steps=steps)
        return reply["seconds"], reply["cpu_seconds"]

    def close(self):
        try:
            self.request(cmd="quit")
        except (RuntimeError, OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def torch_status():
    """(available, reason) for the PyTorch comparison."""
    if FLAGS.torch == "skip":
        return False, "skipped (--torch=skip)"
    if importlib.util.find_spec("torch") is None:
        return False, f"skipped: PyTorch is not installed; enable it with `{TORCH_INSTALL_HINT}` (CPU build)"
    if not os.path.exists(TORCH_REFERENCE):
        return False, f"skipped: {TORCH_REFERENCE} is missing"
    return True, ""


# -- TensorFlow side ---------------------------------------------------------------------


def configure_tensorflow(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf


def synthetic_batches(batch_size):
    """Random uniform uint8 images through the real training input pipeline."""
    import numpy as np
    import tensorflow as tf

    from robust_dae_tf import data

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (NUM_EXAMPLES, *IMAGE_SHAPE), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.zeros(NUM_EXAMPLES, np.int64)})
    return data.training_batches(ds, batch_size, seed=0, start_epoch=0, num_epochs=10**6)


def build_tf_model(variant, xla, batch_size, steps_per_execution):
    import tensorflow as tf

    from robust_dae_tf import training

    config = config_lib.base_config()
    config.dataset = "mnist"
    config.model.variant = variant
    config.train.batch_size = batch_size
    config.train.jit_compile = xla
    # The loss weights are scalars that do not change the cost of a step; 10 prior batches
    # instead of 100 keep the set-up of the ~6-10 models short.
    config.loss.weight_estimation_batches = 10
    model = training.compile_model(config, IMAGE_SHAPE, tf.distribute.get_strategy(), steps_per_execution)
    model.prepare(NUM_EXAMPLES)  # as training.train does (beta-TCVAE's estimator needs N)
    return model


class TfRunner:
    def __init__(self, model, batches):
        import keras

        self.model = model
        self.batches = batches

        class StepClock(keras.callbacks.Callback):
            """Times from the end of the first train_function call to the end of the last.

            Keras calls on_train_batch_end once per `steps_per_execution` steps, with the
            index of the last step of that call."""

            def on_train_begin(self, logs=None):
                self.first_batch = None

            def on_train_batch_end(self, batch, logs=None):
                now, cpu = time.perf_counter(), own_cpu_seconds()
                if self.first_batch is None:
                    self.first_batch, self.start, self.cpu_start = batch, now, cpu
                self.last_batch, self.end, self.cpu_end = batch, now, cpu

        self.clock = StepClock()

    def run(self, steps):
        """(seconds, own CPU seconds) for `steps` steps, timed after one untimed call.

        With steps_per_execution k > 1 Keras always runs whole calls of k
        steps, so about `steps` steps (a multiple of k) are timed and scaled to `steps`."""
        per_call = int(getattr(self.model, "steps_per_execution", 1) or 1)
        timed = max(per_call, round(steps / per_call) * per_call)
        self.model.fit(self.batches, epochs=1, steps_per_epoch=timed + per_call, verbose=0, callbacks=[self.clock])
        clock = self.clock
        done = clock.last_batch - clock.first_batch
        if done != timed:
            raise RuntimeError(f"the step clock saw {done} steps instead of {timed}")
        scale = steps / timed
        return (clock.end - clock.start) * scale, (clock.cpu_end - clock.cpu_start) * scale


# -- breakdown (--breakdown) ---------------------------------------------------------------

PART_LABELS = {
    "enc_fwd": "encoder forward, N = batch",
    "enc_fwd_2n": "encoder forward, 2N in one pass (batching z and z_adv)",
    "fgsm": "FGSM crafting (random start, encoder fwd + input gradient, clip)",
    "reg_prior_cdf": "regularizers fwd+bwd (KS x2, two-sample KS, coupled cov), prior CDF as shipped (closed form)",
    "reg_mixture_cdf": "regularizers fwd+bwd, CDF by tfp MixtureSameFamily.cdf (before the closed form)",
    "dec_rec": "decoder + reconstruction loss fwd+bwd",
    "fwd_bwd": "whole robust objective fwd+bwd (no optimizer)",
    "adam": "Adam update of all weights",
    "train_function": "whole robust step, raw train_function loop (no fit)",
    "callbacks": "per-step cost of training.train's callbacks (CallbackList.on_train_batch_end)",
}


def mixture_marginal_cdf(prior):
    """The GMM marginal CDF of `prior` through tfp's MixtureSameFamily.cdf (log space and a
    logsumexp), as the package computed it before the closed form (for the breakdown)."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    marginals = tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=tf.zeros([prior.latent_dim, prior.num_modes])),
        components_distribution=tfd.Normal(loc=tf.transpose(prior.centers), scale=prior.std),
    )
    return marginals.cdf


def tf_parts(model, batches, xla):
    """name -> callable running one call of that part of the robust step (own tf.function)."""
    import tensorflow as tf

    from robust_dae_tf import adversarial, losses

    x = next(iter(batches))
    enc, dec, prior = model.encoder, model.decoder, model.prior
    z0 = enc(x)
    z_adv0 = z0 + 0.1
    uniform = tf.random.uniform(tf.shape(x), -1.0, 1.0, seed=1)
    weights = model.loss_weights
    variables = model.trainable_variables
    mixture_cdf = mixture_marginal_cdf(prior)

    class MixturePrior:
        marginal_cdf = staticmethod(mixture_cdf)
        covariance = staticmethod(prior.covariance)

    def function(fn):
        return tf.function(fn, jit_compile=xla)

    def regularizer(p, z, z_adv):
        ks = losses.adversarial_ks_loss(z, z_adv, p, weights["two_sample_ks"] / weights["ks"])  # eq. 9
        cov = losses.coupled_covariance_loss(z, z_adv, p, model.coupling)
        return weights["ks"] * ks + weights["covariance"] * cov

    def reg_grad(p):
        @function
        def run(z, z_adv):
            with tf.GradientTape() as tape:
                tape.watch([z, z_adv])
                value = regularizer(p, z, z_adv)
            return tape.gradient(value, [z, z_adv])

        return lambda: run(z0, z_adv0)

    @function
    def enc_fwd(x):
        return enc(x, training=True)

    @function
    def enc_fwd_2n(x):
        return enc(tf.concat([x, x], 0), training=True)

    @function
    def fgsm(x, z):
        delta = adversarial.random_start(x, model.epsilon, uniform)
        return adversarial.fgsm_latent_adversarial(enc, x, z, model.epsilon, model.step_size, delta, training=True)

    @function
    def dec_rec(x, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = model.reconstruction_weight * losses.reconstruction_loss(x, dec(z, training=True))
        return tape.gradient(value, [z] + dec.trainable_variables)

    @function
    def fwd_bwd(x):
        with tf.GradientTape() as tape:
            objective, _ = model.compute_terms(x, training=True, step=tf.constant(0, tf.int64), stream=0)
        return tape.gradient(objective, variables)

    grads = fwd_bwd(x)

    @function
    def adam():
        model.optimizer.apply(grads, variables)

    model.make_train_function()
    iterator = iter(batches)
    callback_list = training_callbacks(model, x)
    logs = model.train_function(iterator)  # dict of metric tensors, as fit passes them
    step = [0]

    def callbacks():
        step[0] += 1
        callback_list.on_train_batch_end(step[0], logs)

    return {
        "enc_fwd": lambda: enc_fwd(x),
        "enc_fwd_2n": lambda: enc_fwd_2n(x),
        "fgsm": lambda: fgsm(x, z0),
        "reg_prior_cdf": reg_grad(prior),
        "reg_mixture_cdf": reg_grad(MixturePrior),
        "dec_rec": lambda: dec_rec(x, z0),
        "fwd_bwd": lambda: fwd_bwd(x),
        "adam": adam,
        "train_function": lambda: model.train_function(iterator),
        "callbacks": callbacks,
    }


def training_callbacks(model, preview):
    """`training.train`'s callbacks (NaN guard, checkpoints, TensorBoard) in a CallbackList,
    set so that no checkpoint or summary falls in the timed window."""
    import atexit
    import shutil
    import tempfile

    import keras
    import tensorflow as tf

    from robust_dae_tf import callbacks as callbacks_lib

    workdir = tempfile.mkdtemp(prefix="robust_dae_benchmark_")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=1)
    never = 10**9
    callbacks = [
        callbacks_lib.NonFiniteGuard(manager.directory),
        callbacks_lib.CheckpointEvery(manager, never),
        callbacks_lib.TensorBoardLogger(os.path.join(workdir, "logs"), preview[:8].numpy(), never, never, 100),
    ]
    return keras.callbacks.CallbackList(callbacks, model=model)


def run_breakdown(xla_settings, batches, batch_size, worker, steps, repeats, foreign):
    """Times the parts interleaved; returns rows {framework, xla, part, ms_median, ms_min, ms_max}.
    Appends the other processes' CPU load of every chunk to `foreign`."""
    import numpy as np
    import tensorflow as tf

    runners = {}
    for xla in xla_settings:
        model = build_tf_model("robust", xla, batch_size, steps_per_execution=1)  # per-step parts
        for name, call in tf_parts(model, batches, xla).items():
            def run(n, call=call):
                start = time.perf_counter()
                for _ in range(n):
                    out = call()
                for t in tf.nest.flatten(out):
                    np.asarray(t)  # make sure the work is done
                return time.perf_counter() - start, 0.0  # own CPU is measured by the caller

            runners[("tensorflow", xla, name)] = run
    if worker is not None:
        for name in worker.request(cmd="parts")["parts"]:
            def run_torch(n, name=name):
                reply = worker.request(cmd="part", part=name, steps=n)
                return reply["seconds"], reply["cpu_seconds"]

            runners[("pytorch", None, name)] = run_torch
    for run in runners.values():
        run(3)
    times = {key: [] for key in runners}
    keys = list(runners)
    for r in range(repeats):
        for key in keys if r % 2 == 0 else keys[::-1]:
            elapsed, _ = timed_chunk(runners[key], steps, key[0] == "pytorch", foreign)
            times[key].append(1000 * elapsed / steps)
        print(f"  parts round {r + 1}/{repeats} done", flush=True)
    return [
        {"framework": key[0], "xla": key[1], "part": key[2], "ms_median": statistics.median(v), "ms_min": min(v), "ms_max": max(v)}
        for key, v in times.items()
    ]


def breakdown_markdown(parts, whatif_rows, xla_settings, load) -> str:
    columns = [("tensorflow", xla) for xla in xla_settings]
    if any(p["framework"] == "pytorch" for p in parts):
        columns.append(("pytorch", None))
    by_key = {(p["framework"], p["xla"], p["part"]): p for p in parts}
    head = " | ".join(f"{fw} {fmt_xla(fw, xla)} (ms)" for fw, xla in columns)
    lines = [
        "Parts of the robust step (median ms per call over interleaved repeats; min-max in brackets):",
        "",
        f"| part | {head} |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, label in PART_LABELS.items():
        cells = []
        for fw, xla in columns:
            p = by_key.get((fw, xla, name))
            cells.append("-" if p is None else f"{p['ms_median']:.2f} ({p['ms_min']:.2f}-{p['ms_max']:.2f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if load.get("parts_foreign_cores_mean") is not None:
        lines += [
            "",
            (
                f"Other processes used {load['parts_foreign_cores_mean']:.2f} cores on average while the parts "
                "were timed"
                + (
                    "."
                    if load["parts_foreign_cores_max"] is None
                    else f" (max {load['parts_foreign_cores_max']:.2f} in one chunk of >= 0.5 s)."
                )
            ),
        ]
    if whatif_rows:
        lines += [
            "",
            (
                "What-if, whole steps through model.fit with one step per call (compile(steps_per_execution=1)) "
                "instead of the shipped value:"
            ),
            "",
            (
                "| variant | XLA | steps/call | images/s (median) | ms/step | step time vs. as shipped "
                "| step time / gmm_dae (1 step/call) | speed-up vs eager PyTorch |"
            ),
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in whatif_rows:
            ratio, torch_speedup = row["ratio_to_gmm_dae"], row.get("speedup_vs_torch")
            lines.append(
                f"| {row['variant']} | {fmt_xla('tensorflow', row['xla'])} | {row['steps_per_execution']} | "
                f"{row['images_per_s_median']:.0f} | {row['ms_per_step_median']:.2f} | "
                f"{row['vs_shipped']['median']:.2f}x | "
                + ("-" if ratio is None else f"{ratio['median']:.2f}x")
                + " | "
                + ("-" if torch_speedup is None else f"{torch_speedup['median']:.2f}x")
                + " |"
            )
    return "\n".join(lines) + "\n"


# -- measurement -------------------------------------------------------------------------


def summarize(seconds, steps, batch_size):
    rates = [steps * batch_size / s for s in seconds]
    return {
        "images_per_s_median": statistics.median(rates),
        "images_per_s_min": min(rates),
        "images_per_s_max": max(rates),
        "ms_per_step_median": 1000 * statistics.median(seconds) / steps,
        "seconds": seconds,
    }


def paired_ratio(numerator, denominator):
    """Median and range of per-round ratios numerator[i] / denominator[i]."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": ratios}


def fmt_xla(impl, xla):
    if impl == "pytorch":
        return "eager"
    return "on" if xla else "off"


def markdown(results) -> str:
    meta = results["meta"]
    lines = [
        (
            f"Date {meta['date']}, {meta['cpu']} x {meta['cpu_count']} cores, threads {meta['threads']} per "
            f"framework; TF {meta['tensorflow']}, Keras {meta['keras']}, torch {meta['torch'] or 'not used'}; "
            f"batch {meta['batch_size']}, {meta['steps']} timed steps x {meta['repeats']} interleaved repeats, "
            f"{meta['steps_per_execution']} steps per call (TensorFlow)."
        ),
        "",
        "| implementation | model | XLA | images/s (median) | spread (min-max) | ms/step | step time / gmm_dae | step time / robust |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rows"]:
        ratio = row.get("ratio_to_gmm_dae")
        ratio_text = "-" if ratio is None else f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
        robust = row.get("ratio_to_robust")
        robust_text = "-" if robust is None else f"{robust['median']:.2f}x ({robust['min']:.2f}-{robust['max']:.2f})"
        lines.append(
            f"| {row['implementation']} | {row['variant']} | {fmt_xla(row['implementation'], row['xla'])} | "
            f"{row['images_per_s_median']:.0f} | {row['images_per_s_min']:.0f}-{row['images_per_s_max']:.0f} | "
            f"{row['ms_per_step_median']:.2f} | {ratio_text} | {robust_text} |"
        )
    lines.append("")
    lines += results["target_lines"]
    load = results["load"]
    if load.get("foreign_cores_mean") is not None:
        lines.append("")
        lines.append(
            f"Other processes used {load['foreign_cores_mean']:.2f} cores on average during the timed chunks"
            + ("." if load["foreign_cores_max"] is None else f" (max {load['foreign_cores_max']:.2f} in one chunk).")
            + (" CAUTION: the machine was not idle, so these numbers are noisy; PyTorch with several threads suffers "
               "most (OpenMP threads wait for descheduled ones): rerun when idle, or compare with --threads=1." if load["foreign_cores_mean"] > 0.25 else "")
        )
    if results["torch_note"]:
        lines.append("")
        lines.append(f"PyTorch comparison {results['torch_note']}.")
    return "\n".join(lines) + "\n"


def write_atomic(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; flags are written --name=value.")
    variants = [v for v in ALL_VARIANTS if v in FLAGS.variants]
    unknown = sorted(set(FLAGS.variants) - set(ALL_VARIANTS))
    if unknown or not variants:
        raise app.UsageError(f"--variants: unknown {unknown}; choose from {', '.join(ALL_VARIANTS)}.")
    xla_settings = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.xla]
    steps, repeats, batch_size, threads = FLAGS.steps, FLAGS.repeats, FLAGS.batch_size, FLAGS.threads
    use_torch, torch_note = torch_status()
    if not use_torch:
        print(f"PyTorch comparison {torch_note}.", flush=True)

    tf = configure_tensorflow(threads)
    import keras

    started = time.perf_counter()
    print(f"Building {len(variants) * len(xla_settings)} models (TF {tf.__version__}, {threads} threads)...", flush=True)
    batches = synthetic_batches(batch_size)
    runners = {}  # (implementation, variant, xla) -> callable(steps) -> (seconds, cpu seconds)
    loss_weights = None
    for xla in xla_settings:
        for variant in variants:
            model = build_tf_model(variant, xla, batch_size, FLAGS.steps_per_execution)
            loss_weights = loss_weights or dict(model.loss_weights)
            runners[("tensorflow", variant, xla)] = TfRunner(model, batches).run
    if FLAGS.breakdown and FLAGS.steps_per_execution != 1:  # what-if: one step per call
        for xla in xla_settings:
            for variant in ("gmm_dae", "robust"):
                if variant in variants:
                    model = build_tf_model(variant, xla, batch_size, steps_per_execution=1)
                    runners[(WHATIF, variant, xla)] = TfRunner(model, batches).run

    worker = None
    torch_version = None
    if use_torch:
        try:
            worker = TorchWorker([v for v in TORCH_VARIANTS if v in variants], batch_size, threads, loss_weights)
            torch_version = worker.info["torch_version"]
            for variant in TORCH_VARIANTS:
                if variant in variants:
                    runners[("pytorch", variant, None)] = lambda n, v=variant: worker.run(v, n)
        except (OSError, RuntimeError, ValueError) as err:
            torch_note = f"skipped: the PyTorch worker failed ({err})"
            worker = None

    parts = []
    try:
        print("Warming up (tracing / XLA compilation, not timed)...", flush=True)
        for key, run in runners.items():
            t0 = time.perf_counter()
            run(FLAGS.warmup_steps)
            print(f"  {key[0]:10s} {key[1]:9s} {fmt_xla(key[0], key[2]):5s} warm-up {time.perf_counter() - t0:5.1f} s", flush=True)

        seconds = {key: [] for key in runners}
        foreign, parts_foreign = [], []
        keys = list(runners)
        print(f"Timing {repeats} interleaved repeats of {steps} steps...", flush=True)
        for r in range(repeats):
            for key in keys if r % 2 == 0 else keys[::-1]:
                elapsed, _ = timed_chunk(runners[key], steps, key[0] == "pytorch", foreign)
                seconds[key].append(elapsed)
            print(f"  round {r + 1}/{repeats} done ({time.perf_counter() - started:.0f} s)", flush=True)
        if FLAGS.breakdown:
            print("Timing the parts of the robust step (--breakdown)...", flush=True)
            parts = run_breakdown(xla_settings, batches, batch_size, worker, steps, repeats, parts_foreign)
    finally:
        if worker is not None:
            worker.close()

    rows, whatif_rows = [], []
    for key, secs in seconds.items():
        impl, variant, xla = key
        row = {"implementation": impl, "variant": variant, "xla": xla, **summarize(secs, steps, batch_size)}
        base = seconds.get((impl, "gmm_dae", xla))
        row["ratio_to_gmm_dae"] = paired_ratio(secs, base) if base is not None else None
        robust = seconds.get((impl, "robust", xla))
        row["ratio_to_robust"] = paired_ratio(secs, robust) if robust is not None and variant != "robust" else None
        if impl == WHATIF:
            row["steps_per_execution"] = 1
            row["vs_shipped"] = paired_ratio(secs, seconds[("tensorflow", variant, xla)])
            torch_secs = seconds.get(("pytorch", variant, None))
            row["speedup_vs_torch"] = paired_ratio(torch_secs, secs) if torch_secs is not None else None
            whatif_rows.append(row)
        else:
            rows.append(row)

    target_lines = []
    for xla in xla_settings:
        key, base = ("tensorflow", "robust", xla), ("tensorflow", "gmm_dae", xla)
        if key in seconds and base in seconds:
            ratio = paired_ratio(seconds[key], seconds[base])
            verdict = "PASS" if ratio["median"] <= TARGET_ROBUST_RATIO else "FAIL"
            target_lines.append(
                f"- Target robust/gmm_dae step time <= {TARGET_ROBUST_RATIO}x, XLA {fmt_xla('tensorflow', xla)}: "
                f"{ratio['median']:.2f}x (rounds {ratio['min']:.2f}-{ratio['max']:.2f}) **{verdict}**"
            )
    torch_key = ("pytorch", "robust", None)
    for xla in xla_settings:
        key = ("tensorflow", "robust", xla)
        if key in seconds and torch_key in seconds:
            speedup = paired_ratio(seconds[torch_key], seconds[key])
            verdict = "PASS" if speedup["median"] >= TARGET_TORCH_SPEEDUP else "FAIL"
            target_lines.append(
                f"- Target ours >= {TARGET_TORCH_SPEEDUP}x faster than eager PyTorch (robust step), XLA "
                f"{fmt_xla('tensorflow', xla)}: {speedup['median']:.2f}x "
                f"(rounds {speedup['min']:.2f}-{speedup['max']:.2f}) **{verdict}**"
            )
    if torch_key not in seconds:
        reason = f"PyTorch comparison {torch_note}" if worker is None else "it needs robust in --variants"
        target_lines.append(f"- Target ours >= {TARGET_TORCH_SPEEDUP}x faster than eager PyTorch: not measured ({reason}).")

    load = dict(zip(("foreign_cores_mean", "foreign_cores_max"), load_summary(foreign)))
    load.update(zip(("parts_foreign_cores_mean", "parts_foreign_cores_max"), load_summary(parts_foreign)))
    results = {
        "meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "torch": torch_version,
            "python": platform.python_version(),
            "batch_size": batch_size,
            "steps": steps,
            "repeats": repeats,
            "warmup_steps": FLAGS.warmup_steps,
            "steps_per_execution": FLAGS.steps_per_execution,
        },
        "rows": rows,
        "target_lines": target_lines,
        "load": load,
        "torch_note": torch_note if worker is None else "",
        "breakdown": {"parts": parts, "whatif": whatif_rows} if FLAGS.breakdown else None,
    }
    results["meta"]["total_seconds"] = time.perf_counter() - started
    text = markdown(results)
    if FLAGS.breakdown:
        text += "\n" + breakdown_markdown(parts, whatif_rows, xla_settings, load)
    print()
    print(text, end="")
    print(f"\nTotal time {results['meta']['total_seconds']:.0f} s.")
    if FLAGS.output:
        if FLAGS.output.endswith(".json"):
            write_atomic(FLAGS.output, json.dumps(results, indent=2, default=float) + "\n")
        else:
            write_atomic(FLAGS.output, text)
        print(f"Results written to {FLAGS.output}.")


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
