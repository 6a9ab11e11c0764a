"""Training throughput of our models and the baselines, with and without XLA, vs eager PyTorch.

The harness behind `bin/benchmark.py` (which defines no flags of its own and runs
`main` here); not part of the package: nothing in `robust_dae_tf` or `tests/` imports it.

    python bin/benchmark.py                        # ~2 min on an idle 2-core machine (more when busy)
    python bin/benchmark.py --steps=20 --repeats=3 --xla=off --torch=skip   # quick look
    python bin/benchmark.py --output=benchmarks/results.md                 # or .json
    python bin/benchmark.py --variants=gmm_dae,augmented,robust            # our three models only
    python bin/benchmark.py --breakdown            # + parts of the robust step and what-ifs (~5 min)
    python bin/benchmark.py --dataset=svhn_cropped --variants=gmm_dae,robust --onednn=both   # conv nets

Workload: the config file of --dataset (configs/<dataset>.py): `mnist` (default) is the
fully connected nets 1024 -> 200 x4 -> 10, K = 10, batch 100, Adam 2e-4 on 32x32x1
images; `svhn_cropped` (32x32x3) and `celeb_a` (64x64x3) are the convolutional nets.
Data are synthetic (random uniform uint8 images of the dataset's shape, 10,000 of
them), fed through the real input pipeline
(`data.training_batches`: cache, per-epoch shuffle, batch, uint8 -> float, prefetch)
into `model.fit(..., steps_per_epoch=...)`, i.e. exactly the way `fit.train`
drives the model. Each model is compiled like `fit.train` compiles it, with
`jit_compile` False ("XLA off") or True ("XLA on") and the config's
`train.steps_per_execution` (--steps_per_execution). Every model of `--model`
(gmm_dae, augmented, robust and the six baselines) can be timed; ratios are given to
gmm_dae (the paper's target for robust) and to robust (the baselines' cost).

TensorFlow runs in worker subprocesses, one per oneDNN setting (--onednn): TensorFlow
reads TF_ENABLE_ONEDNN_OPTS once, when it is imported, so each setting needs its own
process; the parent process only schedules them (it runs no TensorFlow work).

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
  steps; conv nets in benchmarks/torch_conv_step.py) runs in a worker subprocess that
  takes part in the same round-robin, like the TensorFlow workers, so no two
  measurements run at the same time or share a thread pool;
* both frameworks get the same number of threads (--threads, default: all cores):
  TensorFlow intra-op = inter-op = N, torch.set_num_threads(N) and
  torch.set_num_interop_threads(N);
* CPU time used by other processes during the timed chunks is measured from
  /proc/stat and reported, since it invalidates a comparison.
"""

from __future__ import annotations

import datetime
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as the TensorFlow worker (`python training_benchmark.py --serve`)
    sys.path.insert(0, REPO)

from robust_dae_tf import config_lib, machine  # noqa: E402 - after the sys.path fix above

TORCH_REFERENCE = os.path.join(REPO, "benchmarks", "torch_reference.py")
TORCH_INSTALL_HINT = "pip install torch==2.13.0"
ALL_VARIANTS = config_lib.MODELS
TORCH_VARIANTS = ("gmm_dae", "robust")
TARGET_ROBUST_RATIO = 1.8  # robust step time / gmm_dae step time, at most
TARGET_TORCH_SPEEDUP = 1.3  # torch robust step time / our robust step time, at least
# --dataset: config file configs/<dataset>.py and the image shape (H, W, C) of its data.
WORKLOADS = {"mnist": (32, 32, 1), "svhn_cropped": (32, 32, 3), "celeb_a": (64, 64, 3)}
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
WHATIF = "tensorflow, 1 step/call"  # --breakdown what-if rows: steps_per_execution = 1
NUM_EXAMPLES = 10000

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 80, "Timed training steps per repeat (per variant and setting).", lower_bound=1)
flags.DEFINE_integer("repeats", 10, "Interleaved repeats per variant and setting.", lower_bound=1)
flags.DEFINE_integer("warmup_steps", 10, "Untimed steps per model before the first repeat.", lower_bound=1)
flags.DEFINE_enum("dataset", "mnist", list(WORKLOADS),
                  "Workload: the config file configs/<dataset>.py (nets, prior, FGSM budget, batch size) on synthetic "
                  "images of its shape: mnist = fully connected nets, 32x32x1; svhn_cropped (32x32x3) and celeb_a "
                  "(64x64x3) = convolutional nets.")
