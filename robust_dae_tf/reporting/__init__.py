"""Reports of an evaluation: JSON, CSV, Markdown tables (paper Tables 1 and 3), figures
(attack curves like Fig. 2, image grids like Fig. 3) and TensorBoard summaries.

Layout of an evaluation directory (written by `bin/evaluate.py`; the three component
outputs are artifacts with `artifact.json` markers, see `robust_dae_tf.pipeline.evaluation`):

    <eval>/robustness/robustness.json   attacks: metrics per budget (+ examples.npz)
    <eval>/classifier/classifier.json   Table 3: clean / attacked accuracy
    <eval>/classifier_model/            classifier SavedModel (classify endpoint)
    <eval>/fid/fid.json                 Frechet distance of prior samples
    <eval>/summary.json                 everything above in one file (no arrays), written
                                          last by `write_report`, after all parts: an
                                          evaluation without it did not finish; a skipped
                                          part is null (see `load_evaluation`)
    <eval>/table1.md, table1.csv        Table 1 layout (one row: this model)
    <eval>/table3.md, table3.csv        Table 3 layout
    <eval>/report.md                    both tables + the figures
    <eval>/figures/attack_curves.png    Fig. 2-style curves (metric vs lambda, std bars)
    <eval>/figures/grid_latent.png      Fig. 3-style grids (rows: x, reconstruction,
    <eval>/figures/grid_max_damage.png    x_a, reconstruction of x_a, target)
    <eval>/tensorboard/                 scalars, figures and grids for TensorBoard

Every file is written to a temporary name and renamed into place.

Table 1 columns (paper convention): for each attack (`attacks.Objective.table_columns`;
the paper's two, then any other registered attack found in the reports) and budget lambda,
latent attack MS-SSIM(x_r, x~_a) with x_r = x_t (lower = more robust) and
MS-SSIM(x_r, x_a) which, as in the paper's text, compares the clean input x with the
adversarial input x_a; maximum damage MS-SSIM(x~_r, x~_a) with x~_r the clean
reconstruction (higher = more robust) and MS-SSIM(x, x_a); then the Frechet distance
with the name of its feature extractor (FID-keras-inception or FD-<dataset>-...,
see `robust_dae_tf.fid`). Cells are "mean ± std" over trials (the mean alone for one
trial). MS-SSIM values are the paper convention (`metrics.msssim.ms_ssim_paper`); the
CSV also holds the standard convention, L2 distances and attack losses.

`paper_comparison_markdown` (bin/compare.py --paper=<dataset>) puts each evaluated model
under the numbers the paper published for it (`robust_dae_tf.paper_results`).

TensorBoard steps: `tf.summary` steps are integers, so the attack curves use
step = lambda when every budget is an integer (the paper's 1, 3, 5: the x axis then
reads lambda directly) and otherwise step = index of the budget in increasing order;
the text summary "attack_curves/step_to_lambda" records the mapping in both cases.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os

import numpy as np

from robust_dae_tf import fileio, paper_results
from robust_dae_tf.attacks import objectives as attack_objectives
from robust_dae_tf.attacks.config import budget_key
from robust_dae_tf.attacks.objectives import LATENT, MAX_DAMAGE, PAPER_OBJECTIVES
from robust_dae_tf.errors import ConfigError, UserError

ROBUSTNESS_DIR, CLASSIFIER_DIR, CLASSIFIER_MODEL_DIR, FID_DIR = "robustness", "classifier", "classifier_model", "fid"
ROBUSTNESS_FILE, EXAMPLES_FILE, CLASSIFIER_FILE, FID_FILE = (
    "robustness.json", "examples.npz", "classifier.json", "fid.json")
SUMMARY_FILE = "summary.json"
FIGURES_DIR = "figures"
TENSORBOARD_DIR = "tensorboard"


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
GRID_ROWS = ("x", "reconstruction", "adversarial", "adversarial_reconstruction", "target")
GRID_ROW_LABELS = {"x": "x", "reconstruction": "x~ (rec.)", "adversarial": "x_a",
                   "adversarial_reconstruction": "x~_a", "target": "x_t (target)"}
GRID_CELL_PX, GRID_TITLE_PX, GRID_DPI = 80, 40, 80
CURVES_SIZE_IN, CURVES_DPI = (15.0, 4.5), 100


# ------------------------------------------------------------------ rows


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


# ------------------------------------------------------------------ Table 1


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


# ------------------------------------------------------------------ Table 3


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


# ------------------------------------------------------------------ comparison with the paper

PAPER_TABLE1_COLUMNS = (
    # (paper_results column, header without λ)
    ("latent_target_vs_adv_rec", "Latent: MS-SSIM(x_r, x~_a) ↓"),
    ("max_damage_rec_vs_adv_rec", "Max damage: MS-SSIM(x~_r, x~_a) ↑"),
    ("latent_input_vs_adv", "Latent: MS-SSIM(x, x_a)"),
    ("max_damage_input_vs_adv", "Max damage: MS-SSIM(x, x_a)"),
)
PAPER_LEGEND = (
    "Rows \"<model>, paper\": the numbers published by Saseendran et al. (NeurIPS 2022), Table 1 "
    "(and Table 2 for GMM-DAE and Augmented, which reports no MS-SSIM(x, x_a) columns; Table 3 for the "
    "accuracies), as printed: two decimals, no std; the paper's \"MS-SSIM(x_r, x_a)\" columns compare "
    "the clean input x with x_a, so they are headed MS-SSIM(x, x_a) here. The rows below each paper row are "
    "our evaluations of the same model (mean ± std over trials, the mean alone for one trial; MS-SSIM in the "
    "paper's convention), with "
    "their evaluation protocol in brackets: [paper] is measured as the paper's numbers were, [strong] with "
    "this project's stronger attack. "
    "The paper's FID (Inception features, its own samples and preprocessing) and our FD (named feature "
    "extractor) are on different scales: compare the ordering of models, not the values."
)


def check_paper_dataset(dataset) -> str:
    """`dataset` if the paper reports it (`paper_results.DATASETS`), else ConfigError."""
    if dataset not in paper_results.DATASETS:
        raise ConfigError(f"the paper has no results for dataset {dataset!r}; choose one of "
                          f"{', '.join(paper_results.DATASETS)}.")
    return dataset


def model_metadata(row: dict) -> dict:
    """The "model" section (path, dataset, variant, name) of a row's first report that has one."""
    for key in ("robustness", "classifier", "fid"):
        part = row.get(key)
        if isinstance(part, dict) and isinstance(part.get("model"), dict):
            return part["model"]
    return {}


