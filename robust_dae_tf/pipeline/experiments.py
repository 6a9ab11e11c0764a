"""Sweeps: many train -> export -> evaluate points, run serially or as Ray tasks.

A sweep is a base config plus a grid (`parse_grid`: `loss.coupling=0.5,0.8,0.9` and
`model=gmm_dae,robust` give the cartesian product); each grid point is a `Point`
(name, dataset, model, config overrides, epochs, seed). `bin/sweep.py` and
`bin/reproduce.py` (a grid over the model axis) are thin front-ends over `run_sweep`.

Every point lives in its own directory, so a point is one unit of work, resumable by
itself:

    <output>/points/<name>/point.json         what the point is (config, evaluation settings);
                                               a rerun with other settings is refused
    <output>/points/<name>/run/               training workdir (examples/, trainer/): resumes
    <output>/points/<name>/e<epochs>/saved_model/   Exporter's SavedModel artifact
    <output>/points/<name>/e<epochs>/evaluation/    bin/evaluate.py's output (summary.json last)
    <output>/points/<name>/e<epochs>/result.json    reconstruction MSE on the test split (last)
    <output>/sweep.md, sweep.csv, sweep_front.png   the table of all points and the front

A point whose export marker, evaluation summary.json and result.json exist is complete
and skipped; otherwise its stages run again from where they stopped (training resumes
from its newest checkpoint, a finished training is not repeated, a finished export is
kept). The training state does not depend on the epoch budget, so the same sweep with a
larger `--epochs` continues every point's training and exports and evaluates it anew
under e<epochs>.

Everything that can be checked without training is checked before the first point
starts: the grid (unknown fields, values of the wrong type), every point's config
(`config_lib.validate`), the evaluation settings (`evaluation.check_settings`), the output
directory. Engines: "local" runs the points one after another in this process; "ray"
runs each point as one Ray task (`ray.init()` on this machine's cores, or
`ray_address` to join a cluster); Ray is an optional extra (`pip install .[distributed]`)
imported only when used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

from robust_dae_tf import config_lib, fileio, locking, quiet_tensorflow, reporting
from robust_dae_tf.errors import ConfigError, UserError
from robust_dae_tf.evaluation.settings import EvaluationSettings
from robust_dae_tf.pipeline.artifacts import MARKER
# The grid and its points moved to `pipeline.grid`; their names stay importable from here.
from robust_dae_tf.pipeline.grid import (ALIASES, Point, check_points, make_points, parse_grid,  # noqa: F401
                                         parse_settings, parse_value, point_names, with_model_epochs)

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
POINTS_DIR = "points"
POINT_FILE = "point.json"
RESULT_FILE = "result.json"
SWEEP_FILES = {"markdown": "sweep.md", "csv": "sweep.csv", "figure": "sweep_front.png"}


# ------------------------------------------------------------------ one point


def point_dir(output: str, point: Point) -> str:
    return os.path.join(output, POINTS_DIR, point.name)


def point_paths(output: str, point: Point) -> dict:
    root = point_dir(output, point)
    stage = os.path.join(root, f"e{point.epochs}")
    return {"root": root, "spec": os.path.join(root, POINT_FILE), "workdir": os.path.join(root, "run"),
            "export": os.path.join(stage, "saved_model"), "evaluation": os.path.join(stage, "evaluation"),
            "result": os.path.join(stage, RESULT_FILE)}


def is_complete(output: str, point: Point) -> bool:
    """The point's export (marker), evaluation (summary.json) and result.json all exist."""
    paths = point_paths(output, point)
    return (os.path.exists(os.path.join(paths["export"], MARKER))
            and reporting.evaluation_finished(paths["evaluation"])
            and os.path.exists(paths["result"]))


def _spec(point: Point, config, settings: EvaluationSettings) -> dict:
    """What a point's directory holds, except the epoch budget (a rerun with more epochs
    continues the training state)."""
    config_dict = json.loads(config_lib.to_json(config))
    config_dict["train"].pop("epochs", None)
    return {"name": point.name, "config": config_dict, "evaluation": dataclasses.asdict(settings)}


