#!/usr/bin/env python
"""Records tests/data/regression_digits.json: today's behaviour of the command line,
end to end, for tests/test_regression.py to compare against.

    PYTHONPATH=. python tests/data/record_regression.py          # rewrite the JSON
    PYTHONPATH=. python tests/data/record_regression.py --check  # compare only (no write)
    PYTHONPATH=. python tests/data/record_regression.py --output=/tmp/other.json  # write elsewhere
    PYTHONPATH=. python tests/data/record_regression.py --keep=/tmp/new_dir  # keep the runs there
    PYTHONPATH=. python tests/data/record_regression.py --this_cpu  # this CPU's floats only
                                                 # (regression_digits_cpus.json; test_regression "Other CPUs")

It runs the scripts in bin/ exactly as a user would (subprocesses, `python bin/...`)
on the embedded digits dataset, with tiny but real settings and fixed seeds, for the
robust model (ours) and one VAE baseline; two chains run concurrently, one per model:

    bin/train.py --dataset=digits --model=<robust|vae> --epochs=3 ...
    bin/evaluate.py --model=<its export> --num_images=8 --trials=2 --budgets=1 ...

then `bin/compare.py <eval robust> <eval vae> --paper=mnist --output=...`, and
`--helpshort` of the three scripts. It records (`observe`):

* the command-line flags of train / evaluate / compare (name, default, type, from --helpshort);
* file layouts (relative paths, not contents) of the run directory, the SavedModel,
  the evaluation directories, the FD feature cache and the comparison; names that
  carry a time stamp, host or process id (TensorBoard event files) or a tf.data hash
  are replaced by a placeholder;
* every artifact.json marker, config.json, history.json, the SavedModel metadata
  (robust_dae_tf.json: config, prior, loss weights, final metrics, ...) and the
  evaluation's summary.json, with temporary paths written <tmp> and time stamps /
  timings / versions replaced by "<volatile>" (timings keep their keys);
* the serving signatures of the SavedModel (and of the evaluation's classifier):
  names, input / output keys, dtypes and shapes;
* the exported model's outputs on the first 8 test images of the run's examples
  artifact: the full latents of 4 images, statistics of all, decoder outputs at fixed
  latents, reconstructions (statistics and one raw pixel row of two images);
* the evaluation tables (CSV cells), report.md / table*.md / compare's Markdown with
  every number replaced by '#' (the numbers themselves are pinned through summary.json
  and the CSVs), the attack examples (examples.npz: keys, shapes, dtypes, statistics).

What is shrunk against a user's default run (the code paths are the same): 300 training
images, 3 epochs, 10 instead of 100 prior batches for the loss-weight estimate (each
batch is seeded by its index, so these are the first 10 of the default 100); evaluation
with 8 images x 2 trials at lambda = 1, 5 refinement steps, 2 exploration starts and 1
restart, a pool of 200, 200 FD samples, a 2-epoch FD feature net and latent MLP, 100
images attacked for Table 3. The architecture, the digits config and XLA
(train.jit_compile, --attack_xla) are the defaults, except that the VAE's evaluation
passes --noattack_xla: it pins the non-XLA attack path (the fallback when XLA fails)
and saves 7 s of CPU. Each evaluation has its own --feature_cache inside the
temporary directory (never the user's ~/.cache), so the chains need not wait for
each other.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON_PATH = os.path.join(ROOT, "tests", "data", "regression_digits.json")
# Per CPU, the floats that differ from JSON_PATH's (rounding amplified by training; see
# tests/test_regression.py, "Other CPUs"):
# {cpu name: {"recorded_with", "floats": [[keys, main recording's value, this CPU's value]]}}.
CPU_FLOATS_PATH = os.path.join(ROOT, "tests", "data", "regression_digits_cpus.json")
TMP = "<tmp>"
VOLATILE = "<volatile>"
MODELS = ("robust", "vae")
NUM_PROBE_IMAGES = 8
# Keys whose values change from run to run (time stamps, timings, library versions).
# "fingerprint": a component's digest of its inputs (absolute paths, file hashes; pipeline.artifacts).
VOLATILE_KEYS = {"created", "exported_at", "tensorflow_version", "keras_version", "fingerprint"}
TIMING_KEYS = {"timing"}


def train_args(model: str, root: str) -> list[str]:
    return [
        "--dataset=digits", f"--model={model}", f"--workdir={root}/runs/{model}",
        f"--export_dir={root}/saved_models/{model}", "--epochs=3", "--config.data.max_train_examples=300",
        "--config.loss.weight_estimation_batches=10", "--config.train.verbose=0",
    ]


def evaluate_args(model: str, root: str) -> list[str]:
    # The VAE's attacks run without XLA: the other attack path (the fallback when XLA
    # fails), and 7 s less CPU time than with it.
    return [
        f"--model={root}/saved_models/{model}", f"--output={root}/evaluations/{model}", "--num_images=8",
        "--trials=2", "--budgets=1", "--attack_steps=5", "--attack_exploration_starts=2", "--attack_restarts=1",
        "--pool_size=200", "--fid_samples=200", f"--feature_cache={root}/feature_cache/{model}",
        "--fd_classifier_epochs=2", "--classifier_epochs=2", "--classifier_attack_images=100",
        *(["--noattack_xla"] if model == "vae" else []),
    ]


def compare_args(root: str) -> list[str]:
    return [f"{root}/evaluations/robust", f"{root}/evaluations/vae", "--paper=mnist",
            f"--output={root}/comparison/comparison.md"]


# -- running the scripts -----------------------------------------------------------


def _env() -> dict:
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
                PYTHONPATH=ROOT + (os.pathsep + path if path else ""))


class Script:
    """`python bin/<script> args` started in the background (cwd = `log_dir`, so a default
    output path would land in the temporary tree); `finish()` waits for it."""

    def __init__(self, script: str, args: list[str], log_dir: str):
        os.makedirs(log_dir, exist_ok=True)
        name = f"{script[:-3]}_{len(os.listdir(log_dir))}"
        self.command = f"bin/{script} {' '.join(args)}"
        self.out = open(os.path.join(log_dir, f"{name}.out"), "w+")
        self.err = open(os.path.join(log_dir, f"{name}.err"), "w+")
        self.started = time.time()
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bin", script), *args], stdout=self.out,
                                     stderr=self.err, env=_env(), cwd=log_dir, text=True)
        self.wall = self.cpu = None

    def finish(self, timeout: float = 900.0, status: int = 0) -> str:
        """Waits; returns stdout, raises with the stderr tail unless the exit status is
        `status` (absl's --helpshort exits with 1). Sets `wall` and `cpu` (seconds)."""
        deadline = time.time() + timeout
        while True:
            pid, wait_status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"timed out after {timeout} s: {self.command}")
            time.sleep(0.05)
        self.proc.returncode = os.waitstatus_to_exitcode(wait_status)
        self.wall, self.cpu = time.time() - self.started, usage.ru_utime + usage.ru_stime
        self.out.seek(0)
        self.err.seek(0)
        stdout, stderr = self.out.read(), self.err.read()
        self.out.close()
        self.err.close()
        if self.proc.returncode != status:
            raise AssertionError(f"exit status {self.proc.returncode}: {self.command}\n{stderr[-4000:]}")
        return stdout