def _paper_groups(rows: list[dict], dataset: str):
    """([(variant, [rows])] in the paper's model order (unknown variants last, input order
    kept within a variant), rows evaluated on another dataset)."""
    order = {model: i for i, model in enumerate(paper_results.MODEL_ORDER)}
    groups: dict = {}
    other = []
    for row in rows:
        meta = model_metadata(row)
        if meta.get("dataset") and meta["dataset"] != dataset:
            label = str(row["name"])
            other.append(label if meta["dataset"] in label else f"{label} ({meta['dataset']})")
            continue
        groups.setdefault(meta.get("variant"), []).append(row)
    ranked = sorted(groups.items(), key=lambda kv: order.get(kv[0], len(order)))  # stable
    return ranked, other


def _paper_label(variant) -> str:
    return f"{paper_results.PAPER_NAMES[variant]}, paper"


def paper_comparison_markdown(rows: list[dict], dataset: str, digits: int = 3) -> str:
    """Our evaluations side by side with the paper's published numbers for `dataset`
    (mnist, fashion_mnist, svhn_cropped, celeb_a): a Table 1/2-like table and, when
    classifier reports exist, a Table 3-like one. Each of our models is preceded by one
    "<paper name>, paper" row (one per variant, when the paper reports that model);
    rows follow the paper's model order (`paper_results.MODEL_ORDER`), unknown models last.
    Rows whose metadata names another dataset are left out (and listed)."""
    check_paper_dataset(dataset)
    title = paper_results.DATASET_TITLES[dataset]
    groups, other = _paper_groups(rows, dataset)
    budgets = [budget_key(b) for b in paper_results.BUDGETS]
    published = paper_results.robustness_rows(dataset)

    header = ["Model"]
    for _, label in PAPER_TABLE1_COLUMNS:
        header += [f"{label} λ={_budget_label(b)}" for b in budgets]
    header.append("FD/FID ↓")
    body, unpublished = [], []
    for variant, members in groups:
        paper = published.get(variant)
        if paper is not None:
            cells = [_paper_label(variant)]
            for column, _ in PAPER_TABLE1_COLUMNS:
                values = paper.get(column)  # None: not in the paper's table (Table 2 models)
                cells += [f"{v:.2f}" for v in values] if values else ["—"] * len(budgets)
            body.append(cells + [f"{paper['fid']:.2f} (FID)"])
        elif variant in paper_results.PAPER_NAMES:
            unpublished.append(paper_results.PAPER_NAMES[variant])
        for row in members:
            cells = [f"{row['name']} [{row_protocol(row)}]"]
            for column, _ in PAPER_TABLE1_COLUMNS:
                attack, metric = paper_results.COLUMNS[column]
                cells += [_cell(row, attack, metric, b, digits) for b in budgets]
            value, name = _fd(row)
            body.append(cells + ["—" if value is None else f"{value:.2f} ({name})"])
    out = f"### Comparison with the paper ({title}): robustness and fidelity (Tables 1, 2)\n\n"
    out += _markdown(header, body) + "\n" + PAPER_LEGEND + "\n"
    if unpublished:
        out += f"\nThe paper's Tables 1 and 2 have no {title} row for: {', '.join(unpublished)}.\n"
    if other:
        out += f"\nLeft out (evaluated on another dataset than {title}): {', '.join(other)}.\n"

    if any(row.get("classifier") for _, members in groups for row in members):
        table3 = paper_results.TABLE3.get(dataset, {})
        body, unpublished = [], []
        for variant, members in groups:
            members = [row for row in members if _accuracies(row)]
            if not members:
                continue
            if variant in table3:
                paper = table3[variant]
                body.append([_paper_label(variant), f"{paper['clean']:.2f}", f"{paper['lambda_1']:.2f}"])
            elif variant in paper_results.PAPER_NAMES:
                unpublished.append(paper_results.PAPER_NAMES[variant])
            for row in members:
                clean, mean, std, n, budget = _accuracies(row)
                attacked = _attacked_cell(mean, std, n)
                if budget != 1.0 and attacked != "—":
                    attacked += f" (λ={budget:g})"
                body.append([f"{row['name']} [{row_protocol(row)}]", f"{100 * clean:.2f}", attacked])
        out += f"\n### Comparison with the paper ({title}): downstream classifier (Table 3)\n\n"
        out += _markdown(["Model", "clean acc. (%) ↑", "λ=1 acc. (%) ↑"], body)
        if not table3:
            out += f"\nThe paper's Table 3 has no {title} column.\n"
        elif unpublished:
            out += f"\nThe paper's Table 3 has no row for: {', '.join(unpublished)}.\n"
    return out


