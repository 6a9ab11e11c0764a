"""The rows of the tables (one model under one protocol: `make_row`) and their Markdown and
CSV: Table 1 (robustness and fidelity) and Table 3 (downstream classifier), the success
levels sentence, and `parse_markdown_table`. Column conventions: the `robust_dae_tf.reporting`
docstring."""

from __future__ import annotations

import csv
import io

from robust_dae_tf.attacks import objectives as attack_objectives
from robust_dae_tf.attacks.objectives import PAPER_OBJECTIVES


def table1_legend(objectives=PAPER_OBJECTIVES) -> str:
    """The legend under Table 1 for the attacks in it."""
    return (
        "x: clean test image, x_a: adversarial image, x~_a: reconstruction of x_a; "
        + "; ".join(o.legend for o in objectives)
        + ". The MS-SSIM(x_r, x_a) columns compare the clean input x with x_a (as in the paper's text). Cells: "
        "mean ± std over trials, the mean alone for one trial (MS-SSIM in the paper's convention). FD: Frechet "
        "distance of decoded prior samples "
        "vs test images with the named feature extractor (FID-keras-inception is not comparable to published FIDs)."
    )


TABLE1_LEGEND = table1_legend()  # of the paper's two attacks


def objectives_of(rows: list[dict]) -> list:
    """The attacks of the tables: the paper's two (always, "—" when missing), then every
    other registered objective (`attacks.register`) that some row's robustness report holds."""
    present = set()
    for row in rows:
        present.update((row.get("robustness") or {}).keys())
    extra = [o for o in attack_objectives.OBJECTIVES.values() if o not in PAPER_OBJECTIVES and o.name in present]
    return [*PAPER_OBJECTIVES, *extra]


def table1_columns(objectives=PAPER_OBJECTIVES) -> list[tuple[str, str, str, str]]:
    """(attack, metric, Markdown header, direction) of the Table 1 column groups."""
    return [(o.name, metric, header, arrow) for o in objectives for metric, header, arrow in o.table_columns]


def _budget_label(key: str) -> str:
    return f"{float(key):g}"


DEFAULT_PROTOCOL = "strong"  # robustness.DEFAULT_PROTOCOL (no TensorFlow here); evaluations before protocols
PROTOCOL_TEXT = {
    "strong": "strong (this project's attack, `--attack_method`, default batched PGD with exploration and "
              "refinement; deterministic reconstructions)",
    "paper": "paper (the paper's attacker: scipy L-BFGS-B from one d-ball start, the budget enforced inside the "
             "objective; reported reconstructions decoded with latent noise, std 0.4 for the latent attack and "
             "0.004 for maximum damage)",
}
SPLIT_TEXT = {"test": "the test split", "heldout_train": "held-out training images (after the model's "
                                                         "data.max_train_examples)"}


def make_row(name: str, robustness: dict | None = None, classifier: dict | None = None,
             fid: dict | None = None, protocol: str = DEFAULT_PROTOCOL, split: str = "test") -> dict:
    """One model's results under one evaluation protocol: {"name", "protocol", "split"
    (the attacked images' split), "robustness", "classifier", "fid"} (any part may be None)."""
    return {"name": name, "protocol": protocol, "split": split, "robustness": robustness, "classifier": classifier,
            "fid": fid}


def row_protocol(row: dict) -> str:
    """The evaluation protocol of a row ("strong" for rows written before protocols existed)."""
    return str(row.get("protocol") or DEFAULT_PROTOCOL)


def row_name(metadata: dict | None, fallback: str) -> str:
    """"<variant> (<dataset>)" from SavedModel metadata, else `fallback` (a directory name)."""
    metadata = metadata or {}
    variant, dataset = metadata.get("variant"), metadata.get("dataset")
    if variant and dataset:
        return f"{variant} ({dataset})"
    return str(variant or dataset or fallback)


def model_metadata(row: dict) -> dict:
    """The "model" section (path, dataset, variant, name) of a row's first report that has one."""
    for key in ("robustness", "classifier", "fid"):
        part = row.get(key)
        if isinstance(part, dict) and isinstance(part.get("model"), dict):
            return part["model"]
    return {}


def budgets_of(rows: list[dict]) -> list[str]:
    """Sorted union of the budget keys of all rows' robustness reports."""
    keys = set()
    for row in rows:
        rob = row.get("robustness") or {}
        for objective in objectives_of([row]):
            keys.update((rob.get(objective.name) or {}).keys())
    return sorted(keys, key=float)


def _stat(row: dict, attack: str, metric: str, key: str):
    try:
        stat = row["robustness"][attack][key][metric]
        return float(stat["mean"]), float(stat["std"])
    except (KeyError, TypeError):
        return None