def run_commands(root: str) -> dict:
    """Runs every command into `root`; returns {"stdout": {job: text}, "timing": {job: (wall, cpu)}}.

    Two chains run concurrently, train -> evaluate for each model (each evaluation with
    its own FD feature cache, so neither waits for the other), then compare."""
    import concurrent.futures

    logs = os.path.join(root, "logs")
    jobs, stdout = {}, {}

    def chain(model):
        for step, script, args in (("train", "train.py", train_args(model, root)),
                                   ("evaluate", "evaluate.py", evaluate_args(model, root))):
            name = f"{step}_{model}"
            jobs[name] = Script(script, args, os.path.join(logs, model))
            stdout[name] = jobs[name].finish()

    # --config given: train.py then shows its help without importing TensorFlow.
    helps = {f"help_{s}": Script(f"{s}.py", ["--helpshort", *([f"--config={ROOT}/configs/digits.py"] if s == "train"
                                                               else [])], os.path.join(logs, "help"))
             for s in ("train", "evaluate", "compare")}
    with concurrent.futures.ThreadPoolExecutor(len(MODELS)) as pool:
        for future in [pool.submit(chain, model) for model in MODELS]:
            future.result()
    for name, job in helps.items():
        stdout[name] = job.finish(status=1)  # absl's --helpshort exits with 1
    jobs.update(helps)
    jobs["compare"] = Script("compare.py", compare_args(root), logs)
    stdout["compare"] = jobs["compare"].finish()
    return {"stdout": stdout, "timing": {name: (round(job.wall, 1), round(job.cpu, 1)) for name, job in jobs.items()}}