# ------------------------------------------------------------------ figures


def _pyplot():
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    return plt


def save_figure(fig, path: str, dpi=None) -> str:
    """Writes `fig` as PNG to a temporary name and renames it to `path` (default dpi: the figure's)."""
    return fileio.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi or fig.dpi))


def _series(robustness: dict, attack: str, metric: str):
    keys = sorted((robustness.get(attack) or {}).keys(), key=float)
    xs, means, stds = [], [], []
    for key in keys:
        stat = (robustness[attack][key] or {}).get(metric)
        if stat is None:
            continue
        xs.append(float(key))
        means.append(float(stat["mean"]))
        stds.append(float(stat["std"]))
    return np.array(xs), np.array(means), np.array(stds)


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


def plot_attack_curves(robustness: dict, path: str, title: str = "") -> str:
    """Fig. 2-style figure: one panel per attack with its loss ((a) latent, eq. 12, (b)
    max damage, eq. 13, then any other attack of the report), and a last panel with the
    MS-SSIM metrics of all, each vs lambda with std error bars, and dashed lines at the
    report's success levels (`success_levels`, if present). PNG of CURVES_SIZE_IN *
    CURVES_DPI pixels for the paper's two attacks (wider with more)."""
    plt = _pyplot()
    objectives = objectives_of([{"robustness": robustness}])
    width, height = CURVES_SIZE_IN
    fig, axes = plt.subplots(1, len(objectives) + 1, figsize=(width * (len(objectives) + 1) / 3, height),
                             dpi=CURVES_DPI)
    letters = "abcdefghijklmnopqrstuvwxyz"
    panels = [(axes[i], [(o, "attack_loss", o.loss_label)], f"({letters[i]}) {o.loss_title}")
              for i, o in enumerate(objectives)]
    panels.append((axes[-1], [(o, metric, label) for o in objectives for metric, label in o.curve_lines],
                   f"({letters[len(objectives)]}) MS-SSIM"))
    levels = robustness.get("success_levels") or {}
    first = next((robustness[o.name] for o in objectives if robustness.get(o.name)), {})
    for ax, lines, panel_title in panels:
        for objective, metric, label in lines:
            xs, means, stds = _series(robustness, objective.name, metric)
            if len(xs):
                line = ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=label)
                level = (levels.get(objective.name) or {}).get(metric)
                if level is not None:
                    ax.axhline(level["mean"], linestyle="--", linewidth=1, color=line[0].get_color(),
                               label=f"{objective.short_label}: {objective.success_level_label}")
        budgets = sorted(float(k) for k in first)
        if budgets:
            ax.set_xticks(budgets)
        ax.set_xlabel("λ (L2 budget)")
        ax.set_title(panel_title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # an attack the report lacks has an empty panel
            ax.legend(fontsize=7 if ax is axes[-1] else 8, framealpha=0.6)
    axes[-1].set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.13, top=0.85 if title else 0.9, wspace=0.25)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def _grid_rows(entry: dict) -> list[str]:
    return [r for r in GRID_ROWS if r in entry and entry[r] is not None and len(entry[r])]


def grid_figure_size(num_rows: int, num_cols: int) -> tuple[int, int]:
    """(width, height) in pixels of the PNG written by `plot_image_grid`."""
    return (num_cols + 1) * GRID_CELL_PX, num_rows * GRID_CELL_PX + GRID_TITLE_PX