def _differences(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def record_spec(output: str, point: Point, config, settings: EvaluationSettings) -> None:
    """Writes point.json, or checks that an existing one describes the same point."""
    paths = point_paths(output, point)
    spec = json.loads(json.dumps(_spec(point, config, settings), default=list))
    if os.path.exists(paths["spec"]):
        try:
            with open(paths["spec"]) as f:
                recorded = json.load(f)
        except (OSError, ValueError) as err:
            raise UserError(f"{paths['spec']} cannot be read ({err}); delete the point's directory "
                            f"{paths['root']} to run it again.") from None
        if isinstance(recorded.get("evaluation"), dict):  # settings added since: compared at their defaults
            defaults = json.loads(json.dumps(dataclasses.asdict(EvaluationSettings()), default=list))
            recorded["evaluation"] = {**{k: v for k, v in defaults.items() if k not in recorded["evaluation"]},
                                      **recorded["evaluation"]}
        diffs = _differences(recorded, spec)
        if diffs:
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise UserError(f"{paths['root']} holds the point {point.name} run with other settings ({shown}); "
                            "use a new --output, or delete that directory to run it again.")
        return
    fileio.write_json_atomic(paths["spec"], spec)


def reconstruction_mse(saved_model_dir: str, examples_dir: str, batch_size: int = 500) -> dict:
    """Mean squared pixel error of the model's reconstructions over the whole test split
    of an Examples artifact: {"reconstruction_mse", "num_images"}."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import data  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.pipeline import artifacts, evaluation  # pylint: disable=import-outside-toplevel

    model = evaluation.load_model(evaluation.saved_model_artifact(saved_model_dir))
    images, _ = data.take_arrays(artifacts.load_examples(artifacts.read_artifact(examples_dir, "Examples"))["test"])
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = data.to_float(images[start:start + batch_size])
        total += float(tf.reduce_sum(tf.square(tf.cast(model.reconstruct(x), tf.float32) - x)))
    return {"reconstruction_mse": total / max(images.size, 1), "num_images": int(len(images))}


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_point(point: Point, config, output: str, settings: EvaluationSettings, label: str = "",
              overwrite_export: bool = False) -> dict:
    """Trains, exports, evaluates and measures one point into its directory (see the
    module docstring), skipping the stages that are complete. `config` is the point's
    validated config (`point.config(base)`). Returns {"name", "paths", "stages": {stage:
    "ran" | "skipped"}, "seconds"}."""
    from robust_dae_tf.pipeline import evaluation, training  # pylint: disable=import-outside-toplevel

    started = time.perf_counter()
    label = label or point.name
    paths = point_paths(output, point)
    stages = {}

    def say(stage):
        print(f"[sweep {label}] {stage} ({_clock(time.perf_counter() - started)} into the point)", flush=True)

    record_spec(output, point, config, settings)
    if os.path.exists(os.path.join(paths["export"], MARKER)) and not overwrite_export:
        stages["train"] = "skipped"
        say("training and export: skipped (exported)")
    else:
        say("training")
        # An export directory without its marker is the leftover of a killed export.
        training.run_training_pipeline(config, paths["workdir"], paths["export"],
                                       overwrite=overwrite_export or os.path.exists(paths["export"]))
        stages["train"] = "ran"
    if reporting.evaluation_finished(paths["evaluation"]) and stages["train"] == "skipped":
        stages["evaluate"] = "skipped"
        say("evaluation: skipped (summary.json exists)")
    else:
        say("evaluating")
        point_settings = dataclasses.replace(settings, examples=os.path.join(paths["workdir"], "examples"))
        evaluation.run_evaluation_pipeline(paths["export"], paths["evaluation"], point_settings)
        stages["evaluate"] = "ran"
    if os.path.exists(paths["result"]) and stages["evaluate"] == "skipped":
        stages["measure"] = "skipped"
    else:
        say("measuring the reconstruction MSE")
        result = reconstruction_mse(paths["export"], os.path.join(paths["workdir"], "examples"))
        fileio.write_json_atomic(paths["result"], {"point": dataclasses.asdict(point), **result})
        stages["measure"] = "ran"
    seconds = time.perf_counter() - started
    say("done")
    return {"name": point.name, "paths": paths, "stages": stages, "seconds": seconds}


def _run_point_task(point: Point, config_json: str, output: str, settings: EvaluationSettings, label: str) -> dict:
    """The body of a Ray task: one point in a fresh worker process (configs travel as JSON)."""
    quiet_tensorflow()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("robust_dae_tf").setLevel(logging.INFO)
    return run_point(point, config_lib.from_dict(json.loads(config_json)), output, settings, label)


# ------------------------------------------------------------------ engines


def import_ray():
    """The `ray` module, or one UserError saying how to install the extra."""
    try:
        import ray  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise UserError("--engine=ray needs Ray, an optional extra: pip install .[distributed] "
                        "(or pip install ray); or use --engine=local.") from None
    return ray


def _failure(point: Point, err: BaseException) -> str:
    return f"{point.name} ({' '.join(str(err).split())[:300]})"


def _label(point: Point, index_of: dict, total: int) -> str:
    """"i/N name": how progress lines name a point."""
    return f"{index_of[point.name]}/{total} {point.name}"


def _record_failure(failed: dict, point: Point, label: str, err: Exception) -> None:
    """Prints a point's failure and keeps it for the sweep's closing error."""
    print(f"[sweep {label}] FAILED: {err}", flush=True)
    failed[point.name] = _failure(point, err)


def _run_local(todo, configs, output, settings, total, started, index_of) -> dict:
    failed = {}
    for point in todo:
        label = _label(point, index_of, total)
        try:
            result = run_point(point, configs[point.name], output, settings, label)
        except UserError as err:
            _record_failure(failed, point, label, err)
            continue
        print(f"[sweep {label}] finished in {_clock(result['seconds'])} (sweep {_clock(time.perf_counter() - started)})",
              flush=True)
    return failed


def _run_ray(todo, configs, output, settings, total, started, index_of, ray_address, cpus_per_point,
             ray_init_kwargs) -> dict:
    ray = import_ray()
    if not ray.is_initialized():
        kwargs = dict(ray_init_kwargs or {})
        if ray_address:
            kwargs["address"] = ray_address
        kwargs.setdefault("include_dashboard", False)
        kwargs.setdefault("log_to_driver", True)
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = f"the cluster at --ray_address={ray_address}" if ray_address else "a local Ray instance"
            raise UserError(f"cannot start or join {where}: {' '.join(str(err).split())[:300]}") from None
    print(f"[sweep] Ray: {ray.cluster_resources().get('CPU', 0):g} CPUs, {cpus_per_point:g} per point", flush=True)
    # max_calls=1: every point runs in a fresh worker process (no TensorFlow state shared).
    task = ray.remote(num_cpus=cpus_per_point, max_calls=1)(_run_point_task)
    pending = {}
    for point in todo:
        label = _label(point, index_of, total)
        ref = task.remote(point, config_lib.to_json(configs[point.name]), os.path.abspath(output), settings, label)
        pending[ref] = point
    failed, done = {}, 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        point = pending.pop(ready[0])
        done += 1
        try:
            ray.get(ready[0])
        except UserError as err:  # Ray re-raises the task's error as a subclass of its type
            _record_failure(failed, point, _label(point, index_of, total), getattr(err, "cause", None) or err)
            continue
        print(f"[sweep] {done}/{len(todo)} finished: {point.name} (sweep {_clock(time.perf_counter() - started)})",
              flush=True)
    return failed


def run_sweep(base, points, output: str, settings: EvaluationSettings | None = None, engine: str = "local",
              ray_address: str | None = None, cpus_per_point: float = 1.0, front_budget: float = 3.0,
              axes=(), axis_flags=(), ray_init_kwargs: dict | None = None) -> dict:
    """Runs every point not yet complete on `engine`, then writes the sweep's table and
    front figure (`write_sweep_report`). Checks everything first (the engine, the points'
    configs, the settings, `front_budget` among the budgets, `output` writable) and holds
    `<output>.lock` throughout. Points that fail with a UserError do not stop the others;
    the report covers the complete points and then one UserError names the failures.
    Returns {"points", "skipped", "files", "rows"}."""
    from robust_dae_tf.pipeline import evaluation  # pylint: disable=import-outside-toplevel

    settings = settings or EvaluationSettings()
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
    if engine == "ray":
        import_ray()
        if not cpus_per_point > 0:
            raise ConfigError(f"--cpus_per_point must be > 0, got {cpus_per_point}.")
    if not points:
        raise ConfigError("the sweep has no points.")
    check_points(base, points, axes, axis_flags)
    budgets = evaluation.check_settings(settings)[0]
    if not settings.skip_robustness and float(front_budget) not in budgets:
        raise ConfigError(f"--front_budget={front_budget:g} is not one of the evaluation budgets "
                          f"({', '.join(f'{b:g}' for b in budgets)}); pass one of them or add it (--eval=budgets=...).")
    output = fileio.check_writable(output, "--output", directory=True)  # absolute: Ray workers use it too
    configs = {p.name: p.config(base) for p in points}
    with locking.lock_directory(output, "--output"):
        for point in points:  # a point recorded with other settings fails before any work
            if os.path.exists(point_paths(output, point)["spec"]):
                record_spec(output, point, configs[point.name], settings)
        started = time.perf_counter()
        index_of = {p.name: i for i, p in enumerate(points, 1)}
        skipped = [p for p in points if is_complete(output, p)]
        todo = [p for p in points if not is_complete(output, p)]
        for point in skipped:
            print(f"[sweep {index_of[point.name]}/{len(points)} {point.name}] skipped: complete", flush=True)
        print(f"[sweep] {len(todo)} of {len(points)} points to run ({engine} engine)", flush=True)
        if todo and engine == "local":
            failed = _run_local(todo, configs, output, settings, len(points), started, index_of)
        elif todo:
            failed = _run_ray(todo, configs, output, settings, len(points), started, index_of, ray_address,
                              cpus_per_point, ray_init_kwargs)
        else:
            failed = {}
        complete = [p for p in points if is_complete(output, p)]
        report = write_sweep_report(output, complete, axes, front_budget) if complete else {"files": [], "rows": []}
    if failed:
        raise UserError(f"{len(failed)} of {len(points)} points failed: {'; '.join(failed.values())}; "
                        f"{'the table in ' + os.path.join(output, SWEEP_FILES['markdown']) + ' covers the others; ' if complete else ''}"
                        "fix the cause and rerun the same command (complete points are skipped).")
    return {"points": points, "skipped": [p.name for p in skipped], **report}


# ------------------------------------------------------------------ the sweep's report


def sweep_rows(output: str, points, axes=()) -> list[dict]:
    """One row per complete point: {"name", "values" {field: value}, "evaluation" (a
    `reporting.load_evaluation` row; of the strong protocol when the points were
    evaluated under both), "reconstruction_mse"}."""
    rows = []
    for point in points:
        paths = point_paths(output, point)
        with open(paths["result"]) as f:
            result = json.load(f)
        overrides = dict(point.overrides)
        rows.append({"name": point.name, "values": {field: overrides.get(field) for field, _ in axes},
                     # --protocol=both: the first protocol's evaluation (strong)
                     "evaluation": reporting.load_evaluation(reporting.expand_evaluation_dirs([paths["evaluation"]])[0]),
                     "reconstruction_mse": float(result["reconstruction_mse"])})
    return rows


def write_sweep_report(output: str, points, axes=(), front_budget: float = 3.0) -> dict:
    """Writes <output>/sweep.md, sweep.csv and sweep_front.png (atomically); returns
    {"files", "rows", "markdown"}."""
    rows = sweep_rows(output, points, axes)
    table = reporting.sweep_table(rows, [field for field, _ in axes], front_budget)
    paths = {key: os.path.join(output, name) for key, name in SWEEP_FILES.items()}
    files = [fileio.write_text_atomic(paths["markdown"], table["markdown"]),
             fileio.write_text_atomic(paths["csv"], table["csv"])]
    if reporting.front_points(rows, front_budget):
        files.append(reporting.plot_sweep_front(rows, front_budget, paths["figure"]))
    print(table["markdown"], flush=True)
    print(f"[sweep] written: {', '.join(files)}", flush=True)
    return {"files": files, "rows": rows, "markdown": table["markdown"]}
