"""Figures of an evaluation: Fig. 2-style attack curves and Fig. 3-style image grids, and the
per-image comparison of attack methods (`bin/check_attacks.py`); PNG, written atomically."""

from __future__ import annotations

import numpy as np

from robust_dae_tf import fileio
from robust_dae_tf.attacks import objectives as attack_objectives
from robust_dae_tf.errors import UserError
from robust_dae_tf.reporting.tables import objectives_of


GRID_ROWS = ("x", "reconstruction", "adversarial", "adversarial_reconstruction", "target")
GRID_ROW_LABELS = {"x": "x", "reconstruction": "x~ (rec.)", "adversarial": "x_a",
                   "adversarial_reconstruction": "x~_a", "target": "x_t (target)"}
GRID_CELL_PX, GRID_TITLE_PX, GRID_DPI = 80, 40, 80
CURVES_SIZE_IN, CURVES_DPI = (15.0, 4.5), 100


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


CHECK_PANEL_IN, CHECK_DPI = 4.0, 100


def plot_attack_check(results: dict, methods, path: str, reference: str = "pgd", title: str = "") -> str:
    """Per-image strength of attack methods against one of them (`bin/check_attacks.py`'s
    <output>/per_image.png): one panel per (attack, budget) cell of `results` (the layout of
    `attacks.check.check_attacks`: {attack: {budget key: {method: cell}}}, each cell with
    per-image "loss"), x = `reference`'s attack loss of an image, y = each other method's,
    one marker per image, and the diagonal. Points on the stronger side of the diagonal
    (above it for maximum damage, where a higher loss is stronger; below it for the latent
    attack) are images where the method beat the reference; the panel's title says which
    side that is. Panels of CHECK_PANEL_IN inches square at CHECK_DPI."""
    if reference not in methods:
        raise UserError(f"the per-image figure compares with {reference!r}, which is not among the methods "
                        f"{', '.join(methods)}.")
    others = [m for m in methods if m != reference]
    cells = [(name, key, per_budget[key]) for name, per_budget in results.items()
             for key in sorted(per_budget, key=float)]
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(cells), 1), figsize=(CHECK_PANEL_IN * max(len(cells), 1), CHECK_PANEL_IN),
                             dpi=CHECK_DPI, squeeze=False)
    for ax, (name, key, cell) in zip(axes[0], cells):
        objective = attack_objectives.objective(name)
        x = np.asarray(cell[reference]["loss"], dtype=np.float64)
        for method in others:
            ax.scatter(x, np.asarray(cell[method]["loss"], dtype=np.float64), s=12, alpha=0.7, label=method)
        lo, hi = float(np.min(x)), float(np.max(x))
        for method in others:
            y = np.asarray(cell[method]["loss"], dtype=np.float64)
            lo, hi = min(lo, float(np.min(y))), max(hi, float(np.max(y)))
        ax.plot([lo, hi], [lo, hi], color="0.4", linewidth=1, linestyle="--")
        side = "above" if objective.maximize else "below"
        ax.set_title(f"{objective.short_label}, λ = {float(key):g}\n{side} the diagonal: stronger than {reference}",
                     fontsize=9)
        ax.set_xlabel(f"{reference}: attack loss per image")
        ax.set_ylabel("attack loss per image")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, framealpha=0.6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    finally:
        plt.close(fig)
