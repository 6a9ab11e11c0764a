"""What a sweep runs: its grid (`parse_grid`: `loss.coupling=0.5,0.8,0.9` and `model=gmm_dae,robust`
give the cartesian product), the `Point`s of the grid (`make_points`, `with_model_epochs`), their checks
before anything trains (`check_points`) and the evaluation settings given as "name=value" strings
(`parse_settings`). Running the points is `robust_dae_tf.pipeline.experiments`."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import typing

from robust_dae_tf import config_lib
from robust_dae_tf.errors import ConfigError
from robust_dae_tf.evaluation.settings import EvaluationSettings

# Short names of grid axes: --grid=model=... is config.model.variant.
ALIASES = {"model": "model.variant", "epochs": "train.epochs", "seed": "train.seed"}


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