def _display(image: np.ndarray) -> tuple[np.ndarray, dict]:
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if image.shape[-1] == 1:
        return image[..., 0], {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    return image, {}


def plot_image_grid(entry: dict, path: str, title: str = "") -> str:
    """Fig. 3-style grid: rows x, reconstruction, x_a, reconstruction of x_a (, target);
    one column per example. `entry` is an "examples" entry of a robustness report."""
    plt = _pyplot()
    rows = _grid_rows(entry)
    if not rows:
        raise UserError("no example images to plot.")
    cols = len(entry[rows[0]])
    width, height = grid_figure_size(len(rows), cols)
    fig = plt.figure(figsize=(width / GRID_DPI, height / GRID_DPI), dpi=GRID_DPI)
    label_w = 1.0 / (cols + 1)
    top = 1.0 - GRID_TITLE_PX / height
    cell_h = (GRID_CELL_PX / height)
    for r, key in enumerate(rows):
        y0 = top - (r + 1) * cell_h
        fig.text(label_w * 0.95, y0 + cell_h / 2, GRID_ROW_LABELS[key], ha="right", va="center", fontsize=8)
        for c in range(cols):
            ax = fig.add_axes([(c + 1) * label_w + 0.02 * label_w, y0 + 0.02 * cell_h, 0.96 * label_w, 0.96 * cell_h])
            image, kwargs = _display(entry[key][c])
            ax.imshow(image, interpolation="nearest", **kwargs)
            ax.set_axis_off()
    budget = entry.get("budget")
    full_title = title + (f" (λ={float(budget):g})" if budget is not None else "")
    fig.text(0.5, 1.0 - GRID_TITLE_PX / height / 2, full_title, ha="center", va="center", fontsize=10)
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)


def image_grid_array(entry: dict, pad: int = 2) -> np.ndarray:
    """The grid as one float32 RGB mosaic [rows*(H+pad)+pad, cols*(W+pad)+pad, 3] in [0, 1]."""
    rows = _grid_rows(entry)
    if not rows:
        raise UserError("no example images to tile.")
    first = np.asarray(entry[rows[0]])
    cols, h, w = first.shape[0], first.shape[1], first.shape[2]
    mosaic = np.ones((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), np.float32)
    for r, key in enumerate(rows):
        for c in range(cols):
            image = np.clip(np.asarray(entry[key][c], np.float32), 0.0, 1.0)
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            mosaic[y : y + h, x : x + w] = image
    return mosaic


# ------------------------------------------------------------------ TensorBoard


def tensorboard_steps(budget_keys) -> dict:
    """budget key -> integer step: lambda itself when all budgets are integers, else the index."""
    values = sorted(float(k) for k in budget_keys)
    if all(v == int(v) for v in values) and len({int(v) for v in values}) == len(values):
        return {budget_key(v): int(v) for v in values}
    return {budget_key(v): i for i, v in enumerate(values)}