flags.DEFINE_integer("batch_size", None, "Training batch size (default: the config's train.batch_size).", lower_bound=2)
flags.DEFINE_enum("onednn", "on", ["on", "off", "both"],
                  f"TensorFlow's oneDNN kernels ({ONEDNN_ENV}=1/0, set for each TensorFlow worker process before it "
                  "imports TensorFlow); on = the package's default.")
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


# -- workers (TensorFlow per oneDNN setting, PyTorch) --------------------------------------


class Worker:
    """A JSON-lines worker subprocess: one request per line on stdin, one reply per line
    on stdout ({"ok": true, ...} or {"ok": false, "error": ...}); `setup` is sent first."""

    def __init__(self, argv, setup, env=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env)
        self.info = self.request(cmd="setup", **setup)

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

    def run(self, steps, **key):
        reply = self.request(cmd="run", steps=steps, **key)
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


def torch_worker(variants, batch_size, threads, loss_weights, workload):
    """benchmarks/torch_reference.py --serve: the eager PyTorch steps of `workload` (`torch_workload`)."""
    setup = dict(variants=list(variants), batch_size=batch_size, threads=threads, loss_weights=loss_weights, **workload)
    return Worker([sys.executable, TORCH_REFERENCE, "--serve"], setup)


def tensorflow_worker(onednn, setup):
    """This file run with --serve, TensorFlow imported with TF_ENABLE_ONEDNN_OPTS=1 or 0."""
    env = dict(os.environ, **{ONEDNN_ENV: "1" if onednn else "0"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return Worker([sys.executable, os.path.abspath(__file__), "--serve"], setup, env=env)


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


def workload_config(dataset):
    """The run config of configs/<dataset>.py, with the defaults that depend on other fields resolved."""
    import importlib.util as util

    spec = util.spec_from_file_location(f"_benchmark_config_{dataset}", os.path.join(REPO, "configs", f"{dataset}.py"))
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config_lib.resolve_defaults(config)
    return config


def torch_workload(dataset):
    """The settings of configs/<dataset>.py that the PyTorch reference mirrors (its `setup` request)."""
    config = workload_config(dataset)
    height, width, channels = WORKLOADS[dataset]
    return {
        "image_shape": [channels, height, width],
        "num_examples": NUM_EXAMPLES,
        "trainer_options": {
            "architecture": config.model.architecture,
            "conv_filters": list(config.model.conv_filters),
            "latent_dim": config.model.latent_dim,
            "num_modes": config.prior.num_modes,
            "reconstruction_weight": config.loss.reconstruction_weight,
            "latent_noise_std": config.loss.latent_noise_std,
            "coupling": config.loss.coupling,
            "epsilon": config.adversarial.epsilon,
            "step_size": config.adversarial.step_size,
            "learning_rate": config.train.learning_rate,
        },
    }


def synthetic_batches(batch_size, image_shape):
    """Random uniform uint8 images through the real training input pipeline."""
    import numpy as np
    import tensorflow as tf

    from robust_dae_tf import data

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (NUM_EXAMPLES, *image_shape), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.zeros(NUM_EXAMPLES, np.int64)})
    return data.training_batches(ds, batch_size, seed=0, start_epoch=0, num_epochs=10**6)


