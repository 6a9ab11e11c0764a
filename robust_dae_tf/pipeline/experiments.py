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
import itertools
import json
import logging
import math
import os
import re
import time
import typing

from robust_dae_tf import config_lib, fileio, locking, reporting
from robust_dae_tf.errors import ConfigError, UserError
from robust_dae_tf.pipeline.artifacts import MARKER
from robust_dae_tf.pipeline.evaluation import EvaluationSettings

logger = logging.getLogger(__name__)

ENGINES = ("local", "ray")
POINTS_DIR = "points"
POINT_FILE = "point.json"
RESULT_FILE = "result.json"
# Short names of grid axes: --grid=model=... is config.model.variant.
ALIASES = {"model": "model.variant", "epochs": "train.epochs", "seed": "train.seed"}
SWEEP_FILES = {"markdown": "sweep.md", "csv": "sweep.csv", "figure": "sweep_front.png"}


@dataclasses.dataclass(frozen=True)
class Point:
    """One train -> export -> evaluate run of a sweep. `overrides` are the grid's values
    for this point, ((dotted config field, value), ...), applied to the base config."""

    name: str
    dataset: str
    model: str
    overrides: tuple = ()
    epochs: int = 1
    seed: int = 0

    def config(self, base):
        """The point's run config: a copy of `base` with its overrides."""
        config = config_lib.from_dict(json.loads(config_lib.to_json(base)))
        for field, value in self.overrides:
            section, _, key = field.rpartition(".")
            node = config_lib.get_field(config, section) if section else config
            node[key] = value
        return config


# ------------------------------------------------------------------ grid parsing


def _split_values(text: str) -> list[str]:
    """Comma-separated values; commas inside (...) or [...] belong to a tuple value."""
    values, depth, current = [], 0, ""
    for char in text:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return values


