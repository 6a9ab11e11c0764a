"""Evaluations of models that differ only in their training seed, as one row whose cells are
mean ± std over seeds (`aggregate_over_seeds`, bin/compare.py --over_seeds)."""

from __future__ import annotations

import json
import os

import numpy as np

from robust_dae_tf.errors import UserError
from robust_dae_tf.reporting.tables import _stat, budgets_of, make_row, model_metadata, objectives_of, row_protocol


# Config fields that do not change what is trained (logging, checkpoint cadence): ignored
# when deciding whether two models differ only in their training seed.
NOT_TRAINING_SETTINGS = {"train": ("seed", "verbose", "log_every_steps", "images_every_epochs",
                                   "checkpoint_every_steps", "keep_checkpoints")}


def training_seed_group(row: dict) -> tuple[str, int]:
    """(group key, training seed) of a row: rows with equal keys are the same model
    (variant, dataset, every training setting but the seed; read from the SavedModel's
    `robust_dae_tf.json` at the path the report records) evaluated the same way (the
    robustness report's protocol). UserError naming the row when that metadata is gone."""
    from robust_dae_tf import export  # pylint: disable=import-outside-toplevel

    path = model_metadata(row).get("path")
    config = export.read_metadata(path).get("config") if path and os.path.isdir(path) else None
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise UserError(f"{row['name']}: its model's config (robust_dae_tf.json in {path}) is not readable, so its "
                        "training seed is unknown; keep the SavedModel at the path its evaluation records, or "
                        "compare without --over_seeds.")
    from robust_dae_tf import config_lib  # pylint: disable=import-outside-toplevel

    # Today's schema: a config saved before a field was added or renamed reads with the
    # field's default / new name, so it still groups with a model trained later.
    config = json.loads(config_lib.to_json(config_lib.from_dict(config)))
    seed = int(config["train"].get("seed", 0))
    for section, fields in NOT_TRAINING_SETTINGS.items():
        for field in fields:
            (config.get(section) or {}).pop(field, None)
    # The protocol's name and decode noise (a function of the name) are missing from reports
    # written before protocols existed; the rest (budgets, images, trials, attack) must match.
    settings = {k: v for k, v in ((row.get("robustness") or {}).get("protocol") or {}).items()
                if k not in ("name", "decode_noise_std")}
    if "attack_by_kind" in settings:
        # The settings each attack ran with (resolved per model) decide; the request they were
        # resolved from ("attack": None = automatic, or the same value given explicitly) does not.
        settings.pop("attack", None)
    protocol = [row_protocol(row), row.get("split") or "test", settings]
    return json.dumps([model_metadata(row).get("variant"), model_metadata(row).get("dataset"), config, protocol],
                      sort_keys=True, default=str), seed


def _over_seeds(values: list[float]) -> dict:
    """{"mean", "std" (sample std, ddof=1; 0 for one seed), "values"} of per-seed numbers."""
    array = np.asarray(values, np.float64)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "values": [float(v) for v in array]}


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    return {prefix[:-1]: json.dumps(value, sort_keys=True, default=str)}


def _setting_text(value) -> str:
    """A flattened setting (JSON text; None = absent in this group) as shown in a row name."""
    if value is None:
        return "—"
    parsed = json.loads(value)
    return parsed if isinstance(parsed, str) else value