# -- normalising what the runs wrote -------------------------------------------------

_EVENTS = re.compile(r"events\.out\.tfevents\.[^/]+$")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def layout(directory: str) -> list[str]:
    """Sorted relative paths of every file and directory (directories end in '/')."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(directory):
        rel = os.path.relpath(dirpath, directory)
        for name in dirnames:
            paths.append(os.path.normpath(os.path.join(rel, name)) + "/")
        for name in filenames:
            paths.append(os.path.normpath(os.path.join(rel, name)))
    out = []
    for p in paths:
        p = _EVENTS.sub("events.out.tfevents.*", p)
        # tf.data.Dataset.save names its shard directory by a hash of the dataset graph.
        p = re.sub(r"^examples/(train|test)/\d+/", r"examples/\1/<hash>/", p)
        p = re.sub(r"^examples/(train|test)/\d+/$", r"examples/\1/<hash>/", p)
        out.append(p)
    return sorted(set(out))


def normalise(value, root: str):
    """JSON-like `value` with `root` written <tmp> and volatile entries masked."""
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(key, str) and re.match(r"^\d+/", key):
                # A file of tf.data.Dataset.save (the Examples artifact's recorded sizes): its
                # directory is named by a random run hash, so the hash is masked.
                key = re.sub(r"^\d+/", "<hash>/", key)
            if key in VOLATILE_KEYS or key == "snapshot.metadata":  # the metadata file holds that hash
                result[key] = VOLATILE
            elif key in TIMING_KEYS and isinstance(item, dict):
                result[key] = {k: VOLATILE for k in item}
            else:
                result[key] = normalise(item, root)
        return result
    if isinstance(value, (list, tuple)):
        return [normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(os.path.realpath(root), TMP).replace(root, TMP)
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


MISSING = "<missing>"


def missing_ok(read):
    """`read(path, ...)`, or MISSING when `path` does not exist: a file the run no longer
    writes shows up as one difference instead of stopping the recording."""
    import functools

    @functools.wraps(read)
    def wrapper(path, *args):
        return read(path, *args) if os.path.exists(path) else MISSING

    return wrapper


@missing_ok
def read_text(path: str, root: str) -> list[str]:
    """The lines of a text file with numbers masked (`mask_numbers`)."""
    with open(path) as f:
        return mask_numbers(f.read(), root)


@missing_ok
def read_json(path: str, root: str):
    with open(path) as f:
        return normalise(json.load(f), root)


def mask_numbers(text: str, root: str) -> list[str]:
    """Lines of `text` with <tmp> for the root and '#' for every number."""
    return [_NUMBER.sub("#", line) for line in normalise(text, root).splitlines()]


@missing_ok
def parse_csv(path: str) -> dict:
    import csv

    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]

    def cell(text):
        try:
            return float(text)
        except ValueError:
            return text

    return {"header": header, "rows": [{h: cell(c) for h, c in zip(header, row)} for row in body]}


def parse_flags(help_text: str) -> dict:
    """{flag name: {"default": ..., "type": ...}} of the script's own flags in --helpshort."""
    flags, current = {}, None
    for line in help_text.splitlines():
        match = re.match(r"^  --(?:\[no\])?([\w.]+):", line)
        if match:
            current = flags.setdefault(match.group(1), {"default": None, "type": None})
            continue
        if current is None or not line.startswith("    "):
            if not line.startswith("    "):
                current = None
            continue
        default = re.match(r"^\s+\(default: (.*)\)$", line)
        kind = re.match(r"^\s+\((an? [\w\s.-]+|[\w\s]+separated [\w\s]+)\)$", line)
        if default:
            current["default"] = default.group(1)
        elif kind:
            current["type"] = kind.group(1)
    return flags


def stats(array) -> dict:
    a = np.asarray(array, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}