def write_tensorboard(logdir: str, robustness: dict | None = None, figure_paths: dict | None = None,
                      grids: dict | None = None, classifier: dict | None = None, fid: dict | None = None) -> str:
    """Scalars (attack metrics vs lambda, mean and std), figure PNGs and image grids."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default():
        if robustness:
            steps = tensorboard_steps(budgets_of([{"robustness": robustness}]))
            for attack in (o.name for o in objectives_of([{"robustness": robustness}])):
                for key, metrics in (robustness.get(attack) or {}).items():
                    for metric, stat in metrics.items():
                        if isinstance(stat, dict) and "mean" in stat:
                            step = steps[budget_key(key)]
                            tf.summary.scalar(f"{attack}/{metric}", float(stat["mean"]), step=step)
                            tf.summary.scalar(f"{attack}/{metric}_std", float(stat["std"]), step=step)
            mapping = ", ".join(f"step {s} = λ {float(k):g}" for k, s in sorted(steps.items(), key=lambda kv: kv[1]))
            tf.summary.text("attack_curves/step_to_lambda", mapping, step=0)
        if classifier and "clean_accuracy" in classifier:
            tf.summary.scalar("classifier/clean_accuracy", float(classifier["clean_accuracy"]), step=0)
            tf.summary.scalar("classifier/attacked_accuracy",
                              float(classifier["attacked_accuracy"]["mean"]), step=0)
        if fid and "value" in fid:
            tf.summary.scalar(f"fid/{fid.get('name', 'FD')}", float(fid["value"]), step=0)
        for name, path in (figure_paths or {}).items():
            png = tf.io.decode_png(tf.io.read_file(path), channels=3)
            tf.summary.image(f"figures/{name}", png[None], step=0)
        for name, mosaic in (grids or {}).items():
            tf.summary.image(f"grids/{name}", np.asarray(mosaic, np.float32)[None], step=0)
    writer.flush()
    writer.close()
    return logdir


# ------------------------------------------------------------------ evaluation dirs


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _complete(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "artifact.json"))


# (row key, sub-directory, report file, bin/evaluate.py flag that skips the part)
PARTS = (("robustness", ROBUSTNESS_DIR, ROBUSTNESS_FILE, "--skip_robustness"),
         ("classifier", CLASSIFIER_DIR, CLASSIFIER_FILE, "--skip_classifier"),
         ("fid", FID_DIR, FID_FILE, "--skip_fid"))


def _read_report(path: str, damaged: str) -> dict:
    """The JSON object in `path`, or one UserError naming the file (+ `damaged`, what to do)."""
    try:
        payload = _read_json(path)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; {damaged}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is not readable JSON ({str(err).splitlines()[0][:120]}); {damaged}") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path} holds a JSON {type(payload).__name__}, not a report object; {damaged}")
    return payload


def _check_part(key: str, payload: dict, path: str, damaged: str) -> dict:
    """The parts of a report the tables read must have the right JSON types."""
    expected = {"robustness": {LATENT: dict, MAX_DAMAGE: dict}, "classifier": {"clean_accuracy": (int, float)},
                "fid": {"value": (int, float)}}[key]
    for field, kind in expected.items():
        if field in payload and not isinstance(payload[field], kind):
            raise UserError(f"{path}: \"{field}\" is a {type(payload[field]).__name__}; {damaged}")
    if key == "robustness":
        for attack in (LATENT, MAX_DAMAGE):
            if not all(isinstance(v, dict) for v in (payload.get(attack) or {}).values()):
                raise UserError(f"{path}: \"{attack}\" must map budgets to metrics; {damaged}")
    return payload


def load_evaluation(eval_dir: str) -> dict:
    """A row (see `make_row`) from an evaluation directory written by bin/evaluate.py.

    A part (robustness, classifier, FD) counts when its artifact is complete (marker
    present). summary.json, written last, records which parts the evaluation ran (a
    part it skipped is null): a part it ran whose report is missing or unreadable, a
    report whose marker is present but whose file is missing or damaged, or a
    directory without summary.json (bin/evaluate.py did not finish, or is still
    running) raise one UserError naming the file, instead of showing the part as
    skipped. A part skipped by the last run but complete from an earlier run into the
    same directory is shown."""
    if not os.path.isdir(eval_dir):
        raise UserError(f"{eval_dir} is not a directory; pass evaluation directories written by bin/evaluate.py.")
    rerun = f"rerun bin/evaluate.py --output={eval_dir}, or leave this directory out of the comparison."
    damaged = f"the evaluation is damaged: {rerun}"
    summary_path = os.path.join(eval_dir, SUMMARY_FILE)
    summary = _read_report(summary_path, damaged) if os.path.exists(summary_path) else None
    parts = {}
    for key, sub, filename, skip_flag in PARTS:
        directory = os.path.join(eval_dir, sub)
        if _complete(directory):
            _read_report(os.path.join(directory, "artifact.json"), damaged)
            path = os.path.join(directory, filename)
            parts[key] = _check_part(key, _read_report(path, damaged), path, damaged)
        elif summary is not None and summary.get(key) is not None:
            raise UserError(f"{directory} is missing or incomplete (no artifact.json), but {summary_path} records "
                            f"the {key} part as run (a skipped part is null there, {skip_flag}); {damaged}")
        else:
            parts[key] = None
    if summary is None:
        if not any(parts.values()):
            raise UserError(
                f"{eval_dir} holds no complete evaluation report (robustness/, classifier/ or fid/ with "
                "artifact.json); run bin/evaluate.py for that model first."
            )
        raise UserError(f"{summary_path} is missing: bin/evaluate.py did not finish this evaluation (it writes "
                        f"{SUMMARY_FILE} last; a part it had not reached would look skipped); {rerun}")
    metadata = next((p["model"] for p in parts.values() if p and isinstance(p.get("model"), dict)), {})
    fallback = os.path.basename(os.path.normpath(eval_dir))
    name = metadata.get("name") or row_name(metadata, fallback)
    protocol = summary.get("protocol") or DEFAULT_PROTOCOL
    if protocol not in PROTOCOL_TEXT:
        raise UserError(f"{summary_path}: unknown protocol {protocol!r}; {damaged}")
    return make_row(name, **parts, protocol=protocol, split=summary.get("split") or "test")


def expand_evaluation_dirs(eval_dirs: list[str]) -> list[str]:
    """The evaluation directories behind `eval_dirs`: a directory written by
    `bin/evaluate.py --protocol=both` (no summary.json, but <dir>/strong and <dir>/paper)
    stands for those two, in that order; any other directory for itself."""
    out = []
    for directory in eval_dirs:
        subs = [os.path.join(directory, name) for name in PROTOCOL_TEXT]
        if (not os.path.exists(os.path.join(directory, SUMMARY_FILE))
                and any(os.path.isdir(sub) for sub in subs)):
            out += [sub for sub in subs if os.path.isdir(sub)]
        else:
            out.append(directory)
    return out


def evaluation_finished(eval_dir: str) -> bool:
    """True when bin/evaluate.py finished `eval_dir`: its summary.json exists, or for a
    `--protocol=both` directory, the summary.json of each protocol's subdirectory."""
    subs = expand_evaluation_dirs([eval_dir])
    return bool(subs) and all(os.path.exists(os.path.join(d, SUMMARY_FILE)) for d in subs)


