"""Evaluation directories: their layout (the `robust_dae_tf.reporting` docstring), writing one
(`write_report`, summary.json last), reading one back (`load_evaluation`) and comparing
several (`compare`, bin/compare.py)."""

from __future__ import annotations

import contextlib
import json
import math
import os

import numpy as np

from robust_dae_tf import fileio
from robust_dae_tf.attacks import objectives as attack_objectives
from robust_dae_tf.attacks.objectives import LATENT, MAX_DAMAGE
from robust_dae_tf.errors import ConfigError, UserError
from robust_dae_tf.reporting.figures import _grid_rows, image_grid_array, plot_attack_curves, plot_image_grid
from robust_dae_tf.reporting.paper import check_paper_dataset, paper_comparison_markdown
from robust_dae_tf.reporting.seeds import aggregate_over_seeds
from robust_dae_tf.reporting.tables import (DEFAULT_PROTOCOL, PROTOCOL_TEXT, SPLIT_TEXT, attack_markdown,
                                            local_gain_markdown, make_row, objectives_of, row_name, row_protocol,
                                            success_levels_markdown, table1_csv, table1_legend, table1_markdown,
                                            table3_csv, table3_markdown)
from robust_dae_tf.reporting.tensorboard import write_tensorboard


ROBUSTNESS_DIR, CLASSIFIER_DIR, CLASSIFIER_MODEL_DIR, FID_DIR = "robustness", "classifier", "classifier_model", "fid"
ROBUSTNESS_FILE, EXAMPLES_FILE, CLASSIFIER_FILE, FID_FILE = (
    "robustness.json", "examples.npz", "classifier.json", "fid.json")
SUMMARY_FILE = "summary.json"
FIGURES_DIR = "figures"
TENSORBOARD_DIR = "tensorboard"


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


def _complete(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "artifact.json"))


# (row key, sub-directory, report file, bin/evaluate.py flag that skips the part)
PARTS = (("robustness", ROBUSTNESS_DIR, ROBUSTNESS_FILE, "--skip_robustness"),
         ("classifier", CLASSIFIER_DIR, CLASSIFIER_FILE, "--skip_classifier"),
         ("fid", FID_DIR, FID_FILE, "--skip_fid"))


def read_report(path: str, damaged: str) -> dict:
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
    summary = read_report(summary_path, damaged) if os.path.exists(summary_path) else None
    parts = {}
    for key, sub, filename, skip_flag in PARTS:
        directory = os.path.join(eval_dir, sub)
        if _complete(directory):
            read_report(os.path.join(directory, "artifact.json"), damaged)
            path = os.path.join(directory, filename)
            parts[key] = _check_part(key, read_report(path, damaged), path, damaged)
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
    other_data = summary.get("evaluation_data")  # present when not the model's own data (evaluation.evaluation_data)
    if isinstance(other_data, dict) and other_data.get("label"):
        name = f"{name} {other_data['label']}"
    row = make_row(name, **parts, protocol=protocol, split=summary.get("split") or "test")
    if other_data:
        row["evaluation_data"] = other_data
    return row


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
                 digits: int = 3, extra_figures: dict | None = None) -> dict:
    """Writes Table 1/3 (Markdown + CSV), report.md, figures, TensorBoard summaries and,
    last (it marks the evaluation finished), summary.json of one model into `output_dir`;
    returns {"markdown": ..., "files": [...]}. `extra_figures` ({name: path of a figure
    already written}, e.g. the per-image distributions) are shown in report.md too."""
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
    figures.update(extra_figures or {})
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
    for sentence in (attack_markdown(row.get("robustness")), local_gain_markdown(row.get("robustness"), digits)):
        if sentence:
            markdown += f"{sentence}\n\n"
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