def signatures(loaded) -> dict:
    """{signature: {"inputs": {key: [dtype, shape]}, "outputs": {...}}} of a loaded SavedModel,
    and which endpoints are callable attributes."""

    def spec(s):
        return [s.dtype.name, None if s.shape.rank is None else [d for d in s.shape.as_list()]]

    result = {}
    for name, fn in loaded.signatures.items():
        args, kwargs = fn.structured_input_signature
        result[name] = {"inputs": {k: spec(v) for k, v in kwargs.items()},
                        "positional_inputs": len(args),
                        "outputs": {k: spec(v) for k, v in fn.structured_outputs.items()}}
    endpoints = sorted(n for n in ("encode", "decode", "reconstruct", "classify") if hasattr(loaded, n))
    return {"signatures": result, "callable_endpoints": endpoints}


@missing_ok
def load_signatures(saved_model_dir: str) -> dict:
    import tensorflow as tf

    return signatures(tf.saved_model.load(saved_model_dir))


def probe_images(examples_dir: str):
    """The first NUM_PROBE_IMAGES test images of an Examples artifact: (float32 in [0, 1], labels)."""
    import tensorflow as tf

    batch = next(iter(tf.data.Dataset.load(os.path.join(examples_dir, "test")).batch(NUM_PROBE_IMAGES)))
    return batch["image"].numpy().astype(np.float32) / 255.0, batch["label"].numpy()


def _single(outputs):
    return (next(iter(outputs.values())) if isinstance(outputs, dict) else outputs).numpy()


def model_outputs(loaded, examples_dir: str) -> dict:
    """The exported model's encode / decode / reconstruct outputs on fixed inputs, through
    the serving signatures (and whether the plain endpoints give the same). Output keys
    are not assumed here (they are pinned by `signatures`), so a renamed key shows up
    as that difference instead of stopping the recording."""
    import tensorflow as tf

    sig = loaded.signatures
    x, labels = probe_images(examples_dir)
    z = _single(sig["encode"](images=tf.constant(x)))
    latent_dim = z.shape[1]
    z_fixed = (3.0 * np.random.RandomState(0).standard_normal((NUM_PROBE_IMAGES, latent_dim))).astype(np.float32)
    decoded = _single(sig["decode"](latents=tf.constant(z_fixed)))
    rec = _single(sig["reconstruct"](images=tf.constant(x)))
    decoded_z = _single(sig["decode"](latents=tf.constant(z)))
    row = x.shape[1] // 2
    return {
        "inputs": {"labels": labels.tolist(), "pixel_sum_x255": int(np.round(x.sum() * 255)),
                   "shape": list(x.shape)},
        "encode": {"latents_first4": z[:4].tolist(), "stats": stats(z), "norms": np.linalg.norm(z, axis=1).tolist(),
                   "shape": list(z.shape)},
        "decode": {"fixed_latents": "3 * RandomState(0).standard_normal((8, latent_dim))", "stats": stats(decoded),
                   "per_image_mean": decoded.mean(axis=(1, 2, 3)).tolist(),
                   "per_image_std": decoded.std(axis=(1, 2, 3)).tolist(),
                   "middle_row_first2": decoded[:2, row, :, 0].tolist(), "shape": list(decoded.shape)},
        "reconstruct": {"stats": stats(rec), "per_image_mean": rec.mean(axis=(1, 2, 3)).tolist(),
                        "per_image_std": rec.std(axis=(1, 2, 3)).tolist(),
                        "middle_row_first2": rec[:2, row, :, 0].tolist(), "shape": list(rec.shape),
                        "mse_to_inputs": float(np.mean((rec - x) ** 2)),
                        "max_abs_diff_to_decode_of_encode": float(np.abs(rec - decoded_z).max())},
        "plain_endpoints_match_signatures": {
            "encode": bool(np.allclose(_single(loaded.encode(tf.constant(x))), z, atol=1e-6)),
            "decode": bool(np.allclose(_single(loaded.decode(tf.constant(z_fixed))), decoded, atol=1e-6)),
            "reconstruct": bool(np.allclose(_single(loaded.reconstruct(tf.constant(x))), rec, atol=1e-6)),
        },
    }


@missing_ok
def npz_summary(path: str) -> dict:
    with np.load(path) as archive:
        return {key: {"dtype": archive[key].dtype.name, "shape": list(archive[key].shape),
                      **({"stats": stats(archive[key])} if archive[key].dtype.kind in "fiub" and archive[key].size
                         else {})}
                for key in sorted(archive.files)}