def start_evaluation(output_dir: str) -> None:
    """Removes the summary.json of an earlier evaluation in `output_dir` before bin/evaluate.py
    replaces any part: until `write_report` writes the new one, `load_evaluation` reports the
    directory as unfinished instead of trusting a record of another run."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(output_dir, SUMMARY_FILE))


def load_examples_npz(path: str) -> dict:
    """{"latent": {...arrays, "budget"}, "max_damage": {...}} from examples.npz."""
    out: dict = {}
    with np.load(path) as npz:
        for name in npz.files:
            attack, _, key = name.partition("/")
            value = npz[name]
            out.setdefault(attack, {})[key] = float(value) if key == "budget" else value
    return out


def save_examples_npz(path: str, examples: dict) -> str:
    arrays = {}
    for attack, entry in (examples or {}).items():
        for key, value in entry.items():
            if value is not None:
                arrays[f"{attack}/{key}"] = np.asarray(value, np.float32)
    return fileio.atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def write_report(output_dir: str, row: dict, examples: dict | None = None, tensorboard: bool = True,
                 digits: int = 3) -> dict:
    """Writes Table 1/3 (Markdown + CSV), report.md, figures, TensorBoard summaries and,
    last (it marks the evaluation finished), summary.json of one model into `output_dir`;
    returns {"markdown": ..., "files": [...]}."""
    files = []
    t1 = table1_markdown([row], digits)
    t3 = table3_markdown([row])
    files.append(fileio.write_text_atomic(os.path.join(output_dir, "table1.md"), t1))
    files.append(fileio.write_text_atomic(os.path.join(output_dir, "table1.csv"), table1_csv([row])))
    files.append(fileio.write_text_atomic(os.path.join(output_dir, "table3.md"), t3))
    files.append(fileio.write_text_atomic(os.path.join(output_dir, "table3.csv"), table3_csv([row])))
    figures, grids = {}, {}
    figures_dir = os.path.join(output_dir, FIGURES_DIR)
    if row.get("robustness"):
        figures["attack_curves"] = plot_attack_curves(row["robustness"], os.path.join(figures_dir, "attack_curves.png"),
                                                      title=str(row["name"]))
    titles = {o.name: o.grid_title for o in attack_objectives.OBJECTIVES.values()}
    for attack, entry in (examples or {}).items():
        if entry and _grid_rows(entry):
            figures[f"grid_{attack}"] = plot_image_grid(entry, os.path.join(figures_dir, f"grid_{attack}.png"),
                                                        title=f"{row['name']}: {titles.get(attack, attack)}")
            grids[attack] = image_grid_array(entry)
    files += list(figures.values())
    if tensorboard:
        write_tensorboard(os.path.join(output_dir, TENSORBOARD_DIR), row.get("robustness"), figures, grids,
                          row.get("classifier"), row.get("fid"))
    markdown = (f"## {row['name']}\n\nEvaluation protocol: {PROTOCOL_TEXT[row_protocol(row)]}. Attacked images: "
                f"{SPLIT_TEXT.get(row.get('split') or 'test')}.\n\n"
                f"### Table 1 (robustness, fidelity)\n\n{t1}\n{table1_legend(objectives_of([row]))}\n\n")
    levels = success_levels_markdown(row.get("robustness"), digits)
    if levels:
        markdown += f"{levels}\n\n"
    if row.get("classifier"):
        markdown += f"### Table 3 (downstream classifier)\n\n{t3}\n"
    for name in figures:
        markdown += f"\n![{name}]({FIGURES_DIR}/{os.path.basename(figures[name])})\n"
    files.append(fileio.write_text_atomic(os.path.join(output_dir, "report.md"), markdown))
    files.append(fileio.write_json_atomic(os.path.join(output_dir, SUMMARY_FILE), row))
    return {"markdown": markdown, "files": files}


def _disambiguate(rows: list[dict], labels: list[str]) -> None:
    """Rows of equal name and protocol get " [<dir name>]", and " [<dir name> #k]" if those
    collide too (one model under two protocols keeps its name: the protocol tells them apart)."""
    names = [r["name"] for r in rows]
    keys = [(r["name"], row_protocol(r)) for r in rows]
    for i, row in enumerate(rows):
        if keys.count(keys[i]) > 1:
            row["name"] = f"{names[i]} [{labels[i]}]"
    named = [(r["name"], row_protocol(r)) for r in rows]
    for i, row in enumerate(rows):
        if named.count(named[i]) > 1:
            row["name"] = f"{names[i]} [{labels[i]} #{named[:i + 1].count(named[i])}]"


def compare(eval_dirs: list[str], digits: int = 3, paper: str | None = None, protocol: str | None = None,
            over_seeds: bool = False) -> dict:
    """One table over several evaluation directories (rows = models x protocols; a
    `--protocol=both` directory gives two rows, `expand_evaluation_dirs`).

    protocol: keep only the rows of this protocol ("strong" or "paper"; None = all).
    over_seeds: evaluations of models that differ only in their training seed (under the
    same protocol) become one row (`aggregate_over_seeds`): cells are then mean ± std
    OVER SEEDS.
    Returns {"rows", "markdown" (Table 1 then Table 3, then with `paper` = a dataset name
    the side-by-side comparison with the paper, `paper_comparison_markdown`),
    "table1_csv", "table3_csv"}.
    """
    if paper is not None:
        check_paper_dataset(paper)
    if protocol is not None and protocol not in PROTOCOL_TEXT:
        raise ConfigError(f"--protocol={protocol!r} is unknown; choose one of {', '.join(PROTOCOL_TEXT)} "
                          "(or leave it out for all).")
    if not eval_dirs:
        raise UserError("pass at least one evaluation directory.")
    eval_dirs = expand_evaluation_dirs(eval_dirs)
    rows = [load_evaluation(d) for d in eval_dirs]
    labels = [os.path.basename(os.path.normpath(d)) for d in eval_dirs]
    labels = [os.path.basename(os.path.dirname(os.path.normpath(d))) if label in PROTOCOL_TEXT else label
              for d, label in zip(eval_dirs, labels)]
    if protocol is not None:
        kept = [(row, label) for row, label in zip(rows, labels) if row_protocol(row) == protocol]
        if not kept:
            raise UserError(f"none of the evaluations was run under the {protocol} protocol "
                            f"(bin/evaluate.py --protocol={protocol} or both).")
        rows, labels = [r for r, _ in kept], [label for _, label in kept]
    if over_seeds:
        rows = aggregate_over_seeds(rows)
        labels = [str(r["name"]) for r in rows]
    _disambiguate(rows, labels)
    legend = table1_legend(objectives_of(rows))
    if over_seeds:
        legend += ("\nRows over training seeds: each cell is the mean over seeds of each seed's mean over trials, "
                   "± the std over seeds (sample std, ddof = 1); the same for accuracies and the FD.\n")
    markdown = (f"### Table 1 (robustness, fidelity)\n\n{table1_markdown(rows, digits)}\n"
                f"{legend}\n")
    if any(r.get("classifier") for r in rows):
        markdown += f"\n### Table 3 (downstream classifier)\n\n{table3_markdown(rows)}"
    if paper is not None:
        markdown += f"\n{paper_comparison_markdown(rows, paper, digits)}"
    return {"rows": rows, "markdown": markdown, "table1_csv": table1_csv(rows), "table3_csv": table3_csv(rows)}


def is_finite_report(payload) -> bool:
    """True when every number in a (nested) report is finite."""
    if isinstance(payload, dict):
        return all(is_finite_report(v) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return all(is_finite_report(v) for v in payload)
    if isinstance(payload, float):
        return math.isfinite(payload)
    return True


# ------------------------------------------------------------------ training seeds

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


# ------------------------------------------------------------------ sweeps


def pareto_front(values, maximize) -> list[int]:
    """Indices (ascending) of the Pareto-optimal entries of `values`, a list of equal-length
    tuples; `maximize[k]` says whether larger is better in coordinate k. An entry is
    optimal when no other entry is at least as good in every coordinate and strictly
    better in one: equal entries do not dominate each other (all of them are optimal).
    Entries with a None or NaN coordinate are never optimal and dominate nothing."""
    signs = [1.0 if up else -1.0 for up in maximize]
    usable = {i: tuple(s * float(v) for s, v in zip(signs, entry)) for i, entry in enumerate(values)
              if len(entry) == len(signs) and all(v is not None and math.isfinite(float(v)) for v in entry)}
    front = []
    for i, a in usable.items():
        dominated = any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a))
                        for j, b in usable.items() if j != i)
        if not dominated:
            front.append(i)
    return sorted(front)


def _sweep_robustness(row: dict, attack: str, budget: float):
    objective = attack_objectives.OBJECTIVES[attack]
    return _stat(row["evaluation"], attack, objective.main_metric, budget_key(budget))


# (key in the figure, x label) of the two fidelity axes of the front figure; both lower = better
FRONT_AXES = (("fd", "Frechet distance"), ("reconstruction_mse", "reconstruction MSE"))


def _front_x(row: dict, axis: str):
    return _fd(row["evaluation"])[0] if axis == "fd" else row.get("reconstruction_mse")


def front_points(rows: list[dict], budget: float) -> dict:
    """{axis: [(row index, x, maximum-damage MS-SSIM at `budget`)]} of the rows that have
    both numbers, for each fidelity axis of FRONT_AXES."""
    out = {}
    for axis, _ in FRONT_AXES:
        entries = []
        for i, row in enumerate(rows):
            x, y = _front_x(row, axis), _sweep_robustness(row, MAX_DAMAGE, budget)
            if x is not None and y is not None:
                entries.append((i, float(x), y[0]))
        if entries:
            out[axis] = entries
    return out


def _front_members(rows: list[dict], budget: float) -> dict:
    """{axis: set of row indices on that axis' Pareto front (robustness up, fidelity error down)}."""
    members = {}
    for axis, entries in front_points(rows, budget).items():
        optimal = pareto_front([(y, x) for _, x, y in entries], (True, False))
        members[axis] = {entries[k][0] for k in optimal}
    return members


def sweep_table(rows: list[dict], fields: list[str], front_budget: float = 3.0, digits: int = 3) -> dict:
    """The table of a sweep (`pipeline.experiments.sweep_rows`): one row per point with its
    grid values, reconstruction MSE, FD, the main MS-SSIM of both attacks at every budget,
    the downstream accuracies, and whether it is on the robustness-fidelity front
    (maximum-damage MS-SSIM at `front_budget` against FD and against MSE).
    Returns {"markdown", "csv"}."""
    evaluations = [r["evaluation"] for r in rows]
    budgets = budgets_of(evaluations)
    members = _front_members(rows, front_budget)
    lat, dmg = attack_objectives.OBJECTIVES[LATENT], attack_objectives.OBJECTIVES[MAX_DAMAGE]
    front_header = [f"front vs {label} (λ={front_budget:g})" for axis, label in FRONT_AXES]
    header = (["point", *fields, "reconstruction MSE ↓", "FD ↓", "FD features"]
              + [f"{lat.title}: {lat.table_label} {lat.arrow} λ={_budget_label(b)}" for b in budgets]
              + [f"{dmg.title}: {dmg.table_label} {dmg.arrow} λ={_budget_label(b)}" for b in budgets]
              + ["clean accuracy ↑", "attacked accuracy ↑"] + front_header)
    csv_header = (["point", *fields, "reconstruction_mse", "fd", "fd_name"]
                  + [f"{o.name}.{o.main_metric}.lambda={_budget_label(b)}.{part}"
                     for o in (lat, dmg) for b in budgets for part in ("mean", "std")]
                  + ["clean_accuracy", "attacked_accuracy"] + [f"pareto_{axis}" for axis, _ in FRONT_AXES])
    body, csv_body = [], []
    for i, row in enumerate(rows):
        evaluation = row["evaluation"]
        values = [row["values"].get(f) for f in fields]
        fd, fd_name = _fd(evaluation)
        cells = [(o.name, o.main_metric, budget_key(float(b))) for o in (lat, dmg) for b in budgets]
        stats = [_stat(evaluation, *cell) for cell in cells]
        accuracies = _accuracies(evaluation)
        clean, attacked = (accuracies[0], accuracies[1]) if accuracies else (None, None)
        on_front = [i in members.get(axis, ()) for axis, _ in FRONT_AXES]
        body.append([str(row["name"]), *("—" if v is None else str(v) for v in values),
                     f"{row['reconstruction_mse']:.5f}", "—" if fd is None else f"{fd:.2f}", fd_name or "—",
                     *(_cell(evaluation, *cell, digits) for cell in cells),
                     "—" if clean is None else f"{100 * clean:.2f}", "—" if attacked is None else f"{100 * attacked:.2f}",
                     *("✓" if f else "" for f in on_front)])
        csv_body.append([row["name"], *("" if v is None else v for v in values), repr(row["reconstruction_mse"]),
                         "" if fd is None else repr(fd), fd_name,
                         *(x for s in stats for x in (("", "") if s is None else (repr(s[0]), repr(s[1])))),
                         "" if clean is None else repr(clean), "" if attacked is None else repr(attacked),
                         *(int(f) for f in on_front)])
    legend = (f"\nFront: Pareto-optimal in {dmg.title} {dmg.table_label} at λ={front_budget:g} (higher = more robust) "
              "against the fidelity error (FD or reconstruction MSE, lower = better). Reconstruction MSE: mean "
              "squared pixel error over the whole test split. Cells: mean ± std over trials, the mean alone for one "
              "trial.\n")
    return {"markdown": _markdown(header, body) + legend, "csv": _csv(csv_header, csv_body)}


def plot_sweep_front(rows: list[dict], budget: float, path: str, title: str = "") -> str:
    """The robustness-fidelity front of a sweep: maximum-damage MS-SSIM at `budget` against
    the Frechet distance and against the reconstruction MSE, one panel each; the
    Pareto-optimal points are marked (red, joined) and every point is labelled."""
    plt = _pyplot()
    points = front_points(rows, budget)
    members = _front_members(rows, budget)
    fig, axes = plt.subplots(1, len(FRONT_AXES), figsize=(12, 5), dpi=100)
    ylabel = f"max-damage MS-SSIM(x~_r, x~_a) at λ={budget:g} ↑"
    for ax, (axis, label) in zip(axes, FRONT_AXES):
        entries = points.get(axis, [])
        if not entries:
            ax.text(0.5, 0.5, f"no {label} in these evaluations", ha="center", va="center", transform=ax.transAxes)
        optimal = [e for e in entries if e[0] in members.get(axis, ())]
        others = [e for e in entries if e[0] not in members.get(axis, ())]
        if others:
            ax.scatter([e[1] for e in others], [e[2] for e in others], color="0.55", label="dominated", zorder=2)
        if optimal:
            line = sorted(optimal, key=lambda e: (e[1], e[2]))
            ax.plot([e[1] for e in line], [e[2] for e in line], color="tab:red", lw=1, zorder=1)
            ax.scatter([e[1] for e in optimal], [e[2] for e in optimal], color="tab:red", marker="*", s=140,
                       label="Pareto-optimal", zorder=3)
        for i, x, y in entries:
            ax.annotate(str(rows[i]["name"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8,
                        fontweight="bold" if i in members.get(axis, ()) else "normal")
        ax.set_xlabel(f"{label} ↓")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if entries:
            ax.legend(fontsize=8)
    fig.suptitle(title or "robustness-fidelity front (up and left is better)")
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
