"""Paired comparison of two models attacked on the same images (`bin/compare.py --paired A B`).

When two models (or two attack methods) are attacked on the same test images, with the
same targets and attack seeds, the question "is B more robust than A?" is answered per
image: d_i = m_B,i - m_A,i, where m is the attack's reported MS-SSIM in the paper's
convention (the Table 1 column, `Objective.main_metric`: latent MS-SSIM(x_t, x~_a), lower
= more robust; maximum damage MS-SSIM(x~, x~_a), higher = more robust). Per (protocol or
method, attack, budget) a row gives:

* n: the image-trials with a finite value in both (a NaN on either side drops the pair;
  the number dropped is the row's "dropped");
* the two means over those n pairs and the mean of d (B - A);
* SE = std(d, ddof=1) / sqrt(n), the standard error of the mean paired difference (NaN
  when n < 2), and mean(d) / SE (NaN when SE is 0 or NaN);
* "B more robust": the number of pairs on which B's value is the more robust one (ties
  count for neither side).

Several trials attack other images each; their image-trials are pooled, so SE treats them
as independent draws.

Evaluations made with `--local_gain` on both sides also get one row per (protocol, attack)
with the metric "local_gain": each model's local gain at the attacked images
(`evaluation.sensitivity`; no attack, so no budget: the row's budget is None), lower = more
robust, with the same statistics.

Two kinds of directory can be compared:

* evaluations written by `bin/evaluate.py` (`robustness/per_image.npz`; a `--protocol=both`
  directory pairs strong with strong and paper with paper). They attacked the same images
  when the protocol's seed, trial seeds, images and trials, the pool size, split and split
  start agree, the models' datasets agree, and the example images the evaluation saved
  (`robustness/examples.npz`, the first images of trial 0) are equal;
* outputs of `bin/check_attacks.py` (`cells/<attack>_<budget>_<method>.json`): cells pair by
  (method, attack, budget) and must hold the same image and target digests and seed in
  their fingerprints.

Anything else, or two directories that did not attack the same images, raises one
`UserError` naming the file or what differs. No TensorFlow is imported.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re

import numpy as np

from robust_dae_tf.reporting import evaluations, per_image
from robust_dae_tf.errors import UserError

LOCAL_GAIN = "local_gain"  # the per-image metric of evaluations made with --local_gain
COLUMNS = ("group", "attack", "budget", "metric", "n", "dropped", "mean_a", "mean_b", "mean_difference",
           "standard_error", "difference_over_se", "b_more_robust")

# The protocol fields that decide which images, targets and trials an evaluation attacks.
_SAME_IMAGES = ("seed", "trial_seeds", "num_images", "trials")
_CELL_NAME = re.compile(r"^(?P<attack>.+?)_(?P<budget>[0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)_(?P<method>.+)\.json$")


def paired_difference(a, b, higher_is_more_robust: bool) -> dict:
    """Statistics of d = b - a over the pairs where both are finite (see the module docstring).

    Args:
      a, b: per-image values of the same images, same length (any float dtype).
      higher_is_more_robust: True when a higher value is the more robust model's (maximum
        damage's MS-SSIM(x~, x~_a)); False for the latent attack's MS-SSIM(x_t, x~_a).
    """
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise UserError(f"paired values differ in length ({a.size} vs {b.size}): the two were not attacked on the "
                        "same images.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    d = b - a
    se = float(np.std(d, ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
    mean_d = float(np.mean(d)) if n else math.nan
    wins = int(np.sum(d > 0)) if higher_is_more_robust else int(np.sum(d < 0))
    return {"n": n, "dropped": int(keep.size - n), "mean_a": float(np.mean(a)) if n else math.nan,
            "mean_b": float(np.mean(b)) if n else math.nan, "mean_difference": mean_d, "standard_error": se,
            "difference_over_se": mean_d / se if se > 0 else math.nan, "b_more_robust": wins}


def _higher_is_more_robust(attack: str) -> bool:
    from robust_dae_tf import attacks  # pylint: disable=import-outside-toplevel

    return attacks.objective(attack).arrow == "↑"  # ConfigError naming an attack this installation lacks


def _main_metric(attack: str) -> str:
    from robust_dae_tf import attacks  # pylint: disable=import-outside-toplevel

    return attacks.objective(attack).main_metric


# ----------------------------------------------------------------------------- sources


def _evaluation_values(eval_dir: str) -> tuple[dict, dict]:
    """({(protocol, attack, budget key): (metric, values)}, identity) of one evaluation
    directory (one protocol)."""

    robustness = os.path.join(eval_dir, evaluations.ROBUSTNESS_DIR)
    report = evaluations.read_report(os.path.join(robustness, evaluations.ROBUSTNESS_FILE),
                        f"rerun bin/evaluate.py with --output={eval_dir}")
    npz = os.path.join(robustness, per_image.FILE)
    if not os.path.exists(npz):
        raise UserError(f"{npz} is missing: the evaluation kept no per-image values (rerun bin/evaluate.py with "
                        f"--output={eval_dir}).")
    try:
        values = per_image.load(npz)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{npz} cannot be read ({e}); rerun bin/evaluate.py with --output={eval_dir}.") from e
    protocol = report.get("protocol") or {}
    name = protocol.get("name", "strong")
    out = {}
    for attack, budgets in values.items():
        if attack == "trial":
            continue
        metric = _main_metric(attack)
        for key, metrics in budgets.items():
            if metric not in metrics:
                raise UserError(f"{npz} has no {metric} for {attack} at lambda={key}; rerun bin/evaluate.py.")
            out[(name, attack, key)] = (metric, metrics[metric])
        gains = [metrics[LOCAL_GAIN] for metrics in budgets.values() if LOCAL_GAIN in metrics]
        if gains:  # the same values under every budget (the gain has none): one row
            out[(name, attack, LOCAL_GAIN)] = (LOCAL_GAIN, gains[0])
    identity = {field: protocol.get(field) for field in _SAME_IMAGES}
    identity.update(pool_size=report.get("pool_size"), split=report.get("split"),
                    split_start=report.get("split_start"),
                    dataset=(report.get("model") or {}).get("dataset"))
    examples_path = os.path.join(robustness, evaluations.EXAMPLES_FILE)
    examples = evaluations.load_examples_npz(examples_path) if os.path.exists(examples_path) else {}
    identity["examples"] = {attack: np.asarray(entry["x"]) for attack, entry in examples.items() if "x" in entry}
    return out, identity


def _check_same_evaluation_images(dir_a: str, id_a: dict, dir_b: str, id_b: dict) -> None:
    for field, value in id_a.items():
        if field == "examples":
            continue
        if value != id_b.get(field):
            raise UserError(f"{dir_a} and {dir_b} did not attack the same images: {field} is {value!r} vs "
                            f"{id_b.get(field)!r}. Evaluate both with the same --seed, --num_images, --trials, "
                            "--pool_size, --split and data.")
    for attack, x in id_a["examples"].items():
        other = id_b["examples"].get(attack)
        if other is not None and (x.shape != other.shape or not np.array_equal(x, other)):
            raise UserError(f"{dir_a} and {dir_b} did not attack the same images: their saved {attack} example "
                            "images (robustness/examples.npz) differ.")


def _cell_values(check_dir: str) -> tuple[dict, dict]:
    """({(method, attack, budget key): (metric, values)}, {same key: fingerprint fields}) of a
    bin/check_attacks.py output directory."""
    paths = sorted(glob.glob(os.path.join(check_dir, "cells", "*.json")))
    out, identity = {}, {}
    for path in paths:
        match = _CELL_NAME.match(os.path.basename(path))
        if not match:
            continue
        stored = evaluations.read_report(path, f"rerun bin/check_attacks.py with --output={check_dir}")
        try:
            fingerprint = json.loads(stored["fingerprint"])
            values = stored["cell"]["msssim"]
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{path} is not a bin/check_attacks.py cell ({e!r} missing); rerun bin/check_attacks.py "
                            f"with --output={check_dir}.") from e
        key = (match["method"], match["attack"], match["budget"])
        out[key] = (_main_metric(match["attack"]), np.asarray(values, np.float64))
        identity[key] = {field: fingerprint.get(field) for field in ("images", "targets", "seed")}
    return out, identity


def _kind(directory: str) -> str:

    if not os.path.isdir(directory):
        raise UserError(f"{directory} is not a directory; pass two evaluation directories (bin/evaluate.py) or two "
                        "bin/check_attacks.py output directories.")
    if glob.glob(os.path.join(directory, "cells", "*.json")):
        return "check"
    if any(os.path.exists(os.path.join(d, evaluations.ROBUSTNESS_DIR, evaluations.ROBUSTNESS_FILE))
           for d in evaluations.expand_evaluation_dirs([directory])):
        return "evaluation"
    raise UserError(f"{directory} holds neither an evaluation's robustness report (robustness/robustness.json) nor "
                    "bin/check_attacks.py cells (cells/*.json).")


def paired_comparison(dir_a: str, dir_b: str) -> list[dict]:
    """Rows (keys: `COLUMNS`) of the paired comparison of B against A, one per (protocol or
    method, attack, budget) present in both directories, in A's order. Raises UserError when
    the directories are of different kinds, share no cell, or did not attack the same images."""

    kinds = (_kind(dir_a), _kind(dir_b))
    if kinds[0] != kinds[1]:
        raise UserError(f"{dir_a} is a {kinds[0]} directory and {dir_b} a {kinds[1]} directory: compare two "
                        "evaluations (bin/evaluate.py) or two attack checks (bin/check_attacks.py).")
    if kinds[0] == "check":
        values_a, identity_a = _cell_values(dir_a)
        values_b, identity_b = _cell_values(dir_b)
        for key in values_a.keys() & values_b.keys():
            if identity_a[key] != identity_b[key]:
                differs = [f for f in identity_a[key] if identity_a[key][f] != identity_b[key].get(f)]
                raise UserError(f"{dir_a} and {dir_b} did not attack the same images in cell {'/'.join(key)}: "
                                f"{', '.join(differs)} differ(s). Run bin/check_attacks.py with the same --dataset, "
                                "--data_dir, --num_images and --seed for both.")
    else:
        values_a, values_b = {}, {}
        by_protocol_b = {}
        for sub in evaluations.expand_evaluation_dirs([dir_b]):
            values, identity = _evaluation_values(sub)
            values_b.update(values)
            for key in values:
                by_protocol_b[key[0]] = (sub, identity)
        for sub in evaluations.expand_evaluation_dirs([dir_a]):
            values, identity = _evaluation_values(sub)
            values_a.update(values)
            for protocol in {key[0] for key in values}:
                if protocol in by_protocol_b:
                    _check_same_evaluation_images(sub, identity, *by_protocol_b[protocol])
    common = [key for key in values_a if key in values_b]
    if not common:
        raise UserError(f"{dir_a} and {dir_b} share no (protocol or method, attack, budget): nothing to compare.")
    rows = []
    for key in common:
        group, attack, budget = key
        metric, a = values_a[key]
        _, b = values_b[key]
        gain = metric == LOCAL_GAIN  # a lower gain is the more robust model's
        higher = False if gain else _higher_is_more_robust(attack)
        rows.append({"group": group, "attack": attack, "budget": None if gain else float(budget), "metric": metric,
                     **paired_difference(a, b, higher)})
    return rows


def _fmt(value: float, digits: int) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def paired_markdown(rows: list[dict], name_a: str, name_b: str, digits: int = 3) -> str:
    """The rows of `paired_comparison` as a Markdown table, with its legend."""
    lines = [f"| protocol / method | attack | λ | metric | n | A: {name_a} | B: {name_b} | B − A | SE | (B − A) / SE "
             "| B more robust on |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        dropped = f" ({r['dropped']} dropped)" if r["dropped"] else ""
        budget = "—" if r["budget"] is None else f"{r['budget']:g}"
        lines.append(f"| {r['group']} | {r['attack']} | {budget} | {r['metric']} | {r['n']}{dropped} "
                     f"| {_fmt(r['mean_a'], digits)} | {_fmt(r['mean_b'], digits)} "
                     f"| {_fmt(r['mean_difference'], digits)} | {_fmt(r['standard_error'], digits)} "
                     f"| {_fmt(r['difference_over_se'], 1)} | {r['b_more_robust']} / {r['n']} |")
    lines.append("")
    lines.append("Paired over the same attacked images (and targets): B − A is the mean per-image difference of the "
                 "reported MS-SSIM (paper convention), SE its standard error std(d, ddof=1) / sqrt(n); the more "
                 "robust value is the higher one for maximum damage, the lower one for the latent attack. "
                 "Image-trials of several trials are pooled.")
    if any(r["metric"] == LOCAL_GAIN for r in rows):
        lines.append("")
        lines.append("local_gain rows: each model's local gain at the same attacked images (no attack, no budget; "
                     "bin/evaluate.py --local_gain), lower = more robust.")
    return "\n".join(lines) + "\n"


def paired_csv(rows: list[dict]) -> str:
    """The rows of `paired_comparison` as CSV (columns `COLUMNS`, full precision)."""
    lines = [",".join(COLUMNS)]
    for r in rows:
        lines.append(",".join("" if r[c] is None else str(r[c]) for c in COLUMNS))
    return "\n".join(lines) + "\n"