def observe_model(model: str, root: str, stdout: dict) -> dict:
    import tensorflow as tf

    workdir = os.path.join(root, "runs", model)
    export_dir = os.path.join(root, "saved_models", model)
    eval_dir = os.path.join(root, "evaluations", model)
    trainer = os.path.join(workdir, "trainer")
    metadata = read_json(os.path.join(export_dir, "robust_dae_tf.json"), root)
    loaded = tf.saved_model.load(export_dir)
    evaluation = {
        "layout": layout(eval_dir),
        "summary": read_json(os.path.join(eval_dir, "summary.json"), root),
        "artifacts": {d: read_json(os.path.join(eval_dir, d, "artifact.json"), root)
                      for d in ("robustness", "classifier", "classifier_model", "fid")},
        "reports": {name: read_json(os.path.join(eval_dir, d, name), root)
                    for d, name in (("robustness", "robustness.json"), ("classifier", "classifier.json"),
                                    ("fid", "fid.json"),
                                    ("classifier_model", "robust_dae_tf_classifier.json"))},
        "tables": {name: parse_csv(os.path.join(eval_dir, name)) for name in ("table1.csv", "table3.csv")},
        "markdown": {name: read_text(os.path.join(eval_dir, name), root)
                     for name in ("table1.md", "table3.md", "report.md")},
        "attack_examples": npz_summary(os.path.join(eval_dir, "robustness", "examples.npz")),
        "classifier_signatures": load_signatures(os.path.join(eval_dir, "classifier_model")),
        "stdout_tail": mask_numbers(stdout[f"evaluate_{model}"].split("## ", 1)[-1], root),
    }
    return {
        "train_stdout": mask_numbers(stdout[f"train_{model}"], root),
        "workdir_layout": layout(workdir),
        "export_layout": layout(export_dir),
        "artifacts": {"examples": read_json(os.path.join(workdir, "examples", "artifact.json"), root),
                      "trainer": read_json(os.path.join(trainer, "artifact.json"), root),
                      "saved_model": read_json(os.path.join(export_dir, "artifact.json"), root)},
        "config_json": read_json(os.path.join(trainer, "config.json"), root),
        "history": read_json(os.path.join(trainer, "history.json"), root),
        "metadata": metadata,
        "saved_model": signatures(loaded),
        "outputs": model_outputs(loaded, os.path.join(workdir, "examples")),
        "evaluation": evaluation,
    }


def observe(root: str) -> dict:
    """Runs every command into `root` and returns the observations (the JSON's content)."""
    started = time.time()
    ran = run_commands(root)
    stdout = ran["stdout"]
    observations = {
        "commands": {
            **{f"train_{m}": normalise(train_args(m, root), root) for m in MODELS},
            **{f"evaluate_{m}": normalise(evaluate_args(m, root), root) for m in MODELS},
            "compare": normalise(compare_args(root), root),
        },
        "flags": {f"bin/{s}.py": parse_flags(stdout[f"help_{s}"]) for s in ("train", "evaluate", "compare")},
        "models": {m: observe_model(m, root, stdout) for m in MODELS},
        "feature_cache_layout": {m: layout(os.path.join(root, "feature_cache", m)) for m in MODELS},
        "comparison": {
            "layout": layout(os.path.join(root, "comparison")),
            "markdown": read_text(os.path.join(root, "comparison", "comparison.md"), root),
            "stdout": mask_numbers(stdout["compare"], root),
            "tables": {name: parse_csv(os.path.join(root, "comparison", name))
                       for name in ("comparison_table1.csv", "comparison_table3.csv")},
        },
    }
    timing = {"wall_seconds": time.time() - started,
              "cpu_seconds_of_scripts": sum(cpu for _, cpu in ran["timing"].values()), "jobs": ran["timing"]}
    return observations, timing


def recorded_with() -> dict:
    import platform

    import keras
    import tensorflow as tf

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "machine": platform.machine(), "cpu": _cpu_name(),
            "date": time.strftime("%Y-%m-%d")}


def _cpu_name() -> str:
    from robust_dae_tf import machine  # pylint: disable=import-outside-toplevel

    return machine.cpu_name()


def float_differences(expected, observed, keys=()) -> list:
    """[[keys, expected float, observed float]] wherever both hold a float at the same place
    and they differ (keys: the dict keys and list indices leading there)."""
    if isinstance(expected, dict) and isinstance(observed, dict):
        return [d for k in sorted(set(expected) & set(observed))
                for d in float_differences(expected[k], observed[k], (*keys, k))]
    if isinstance(expected, list) and isinstance(observed, list) and len(expected) == len(observed):
        return [d for i, (e, o) in enumerate(zip(expected, observed)) for d in float_differences(e, o, (*keys, i))]
    if isinstance(expected, float) and isinstance(observed, float) and not (
            expected == observed or (expected != expected and observed != observed)):  # NaN == NaN here
        return [[list(keys), expected, observed]]
    return []