def _cell(row: dict, attack: str, metric: str, key: str, digits: int) -> str:
    """"mean ± std" of a Table 1 cell; the mean alone when it averages one value (its "n",
    the seeds of a row aggregated over training seeds, else the row's trials is 1), whose
    std of 0 would read as a measured spread; "—" when absent."""
    stat = _stat(row, attack, metric, key)
    if stat is None:
        return "—"
    mean, std = stat
    entry = row["robustness"][attack][key][metric]
    count = entry.get("n", ((row["robustness"].get("protocol") or {}).get("trials")))
    if count == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _fd(row: dict):
    fid = row.get("fid") or {}
    if "value" not in fid:
        return None, ""
    return float(fid["value"]), str(fid.get("name", "FD"))


def _fd_cell(row: dict, value) -> str:
    """"value", or "mean ± std" for a row aggregated over training seeds."""
    if value is None:
        return "—"
    fid = row.get("fid") or {}
    if len(fid.get("values") or []) > 1:
        return f"{value:.2f} ± {float(fid['std']):.2f}"
    return f"{value:.2f}"


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def _csv(header: list[str], body: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return out.getvalue()


def table1_header(budgets: list[str], objectives=PAPER_OBJECTIVES) -> list[str]:
    header = ["Model", "Protocol"]
    for _, _, title, arrow in table1_columns(objectives):
        header += [f"{title} {arrow} λ={_budget_label(b)}" for b in budgets]
    return header + ["FD ↓", "FD features"]


def table1_markdown(rows: list[dict], digits: int = 3) -> str:
    """Markdown table in the layout of the paper's Table 1, one row per model."""
    budgets = budgets_of(rows)
    objectives = objectives_of(rows)
    body = []
    for row in rows:
        cells = [str(row["name"]), row_protocol(row)]
        for attack, metric, _, _ in table1_columns(objectives):
            cells += [_cell(row, attack, metric, b, digits) for b in budgets]
        value, name = _fd(row)
        cells += [_fd_cell(row, value), name or "—"]
        body.append(cells)
    return _markdown(table1_header(budgets, objectives), body)


def table1_csv(rows: list[dict]) -> str:
    """CSV with full precision: every attack metric's mean and std per budget, then the FD."""
    budgets = budgets_of(rows)
    objectives = objectives_of(rows)
    header = ["model", "protocol", "split"]
    for objective in objectives:
        for metric in objective.metrics:
            for b in budgets:
                header += [f"{objective.name}.{metric}.lambda={_budget_label(b)}.mean",
                           f"{objective.name}.{metric}.lambda={_budget_label(b)}.std"]
    header += ["fd", "fd_name"]
    body = []
    for row in rows:
        cells = [row["name"], row_protocol(row), row.get("split") or "test"]
        for objective in objectives:
            for metric in objective.metrics:
                for b in budgets:
                    stat = _stat(row, objective.name, metric, b)
                    cells += ["", ""] if stat is None else [repr(stat[0]), repr(stat[1])]
        value, name = _fd(row)
        cells += ["" if value is None else repr(value), name]
        body.append(cells)
    return _csv(header, body)


def _accuracies(row: dict):
    cls = row.get("classifier") or {}
    if "clean_accuracy" not in cls:
        return None
    attacked = cls.get("attacked_accuracy") or {}
    return (float(cls["clean_accuracy"]), attacked.get("mean"), attacked.get("std"),
            len(attacked.get("values") or []), float(cls.get("budget", 1.0)))


def _attacked_cell(mean, std, n: int) -> str:
    if mean is None:
        return "—"
    if n > 1:
        return f"{100 * mean:.2f} ± {100 * std:.2f}"
    return f"{100 * mean:.2f}"


def table3_markdown(rows: list[dict]) -> str:
    """Markdown table like the paper's Table 3 (accuracies in %)."""
    budgets = sorted({acc[4] for acc in map(_accuracies, rows) if acc})
    label = "/".join(f"{b:g}" for b in budgets) or "1"
    body = []
    for row in rows:
        acc = _accuracies(row)
        if acc is None:
            body.append([str(row["name"]), row_protocol(row), "—", "—"])
            continue
        clean, mean, std, n, _ = acc
        over_seeds = (row.get("classifier") or {}).get("clean_accuracy_over_seeds") or {}
        clean_cell = _attacked_cell(clean, over_seeds.get("std"), len(over_seeds.get("values") or []))
        body.append([str(row["name"]), row_protocol(row), clean_cell, _attacked_cell(mean, std, n)])
    return _markdown(["Model", "Protocol", "clean acc. (%) ↑", f"λ={label} acc. (%) ↑"], body)


def table3_csv(rows: list[dict]) -> str:
    header = ["model", "protocol", "clean_accuracy", "attacked_accuracy.mean", "attacked_accuracy.std", "budget",
              "num_attacked"]
    body = []
    for row in rows:
        acc = _accuracies(row)
        if acc is None:
            body.append([row["name"], row_protocol(row), "", "", "", "", ""])
            continue
        clean, mean, std, _, budget = acc
        body.append([row["name"], row_protocol(row), repr(clean), "" if mean is None else repr(float(mean)),
                     "" if std is None else repr(float(std)), repr(budget),
                     row["classifier"].get("num_attacked", "")])
    return _csv(header, body)


def success_levels_markdown(robustness: dict | None, digits: int = 3) -> str:
    """One sentence with the report's success levels (see `robustness` module docstring),
    one clause per attack that has one (`Objective.success_level_text`); "" without levels."""
    levels = (robustness or {}).get("success_levels") or {}
    clauses = []
    for objective in objectives_of([{"robustness": robustness}]):
        level = (levels.get(objective.name) or {}).get(objective.main_metric)
        if level is not None:
            clauses.append(objective.success_level_text.format(value=f"{level['mean']:.{digits}f}"))
    if not clauses:
        return ""
    return f"Success levels (same images and targets, no attack): {'; '.join(clauses)}."


def attack_markdown(robustness: dict | None) -> str:
    """One sentence naming the attack that ran, when it is not the strong protocol's plain
    float32 PGD (whose protocol sentence says it all, as for the paper protocol): the method,
    per attack the gradient evaluations per image it spent (`attack_runs`) and the precision
    its search ran in (`attacks.precision`; with the run-time measurement under "auto");
    "" otherwise."""
    robustness = robustness or {}
    protocol = robustness.get("protocol") or {}
    method = (protocol.get("attack") or {}).get("method", "pgd")
    runs = robustness.get("attack_runs") or {}
    logs = {name: [log for log in (by_budget or {}).values() if log] for name, by_budget in runs.items()}
    if protocol.get("name") == "paper" or not any(logs.values()):
        return ""
    if method == "pgd" and all(log.get("precision", "float32") == "float32" for v in logs.values() for log in v):
        return ""
    clauses = []
    for name, attack_logs in logs.items():
        if not attack_logs:
            continue
        spent = sorted({float(log["gradient_evaluations_per_image"]) for log in attack_logs
                        if log.get("gradient_evaluations_per_image") is not None})
        precisions = sorted({log.get("precision", "float32") for log in attack_logs})
        clause = f"{name}: {' / '.join(f'{e:g}' for e in spent) or '?'} gradient evaluations per image, " \
                 f"search in {' / '.join(precisions)}"
        speedups = [log["precision_measurement"]["speedup"] for log in attack_logs if log.get("precision_measurement")]
        if speedups:
            clause += f" (auto: bfloat16 measured {min(speedups):.2f}x as fast)"
        clauses.append(clause)
    scored = (" What the bfloat16 search found was scored with the float32 model, as every reported number."
              if any(log.get("precision") == "bfloat16" for v in logs.values() for log in v) else "")
    return f"Attack: `{method}`; {'; '.join(clauses)}.{scored}"


def local_gain_markdown(robustness: dict | None, digits: int = 3) -> str:
    """One sentence with each attack's local gain at the attacked images (report["local_gain"],
    `evaluation.robustness` "Local gain": mean, median and std over the images, and the
    images where it is not finite), "" when it was not measured."""
    gains = (robustness or {}).get("local_gain") or {}
    if not gains:
        return ""
    clauses = []
    for name, g in gains.items():
        if g.get("mean") is None:
            clauses.append(f"{name}: not finite at any image")
            continue
        clause = (f"{name} mean {g['mean']:.{digits}g}, median {g['median']:.{digits}g}, "
                  f"std {g['std']:.{digits}g} over {g['images'] - g['non_finite_images']} images")
        if g["non_finite_images"]:
            clause += f" ({g['non_finite_images']} left out: the model is not finite near them)"
        clauses.append(clause)
    return ("Local gain at the attacked images (attack-free, first order: the operator norm of the Jacobian of "
            f"what each attack compares, at the clean image; docs/attacks.md, Local gain): {'; '.join(clauses)}.")


def parse_markdown_table(text: str) -> list[dict]:
    """Rows of the first Markdown table in `text` as dicts header -> cell (for tests/tools)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("|"):
            lines.append(line.strip())
        elif lines:
            break
    if len(lines) < 2:
        return []
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    header = split(lines[0])
    return [dict(zip(header, split(line))) for line in lines[2:]]