def _distinguishing_settings(groups: dict) -> dict:
    """{group key: "setting=value, ..."} for groups whose rows share a name with another
    group (e.g. robust trained with loss.weighting=paper and =reference): the training
    settings (then the evaluation settings) in which those groups differ, so that the
    rows can be told apart. Keys in `training_seed_group`'s format; others get "group <i>"."""
    by_name: dict = {}
    for key, group in groups.items():
        by_name.setdefault(group[0][1]["name"], []).append(key)
    labels = {}
    for keys in by_name.values():
        if len(keys) < 2:
            continue
        try:
            parsed = {k: json.loads(k) for k in keys}
            flat = {k: {**_flatten(v[2]), "protocol": json.dumps(v[3][0]), "split": json.dumps(v[3][1]),
                        **{f"protocol.{n}": x for n, x in _flatten(v[3][2]).items()}} for k, v in parsed.items()}
        except (ValueError, TypeError, IndexError, KeyError):
            labels.update({k: f"group {i + 1}" for i, k in enumerate(keys)})
            continue
        fields = sorted({f for values in flat.values() for f in values})
        differing = [f for f in fields if len({flat[k].get(f) for k in keys}) > 1]
        training = [f for f in differing if f not in ("protocol", "split") and not f.startswith("protocol.")]
        if not training and ("protocol" in differing or "split" in differing):
            continue  # told apart by the table's Protocol / split, each protocol has its own attack settings
        for i, k in enumerate(keys):
            shown = [f"{f}={_setting_text(flat[k].get(f))}" for f in training or differing]
            labels[k] = ", ".join(shown) or f"group {i + 1}"
    return labels


def aggregate_over_seeds(rows: list[dict], seed_group=training_seed_group) -> list[dict]:
    """One row per group of rows that differ only in the training seed (`seed_group`),
    in the order each group first appears: every Table 1 cell is the mean over seeds of
    each seed's trial mean, and its "std" is the std OVER SEEDS (sample std, ddof=1), not
    over trials; the classifier's accuracies and the Frechet distance likewise (their
    "std" over seeds). The row is named "<name>, <n> seeds (<seeds>)", with the settings
    that tell it apart, "<name> [loss.weighting=reference], ...", when another group has
    the same name (`_distinguishing_settings`). A group whose
    rows lack a cell that others have shows the cell from the seeds that have it, with
    "n" recording how many; the classifier and the FD are shown only when every seed has
    them ("—" otherwise). Two rows with the same seed in one group are refused."""
    groups: dict = {}
    for row in rows:
        key, seed = seed_group(row)
        group = groups.setdefault(key, [])
        if seed in [s for s, _ in group]:
            raise UserError(f"{row['name']} and another evaluation are the same model with the same training seed "
                            f"({seed}); pass each trained model once.")
        group.append((seed, row))
    out = []
    labels = _distinguishing_settings(groups)
    for group_key, group in groups.items():
        group = sorted(group, key=lambda item: item[0])
        seeds = [s for s, _ in group]
        members = [r for _, r in group]
        first = members[0]
        robustness = None
        if any(r.get("robustness") for r in members):
            robustness = json.loads(json.dumps(next(r["robustness"] for r in members if r.get("robustness"))))
            for objective in objectives_of(members):
                for key in budgets_of(members):
                    for metric in (robustness.get(objective.name) or {}).get(key, {}):
                        stats = [_stat(r, objective.name, metric, key) for r in members]
                        values = [s[0] for s in stats if s is not None]
                        if values:
                            robustness[objective.name][key][metric] = {**_over_seeds(values), "n": len(values)}
        classifier = None
        accuracies = [r.get("classifier") for r in members if (r.get("classifier") or {}).get("clean_accuracy")
                      is not None]
        if len(accuracies) == len(members):  # a part some seeds skipped is not shown as theirs
            classifier = json.loads(json.dumps(accuracies[0]))
            clean = _over_seeds([c["clean_accuracy"] for c in accuracies])
            classifier["clean_accuracy"], classifier["clean_accuracy_over_seeds"] = clean["mean"], clean
            attacked = [(c.get("attacked_accuracy") or {}).get("mean") for c in accuracies]
            if all(a is not None for a in attacked):
                classifier["attacked_accuracy"] = _over_seeds(attacked)
        fid = None
        fds = [r.get("fid") for r in members if "value" in (r.get("fid") or {})]
        if len(fds) == len(members):
            fid = {**fds[0], **{k: v for k, v in _over_seeds([f["value"] for f in fds]).items() if k != "mean"},
                   "value": float(np.mean([f["value"] for f in fds]))}
        name = first["name"] + (f" [{labels[group_key]}]" if labels.get(group_key) else "")
        name = f"{name}, {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
        out.append({**make_row(name, robustness, classifier, fid, protocol=row_protocol(first),
                                split=first.get("split") or "test"), "seeds": seeds})
    return out