def cpu_floats() -> dict:
    """CPU_FLOATS_PATH's contents ({} when it does not exist)."""
    if not os.path.exists(CPU_FLOATS_PATH):
        return {}
    with open(CPU_FLOATS_PATH) as f:
        return json.load(f)


def _at(tree, keys):
    for key in keys:
        tree = tree[key]
    return tree


def stale_cpu_floats(observations: dict, cpu: str) -> bool:
    """True when CPU_FLOATS_PATH has floats for `cpu` that were recorded against another main
    recording (a float's recorded main value is not the main recording's any more, or its
    place is gone): they must be recorded again (`--this_cpu`), not put in."""
    entry = cpu_floats().get(cpu)
    if not entry:
        return False
    for keys, main_value, _ in entry["floats"]:
        try:
            now = _at(observations, keys)
        except (KeyError, IndexError, TypeError):
            return True
        if not (now == main_value or (now != now and main_value != main_value)):
            return True
    return False


def for_this_cpu(observations: dict, cpu: str) -> dict:
    """`observations` (the main recording's) with the floats recorded for `cpu` put in, when
    CPU_FLOATS_PATH has them and they are not stale (`stale_cpu_floats`); unchanged otherwise."""
    entry = cpu_floats().get(cpu)
    if not entry or stale_cpu_floats(observations, cpu):
        return observations
    copy = json.loads(json.dumps(observations))
    for keys, _, value in entry["floats"]:
        _at(copy, keys[:-1])[keys[-1]] = value
    return copy


def record_cpu_floats(observations: dict, cpu: str) -> int:
    """Adds this CPU's floats to CPU_FLOATS_PATH after checking that everything else (the
    structure, strings, ints, booleans) matches the main recording exactly: a difference
    there is a change of behaviour, not of the CPU, and nothing is written."""
    from tests.test_regression import structure_problems  # pylint: disable=import-outside-toplevel

    with open(JSON_PATH) as f:
        main_recording = json.load(f)["observations"]
    problems = structure_problems(main_recording, observations)
    if problems:
        print("error: not only floats differ from " + JSON_PATH + " (a change of behaviour, not of the CPU; "
              "record per CPU at the commit that made the main recording's behaviour):\n" + "\n".join(problems[:20]))
        return 1
    table = cpu_floats()
    table[cpu] = {"recorded_with": recorded_with(), "floats": float_differences(main_recording, observations)}
    _write_json(CPU_FLOATS_PATH, table)
    print(f"wrote {len(table[cpu]['floats'])} floats of {cpu} to {CPU_FLOATS_PATH}")
    return 0


def _write_json(path: str, payload) -> None:
    """`payload` as indented JSON at `path` (temporary file, then rename)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def main(argv) -> int:
    check_only = "--check" in argv[1:]
    this_cpu = "--this_cpu" in argv[1:]
    target = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--output=")), JSON_PATH)
    keep = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--keep=")), None)
    if keep:  # run into this (new) directory and leave it there
        os.makedirs(keep)
        observations, timing = observe(os.path.abspath(keep))
    else:
        with tempfile.TemporaryDirectory(prefix="regression_digits_") as root:
            observations, timing = observe(root)
    print(f"ran in {timing['wall_seconds']:.1f} s wall, {timing['cpu_seconds_of_scripts']:.1f} s CPU of the scripts "
          f"(wall, CPU of each: {timing['jobs']})")
    if this_cpu:
        return record_cpu_floats(observations, _cpu_name())
    if check_only:  # against the main recording with this CPU's floats, as tests/test_regression.py compares
        from tests.test_regression import assert_matches  # pylint: disable=import-outside-toplevel

        with open(JSON_PATH) as f:
            assert_matches(for_this_cpu(json.load(f)["observations"], _cpu_name()), observations)
        print(f"matches {JSON_PATH}")
        return 0
    payload = {"README": "Written by tests/data/record_regression.py; compared by tests/test_regression.py. "
                         "Regenerate only for an intended change of behaviour.",
               "recorded_with": recorded_with(), "observations": observations}
    _write_json(target, payload)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
