"""Per-image results: the values behind every cell of Table 1, and their distribution.

A Table 1 cell is the mean over trials of per-trial averages over `num_images` images.
The paper's own numbers came from few images, so every evaluation also keeps the value of
each attacked image (`evaluation.robustness.evaluate_robustness(..., per_image_out=...)`) in
`<output>/robustness/per_image.npz`:

* `"<attack>/<budget key>/<metric>"`: float64 `[trials * num_images]`, trial-major (row r
  is trial r // num_images), one array per metric of the report (attack loss, MS-SSIM
  paper and standard, L2, MS-SSIM and L2 of input vs adversarial input);
* `"trial"`: int64 `[trials * num_images]`, the trial of each row.

`plot_distributions` draws one box plot per attack: its main MS-SSIM (the Table 1 column)
per budget, each box over all image-trials, the mean as a white dot; the report shows it as
`figures/per_image_<attack>.png`. `load` reads the file back as
{attack: {budget key: {metric: array}}}.
"""

from __future__ import annotations

import os

import numpy as np

from robust_dae_tf import fileio
from robust_dae_tf.reporting.evaluations import FIGURES_DIR
from robust_dae_tf.reporting.figures import _pyplot, save_figure

FILE = "per_image.npz"
_TRIAL = "trial"


def flatten(values: dict, trials: int) -> dict:
    """{"<attack>/<budget>/<metric>": array, "trial": array} of the nested `values`."""
    flat, rows = {}, None
    for attack, budgets in values.items():
        for budget, metrics in budgets.items():
            for metric, array in metrics.items():
                flat[f"{attack}/{budget}/{metric}"] = np.asarray(array, np.float64)
                rows = flat[f"{attack}/{budget}/{metric}"].shape[0]
    if rows is not None:
        flat[_TRIAL] = np.repeat(np.arange(int(trials), dtype=np.int64), rows // max(int(trials), 1))
    return flat


def save(path: str, values: dict, trials: int) -> str:
    """Writes `values` ({attack: {budget key: {metric: [rows]}}}) to `path` atomically."""
    flat = flatten(values, trials)
    return fileio.atomic_write(path, lambda f: np.savez(f, **flat))


def load(path: str) -> dict:
    """{attack: {budget key: {metric: array}}} from a per_image.npz file (the trial column
    under the key "trial")."""
    out: dict = {}
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            if key == _TRIAL:
                out[_TRIAL] = npz[key]
                continue
            attack, budget, metric = key.split("/")
            out.setdefault(attack, {}).setdefault(budget, {})[metric] = npz[key]
    return out


def _main_metric(attack: str, metrics: dict) -> str:
    from robust_dae_tf import attacks  # pylint: disable=import-outside-toplevel

    try:
        main = attacks.objective(attack).main_metric
    except Exception:  # an objective registered elsewhere: the first MS-SSIM
        main = None
    if main in metrics:
        return main
    return next((m for m in metrics if m.startswith("msssim")), next(iter(metrics)))


def distribution_figure(attack: str, budgets: dict, title: str = ""):
    """The matplotlib Figure of one attack: a box per budget of its main MS-SSIM over all
    image-trials, the mean (the table cell) as a white dot."""
    plt = _pyplot()
    keys = sorted(budgets, key=float)
    metric = _main_metric(attack, budgets[keys[0]])
    data = [np.asarray(budgets[k][metric], np.float64) for k in keys]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(keys), 3.2))
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(keys) + 1), [f"λ={float(k):g}" for k in keys])
    ax.scatter(range(1, len(keys) + 1), [d.mean() for d in data], color="white", edgecolor="black", zorder=3,
               s=18, label="mean (the table cell)")
    ax.set_ylabel(metric)
    ax.set_title(f"{title}: {attack}, {len(data[0])} image-trials" if title else f"{attack}, {len(data[0])} "
                 "image-trials", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_distributions(values: dict, figures_dir: str, title: str = "") -> dict:
    """`distribution_figure` of every attack in `values`, saved as
    `<figures_dir>/per_image_<attack>.png`; returns {figure name: path}."""
    plt = _pyplot()
    paths = {}
    for attack, budgets in values.items():
        if attack == _TRIAL or not budgets:
            continue
        fig = distribution_figure(attack, budgets, title)
        name = f"per_image_{attack}"
        paths[name] = save_figure(fig, os.path.join(figures_dir, f"{name}.png"))
        plt.close(fig)
    return paths


def figures_for(report_uri: str | None, output_dir: str, title: str = "") -> dict:
    """The per-image figures of the robustness report artifact at `report_uri` (when its
    per_image.npz exists) in `<output_dir>/figures`; {} otherwise."""
    path = os.path.join(report_uri, FILE) if report_uri else None
    if not path or not os.path.exists(path):
        return {}
    values = {k: v for k, v in load(path).items() if k != _TRIAL}
    return plot_distributions(values, os.path.join(output_dir, FIGURES_DIR), title)