def parse_value(text: str, like):
    """`text` as a value of the type of `like` (a config field's current value); ValueError if it is not one."""
    if isinstance(like, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    if isinstance(like, (tuple, list)):
        inner = text.strip()
        if inner[:1] in "([" and inner[-1:] in ")]":
            inner = inner[1:-1]
        items = [v for v in _split_values(inner) if v != ""]
        element = like[0] if like else ""
        return tuple(parse_value(v, element) for v in items)
    if isinstance(like, str):
        return text
    raise ValueError(f"fields of type {type(like).__name__} cannot be swept")


def _placeholder_example(section, key):
    """A value of the type declared for the unset placeholder `section.key`
    (`ml_collections.config_dict.placeholder`), or None when none is declared."""
    try:
        declared = section.get_ref(key).get_type()
    except (AttributeError, KeyError, TypeError):
        return None
    return declared() if declared in (bool, int, float, str) else None


def _type_name(like) -> str:
    if isinstance(like, bool):
        return "true or false"
    if isinstance(like, (tuple, list)):
        return f"a tuple like ({', '.join(map(str, like))})"
    return {int: "an integer", float: "a number", str: "a string"}.get(type(like), type(like).__name__)


def parse_grid(specs, base) -> list[tuple[str, tuple]]:
    """[(dotted field, values), ...] of `--grid` flags like "loss.coupling=0.5,0.8" or
    "model=gmm_dae,robust", each value parsed as the type of the field in `base`.
    One ConfigError naming the flag for a malformed flag, an unknown field, a value of
    the wrong type, a field given twice or a value listed twice."""
    axes, seen = [], {}
    for spec in specs or ():
        flag = f"--grid={spec}"
        field, sep, text = spec.partition("=")
        field = field.strip()
        if not sep or not field or not text.strip():
            raise ConfigError(f"{flag}: expected --grid=<config field>=<value>,<value>,... "
                              "(e.g. --grid=loss.coupling=0.5,0.9 or --grid=model=gmm_dae,robust).")
        field = ALIASES.get(field, field)
        if field == "dataset":
            raise ConfigError(f"{flag}: a sweep runs on one dataset (--dataset); start one sweep per dataset.")
        node, walked = base, []
        for part in field.split("."):
            keys = list(node.keys()) if hasattr(node, "keys") else []
            if part not in keys:
                where = f"config.{'.'.join(walked)}" if walked else "the config"
                raise ConfigError(f"{flag}: {where} has no field {part!r}; its fields are {', '.join(map(str, keys))} "
                                  "(see robust_dae_tf/config_lib.py).")
            parent, node = node, node[part]
            walked.append(part)
        if node is None:  # an unset placeholder (e.g. train.jit_compile: automatic): its declared type
            node = _placeholder_example(parent, walked[-1])
        if hasattr(node, "keys"):
            raise ConfigError(f"{flag}: config.{field} is a section, not a field; its fields are "
                              f"{', '.join(map(str, node.keys()))}.")
        if field in seen:
            raise ConfigError(f"{flag}: config.{field} is already swept by --grid={seen[field]}; give it once.")
        seen[field] = spec
        values = []
        for raw in _split_values(text):
            try:
                value = parse_value(raw, node)
            except ValueError:
                raise ConfigError(f"{flag}: {raw!r} is not {_type_name(node)} (the type of config.{field}).") from None
            if value in values:
                raise ConfigError(f"{flag}: the value {raw!r} is listed twice.")
            values.append(value)
        axes.append((field, tuple(values)))
    return axes


def _format(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "-".join(_format(v) for v in value)
    return str(value)


def point_names(axes, combos) -> list[str]:
    """Directory names of grid points: the model name for the model axis, <leaf>=<value>
    for the others (the full field when two axes share a leaf), joined with "_"."""
    leaves = [field.rsplit(".", 1)[-1] for field, _ in axes]
    labels = [field if leaves.count(leaf) > 1 else leaf for (field, _), leaf in zip(axes, leaves)]
    names = []
    for combo in combos:
        parts = [_format(v) if field == "model.variant" else f"{label}={_format(v)}"
                 for (field, _), label, v in zip(axes, labels, combo)]
        names.append(re.sub(r"[^A-Za-z0-9._=+-]", "_", "_".join(parts)) or "base")
    return names


def make_points(base, axes) -> list[Point]:
    """The cartesian product of the grid `axes` (from `parse_grid`) over the base config."""
    combos = list(itertools.product(*(values for _, values in axes)))
    names = point_names(axes, combos)
    points = []
    for name, combo in zip(names, combos):
        overrides = tuple((field, value) for (field, _), value in zip(axes, combo))
        values = dict(overrides)
        points.append(Point(name=name, dataset=base.dataset,
                            model=values.get("model.variant", base.model.variant), overrides=overrides,
                            epochs=int(values.get("train.epochs", base.train.epochs)),
                            seed=int(values.get("train.seed", base.train.seed))))
    if len(set(names)) != len(names):
        raise ConfigError(f"grid points share a directory name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}); "
                          "give values that differ in their printed form.")
    return points


def with_model_epochs(points, items, flag: str = "--model_epochs") -> list[Point]:
    """`points` with the epoch budget of some models replaced (bin/reproduce.py
    --model_epochs): `items` are "<model>=<epochs>" strings, e.g. ["lipschitz_vae=30"] for a
    model whose steps cost too much for the common --epochs. Such a point keeps its
    directory points/<model>/ (its run resumes and continues as any other) and its stage
    is e<epochs>; its config gets train.epochs = <epochs>. One ConfigError naming `flag`
    for a malformed item, a model not among the points, a model given twice, or epochs
    that are not a positive integer."""
    models = [p.model for p in points]
    budgets: dict = {}
    for item in items:
        model, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not model or not value:
            raise ConfigError(f"{flag}={item}: expected <model>=<epochs>, e.g. {flag}=lipschitz_vae=30.")
        if model not in models:
            raise ConfigError(f"{flag}={item}: {model!r} is not one of the models run ({', '.join(models)}).")
        if model in budgets:
            raise ConfigError(f"{flag}: {model} is given twice; give one budget per model.")
        try:
            epochs = int(value)
        except ValueError:
            epochs = 0
        if epochs < 1 or str(epochs) != value:
            raise ConfigError(f"{flag}={item}: the epochs must be a positive integer, got {value!r}.")
        budgets[model] = epochs
    return [dataclasses.replace(p, epochs=budgets[p.model],
                                overrides=(*(o for o in p.overrides if o[0] != "train.epochs"),
                                           ("train.epochs", budgets[p.model])))
            if p.model in budgets else p for p in points]


def check_points(base, points, axes=(), axis_flags=()) -> None:
    """Validates every point's config before anything runs; a failure names the flag of
    the axis (`axis_flags`, e.g. "--grid=loss.coupling=0.5,2") and the value that cause it
    when one override alone does."""
    from robust_dae_tf.pipeline.training import canonical_dataset  # pylint: disable=import-outside-toplevel

    flags = dict(zip((field for field, _ in axes), axis_flags))
    for point in points:
        config = point.config(base)
        with config.unlocked():
            config.dataset = canonical_dataset(config.dataset)
        try:
            config_lib.validate(config)
        except ConfigError as err:
            for field, value in point.overrides:
                single = Point("single", point.dataset, point.model, ((field, value),)).config(base)
                try:
                    config_lib.validate(single)
                except ConfigError:
                    raise ConfigError(f"{flags.get(field, field)}: the value {_format(value)} is invalid: "
                                      f"{err}") from None
            raise ConfigError(f"grid point {point.name}: {err}") from None


# ------------------------------------------------------------------ evaluation settings


def parse_settings(items, defaults: EvaluationSettings | None = None, **fixed) -> EvaluationSettings:
    """EvaluationSettings from "name=value" strings (the `--eval` pass-through of
    bin/sweep.py and bin/reproduce.py: every bin/evaluate.py flag, e.g. trials=2,
    budgets=1,3,5, skip_fid=true), each parsed as the field's type; `fixed` are set by
    the caller. One ConfigError naming the item for an unknown field or a bad value."""
    defaults = defaults or EvaluationSettings()
    hints = typing.get_type_hints(EvaluationSettings)
    names = [f.name for f in dataclasses.fields(EvaluationSettings)]
    values = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise ConfigError(f"--eval={item}: expected --eval=<setting>=<value> with a setting of bin/evaluate.py: "
                              f"{', '.join(n for n in names if n not in fixed)}.")
        if name in fixed:
            raise ConfigError(f"--eval={item}: {name} is set by the sweep for each point; leave it out.")
        hint = hints[name]
        kinds = [k for k in typing.get_args(hint) if k is not type(None)] or [hint]
        kind = kinds[0]
        if text.strip().lower() in ("none", "") and type(None) in typing.get_args(hint):
            values[name] = None
            continue
        try:
            values[name] = text if kind is tuple else parse_value(text, kind())
        except ValueError:
            raise ConfigError(f"--eval={item}: {text!r} is not {_type_name(kind())} (the type of {name}).") from None
    return dataclasses.replace(defaults, **values, **fixed)


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
    from robust_dae_tf import cli  # pylint: disable=import-outside-toplevel

    cli.quiet_tensorflow()
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
