"""The report of a sweep (bin/sweep.py): one row per point (`sweep_table`) and the
robustness-fidelity Pareto fronts (`pareto_front`, `front_points`, `plot_sweep_front`)."""

from __future__ import annotations

import math

from robust_dae_tf.attacks import objectives as attack_objectives
from robust_dae_tf.attacks.config import budget_key
from robust_dae_tf.attacks.objectives import LATENT, MAX_DAMAGE
from robust_dae_tf.reporting.figures import _pyplot, save_figure
from robust_dae_tf.reporting.tables import (_accuracies, _budget_label, _cell, _csv, _fd, _markdown, _stat,
                                            budgets_of)


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