def build_tf_model(dataset, variant, xla, batch_size, steps_per_execution):
    import tensorflow as tf

    from robust_dae_tf import fit as training

    config = workload_config(dataset)
    config.model.variant = variant
    config.train.batch_size = batch_size
    config.train.jit_compile = xla
    # The loss weights are scalars that do not change the cost of a step; 10 prior batches
    # instead of 100 keep the set-up of the ~6-10 models short.
    config.loss.weight_estimation_batches = 10
    model = training.compile_model(config, WORKLOADS[dataset], tf.distribute.get_strategy(), steps_per_execution)
    model.prepare(NUM_EXAMPLES)  # as fit.train does (beta-TCVAE's estimator needs N)
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
    """`fit.train`'s callbacks (NaN guard, checkpoints, TensorBoard) in a CallbackList,
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


def run_breakdown(tf_workers, xla_settings, torch, steps, repeats, foreign):
    """Times the parts interleaved; returns rows {framework, xla, onednn, part, ms_median, ms_min, ms_max}.
    Appends the other processes' CPU load of every chunk to `foreign`."""
    runners = {}
    for onednn, worker in tf_workers.items():
        for xla in xla_settings:
            for name in worker.request(cmd="parts", xla=xla)["parts"]:
                def run_tf(n, worker=worker, xla=xla, name=name):
                    reply = worker.request(cmd="part", xla=xla, part=name, steps=n)
                    return reply["seconds"], reply["cpu_seconds"]

                runners[("tensorflow", xla, onednn, name)] = run_tf
    if torch is not None:
        for name in torch.request(cmd="parts")["parts"]:
            def run_torch(n, name=name):
                reply = torch.request(cmd="part", part=name, steps=n)
                return reply["seconds"], reply["cpu_seconds"]

            runners[("pytorch", None, None, name)] = run_torch
    for run in runners.values():
        run(3)
    times = {key: [] for key in runners}
    keys = list(runners)
    for r in range(repeats):
        for key in keys if r % 2 == 0 else keys[::-1]:
            elapsed, _ = timed_chunk(runners[key], steps, True, foreign)
            times[key].append(1000 * elapsed / steps)
        print(f"  parts round {r + 1}/{repeats} done", flush=True)
    return [
        {"framework": key[0], "xla": key[1], "onednn": key[2], "part": key[3], "ms_median": statistics.median(v),
         "ms_min": min(v), "ms_max": max(v)}
        for key, v in times.items()
    ]


# -- the TensorFlow worker (this file run with --serve) -------------------------------------


def serve_tensorflow():
    """JSON-lines worker holding the TensorFlow models of one oneDNN setting (read from the
    environment when TensorFlow is imported, i.e. fixed for this process):

    * setup {dataset, batch_size, threads, models: [[implementation, variant, xla, steps_per_execution]]}
      -> {tensorflow, keras, onednn (what TensorFlow reports), loss_weights};
    * run {implementation, variant, xla, steps} -> {seconds (step clock), cpu_seconds (this process)};
    * parts {xla} -> {parts: names}; part {xla, part, steps} -> {seconds, cpu_seconds} (--breakdown);
    * quit."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout (TensorFlow, Keras) goes to stderr, not into the replies
    state = {}
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request.pop("cmd")
        try:
            cpu0 = own_cpu_seconds()
            if cmd == "setup":
                reply = tf_setup(state, **request)
            elif cmd == "run":
                steps = int(request.pop("steps"))
                seconds, _ = state["runners"][(request["implementation"], request["variant"], request["xla"])](steps)
                reply = {"seconds": seconds}
            elif cmd == "parts":
                xla = request["xla"]
                if xla not in state["parts"]:
                    model = build_tf_model(state["dataset"], "robust", xla, state["batch_size"], steps_per_execution=1)
                    state["parts"][xla] = tf_parts(model, state["batches"], xla)  # per-step parts
                reply = {"parts": list(state["parts"][xla])}
            elif cmd == "part":
                import numpy as np
                import tensorflow as tf

                call = state["parts"][request["xla"]][request["part"]]
                start = time.perf_counter()
                for _ in range(int(request["steps"])):
                    out = call()
                for t in tf.nest.flatten(out):
                    np.asarray(t)  # make sure the work is done
                reply = {"seconds": time.perf_counter() - start}
            elif cmd == "quit":
                replies.write(json.dumps({"ok": True}) + "\n")
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
            reply = {"ok": True, "cpu_seconds": own_cpu_seconds() - cpu0, **reply}
        except Exception as err:  # noqa: BLE001 - any failure is reported to the parent, which prints it
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(reply, default=float) + "\n")


def tf_setup(state, dataset, batch_size, threads, models):
    tf = configure_tensorflow(threads)
    import keras
    from tensorflow.python.util import _pywrap_util_port

    batches = synthetic_batches(batch_size, WORKLOADS[dataset])
    runners, loss_weights = {}, {}
    for implementation, variant, xla, steps_per_execution in models:
        model = build_tf_model(dataset, variant, xla, batch_size, steps_per_execution)
        if variant == "robust" or not loss_weights:  # the PyTorch steps use robust's weights
            loss_weights = {k: float(v) for k, v in dict(getattr(model, "loss_weights", {}) or {}).items()}
        runners[(implementation, variant, xla)] = TfRunner(model, batches).run
    state.update(runners=runners, batches=batches, dataset=dataset, batch_size=batch_size, parts={})
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "loss_weights": loss_weights or None,
            "onednn": bool(_pywrap_util_port.IsMklEnabled())}


def breakdown_markdown(parts, whatif_rows, load) -> str:
    columns = list(dict.fromkeys((p["framework"], p["xla"], p["onednn"]) for p in parts))
    by_key = {(p["framework"], p["xla"], p["onednn"], p["part"]): p for p in parts}
    head = " | ".join(
        f"{fw} XLA {fmt_xla(fw, xla)}, oneDNN {fmt_onednn(fw, onednn)} (ms)" if fw != "pytorch" else "pytorch eager (ms)"
        for fw, xla, onednn in columns
    )
    lines = [
        "Parts of the robust step (median ms per call over interleaved repeats; min-max in brackets):",
        "",
        f"| part | {head} |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, label in PART_LABELS.items():
        cells = []
        for fw, xla, onednn in columns:
            p = by_key.get((fw, xla, onednn, name))
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
                "| variant | XLA | oneDNN | steps/call | images/s (median) | ms/step | step time vs. as shipped "
                "| step time / gmm_dae (1 step/call) | speed-up vs eager PyTorch |"
            ),
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in whatif_rows:
            ratio, torch_speedup = row["ratio_to_gmm_dae"], row.get("speedup_vs_torch")
            lines.append(
                f"| {row['variant']} | {fmt_xla('tensorflow', row['xla'])} | {fmt_onednn('tensorflow', row['onednn'])} | "
                f"{row['steps_per_execution']} | "
                f"{fmt_rate(row['images_per_s_median'])} | {row['ms_per_step_median']:.2f} | "
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


def fmt_onednn(impl, onednn):
    if impl == "pytorch":
        return "-"
    return "on" if onednn else "off"


def markdown(results) -> str:
    meta = results["meta"]
    lines = [
        (
            f"Date {meta['date']}, {meta['cpu']} x {meta['cpu_count']} cores, threads {meta['threads']} per "
            f"framework; TF {meta['tensorflow']}, Keras {meta['keras']}, torch {meta['torch'] or 'not used'}; "
            f"workload {meta['dataset']} ({meta['architecture']} nets, images {'x'.join(map(str, meta['image_shape']))}), "
            f"batch {meta['batch_size']}, {meta['steps']} timed steps x {meta['repeats']} interleaved repeats, "
            f"{meta['steps_per_execution']} steps per call (TensorFlow)."
        ),
        "",
        "| implementation | model | XLA | oneDNN | images/s (median) | spread (min-max) | ms/step | step time / gmm_dae | step time / robust |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rows"]:
        ratio = row.get("ratio_to_gmm_dae")
        ratio_text = "-" if ratio is None else f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
        robust = row.get("ratio_to_robust")
        robust_text = "-" if robust is None else f"{robust['median']:.2f}x ({robust['min']:.2f}-{robust['max']:.2f})"
        lines.append(
            f"| {row['implementation']} | {row['variant']} | {fmt_xla(row['implementation'], row['xla'])} | "
            f"{fmt_onednn(row['implementation'], row['onednn'])} | "
            f"{fmt_rate(row['images_per_s_median'])} | {fmt_rate(row['images_per_s_min'])}-{fmt_rate(row['images_per_s_max'])} | "
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


def fmt_rate(images_per_s):
    """images/s: whole numbers for the fast fc steps, one decimal for the slow conv steps."""
    return f"{images_per_s:.0f}" if images_per_s >= 100 else f"{images_per_s:.1f}"


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
    if FLAGS.output:
        from robust_dae_tf import fileio

        fileio.check_writable(FLAGS.output, "--output")  # before the long run
    xla_settings = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.xla]
    onednn_settings = {"both": [True, False], "on": [True], "off": [False]}[FLAGS.onednn]
    dataset = FLAGS.dataset
    config = workload_config(dataset)
    steps, repeats, threads = FLAGS.steps, FLAGS.repeats, FLAGS.threads
    batch_size = FLAGS.batch_size or config.train.batch_size
    use_torch, torch_note = torch_status()
    if not use_torch:
        print(f"PyTorch comparison {torch_note}.", flush=True)

    started = time.perf_counter()
    models = [("tensorflow", variant, xla, FLAGS.steps_per_execution) for xla in xla_settings for variant in variants]
    if FLAGS.breakdown and FLAGS.steps_per_execution != 1:  # what-if: one step per call
        models += [(WHATIF, v, xla, 1) for xla in xla_settings for v in ("gmm_dae", "robust") if v in variants]
    setup = dict(dataset=dataset, batch_size=batch_size, threads=threads, models=models)
    print(f"Building {len(models)} models in each of {len(onednn_settings)} TensorFlow worker(s) "
          f"({dataset}, {config.model.architecture} nets, batch {batch_size}, {threads} threads)...", flush=True)
    runners = {}  # (implementation, variant, xla, onednn) -> callable(steps) -> (seconds, worker CPU seconds)
    tf_workers, info, torch, torch_version = {}, {}, None, None
    try:
        for onednn in onednn_settings:
            tf_workers[onednn] = worker = tensorflow_worker(onednn, setup)
            info = info or worker.info
            if worker.info["onednn"] != onednn:
                print(f"  note: {ONEDNN_ENV}={int(onednn)} but TensorFlow reports oneDNN "
                      f"{'on' if worker.info['onednn'] else 'off'} (this build / CPU).", flush=True)
            for implementation, variant, xla, _ in models:
                runners[(implementation, variant, xla, onednn)] = functools.partial(
                    worker.run, implementation=implementation, variant=variant, xla=xla)
        if use_torch:
            try:
                torch = torch_worker([v for v in TORCH_VARIANTS if v in variants], batch_size, threads,
                                     info["loss_weights"], torch_workload(dataset))
                torch_version = torch.info["torch_version"]
                for variant in TORCH_VARIANTS:
                    if variant in variants:
                        runners[("pytorch", variant, None, None)] = functools.partial(torch.run, variant=variant)
            except (OSError, RuntimeError, ValueError) as err:
                torch_note = f"skipped: the PyTorch worker failed ({err})"
                torch = None

        parts = []
        print("Warming up (tracing / XLA compilation, not timed)...", flush=True)
        for key, run in runners.items():
            t0 = time.perf_counter()
            run(FLAGS.warmup_steps)
            print(f"  {key[0]:10s} {key[1]:9s} XLA {fmt_xla(key[0], key[2]):5s} oneDNN {fmt_onednn(key[0], key[3]):3s} "
                  f"warm-up {time.perf_counter() - t0:5.1f} s", flush=True)

        seconds = {key: [] for key in runners}
        foreign, parts_foreign = [], []
        keys = list(runners)
        print(f"Timing {repeats} interleaved repeats of {steps} steps...", flush=True)
        for r in range(repeats):
            for key in keys if r % 2 == 0 else keys[::-1]:
                elapsed, _ = timed_chunk(runners[key], steps, True, foreign)
                seconds[key].append(elapsed)
            print(f"  round {r + 1}/{repeats} done ({time.perf_counter() - started:.0f} s)", flush=True)
        if FLAGS.breakdown:
            print("Timing the parts of the robust step (--breakdown)...", flush=True)
            parts = run_breakdown(tf_workers, xla_settings, torch, steps, repeats, parts_foreign)
    finally:
        for worker in [*tf_workers.values(), *([torch] if torch is not None else [])]:
            worker.close()

    rows, whatif_rows = [], []
    for key, secs in seconds.items():
        impl, variant, xla, onednn = key
        row = {"implementation": impl, "variant": variant, "xla": xla, "onednn": onednn,
               **summarize(secs, steps, batch_size)}
        base = seconds.get((impl, "gmm_dae", xla, onednn))
        row["ratio_to_gmm_dae"] = paired_ratio(secs, base) if base is not None else None
        robust = seconds.get((impl, "robust", xla, onednn))
        row["ratio_to_robust"] = paired_ratio(secs, robust) if robust is not None and variant != "robust" else None
        if impl == WHATIF:
            row["steps_per_execution"] = 1
            row["vs_shipped"] = paired_ratio(secs, seconds[("tensorflow", variant, xla, onednn)])
            torch_secs = seconds.get(("pytorch", variant, None, None))
            row["speedup_vs_torch"] = paired_ratio(torch_secs, secs) if torch_secs is not None else None
            whatif_rows.append(row)
        else:
            rows.append(row)

    target_lines = []
    shipped_xla = config_lib.training_jit_compile(config)
    for onednn in onednn_settings:
        for xla in xla_settings:
            key, base = ("tensorflow", "robust", xla, onednn), ("tensorflow", "gmm_dae", xla, onednn)
            if key in seconds and base in seconds:
                ratio = paired_ratio(seconds[key], seconds[base])
                verdict = "PASS" if ratio["median"] <= TARGET_ROBUST_RATIO else "FAIL"
                target_lines.append(
                    f"- Target robust/gmm_dae step time <= {TARGET_ROBUST_RATIO}x, {setting_label(xla, onednn, shipped_xla)}: "
                    f"{ratio['median']:.2f}x (rounds {ratio['min']:.2f}-{ratio['max']:.2f}) **{verdict}**"
                )
    torch_key = ("pytorch", "robust", None, None)
    for onednn in onednn_settings:
        for xla in xla_settings:
            key = ("tensorflow", "robust", xla, onednn)
            if key in seconds and torch_key in seconds:
                speedup = paired_ratio(seconds[torch_key], seconds[key])
                verdict = "PASS" if speedup["median"] >= TARGET_TORCH_SPEEDUP else "FAIL"
                target_lines.append(
                    f"- Target ours >= {TARGET_TORCH_SPEEDUP}x faster than eager PyTorch (robust step), "
                    f"{setting_label(xla, onednn, shipped_xla)}: {speedup['median']:.2f}x "
                    f"(rounds {speedup['min']:.2f}-{speedup['max']:.2f}) **{verdict}**"
                )
    if torch_key not in seconds:
        reason = f"PyTorch comparison {torch_note}" if torch is None else "it needs robust in --variants"
        target_lines.append(f"- Target ours >= {TARGET_TORCH_SPEEDUP}x faster than eager PyTorch: not measured ({reason}).")
    if len(onednn_settings) == 2:
        for variant in variants:
            for xla in xla_settings:
                on, off = ("tensorflow", variant, xla, True), ("tensorflow", variant, xla, False)
                speedup = paired_ratio(seconds[off], seconds[on])
                target_lines.append(
                    f"- oneDNN on vs off, {variant}, XLA {fmt_xla('tensorflow', xla)}: step {speedup['median']:.2f}x "
                    f"as fast (rounds {speedup['min']:.2f}-{speedup['max']:.2f})"
                )

    load = dict(zip(("foreign_cores_mean", "foreign_cores_max"), load_summary(foreign)))
    load.update(zip(("parts_foreign_cores_mean", "parts_foreign_cores_max"), load_summary(parts_foreign)))
    results = {
        "meta": {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": machine.cpu_name(),
            "cpu_count": os.cpu_count(),
            "threads": threads,
            "tensorflow": info["tensorflow"],
            "keras": info["keras"],
            "onednn_reported": {("on" if k else "off"): w.info["onednn"] for k, w in tf_workers.items()},
            "torch": torch_version,
            "python": platform.python_version(),
            "dataset": dataset,
            "architecture": config.model.architecture,
            "image_shape": list(WORKLOADS[dataset]),
            "shipped_jit_compile": shipped_xla,
            "batch_size": batch_size,
            "steps": steps,
            "repeats": repeats,
            "warmup_steps": FLAGS.warmup_steps,
            "steps_per_execution": FLAGS.steps_per_execution,
        },
        "rows": rows,
        "target_lines": target_lines,
        "load": load,
        "torch_note": torch_note if torch is None else "",
        "breakdown": {"parts": parts, "whatif": whatif_rows} if FLAGS.breakdown else None,
    }
    results["meta"]["total_seconds"] = time.perf_counter() - started
    text = markdown(results)
    if FLAGS.breakdown:
        text += "\n" + breakdown_markdown(parts, whatif_rows, load)
    print()
    print(text, end="")
    print(f"\nTotal time {results['meta']['total_seconds']:.0f} s.")
    if FLAGS.output:
        if FLAGS.output.endswith(".json"):
            write_atomic(FLAGS.output, json.dumps(results, indent=2, default=float) + "\n")
        else:
            write_atomic(FLAGS.output, text)
        print(f"Results written to {FLAGS.output}.")


def setting_label(xla, onednn, shipped_xla):
    """'XLA on, oneDNN on (shipped default)' and the like."""
    shipped = " (shipped default)" if xla == shipped_xla and onednn else ""
    return f"XLA {fmt_xla('tensorflow', xla)}, oneDNN {fmt_onednn('tensorflow', onednn)}{shipped}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve_tensorflow()
    else:
        sys.exit("usage: python bin/benchmark.py --help (this file runs itself with --serve as the TensorFlow worker)")
