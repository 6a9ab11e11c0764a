"""Fake reports and evaluation directories shared by the tests of `robust_dae_tf.reporting`."""

import json
import os

import numpy as np
from matplotlib import image as mpimg

from robust_dae_tf import attacks, reporting
from robust_dae_tf.pipeline import artifacts
from tests.scripts import run_script


BUDGETS = (1.0, 3.0, 5.0)


LATENT_METRICS = attacks.LATENT_OBJECTIVE.metrics


MAX_METRICS = attacks.MAX_DAMAGE_OBJECTIVE.metrics


def fake_robustness(offset: float, budgets=BUDGETS) -> dict:
    """Distinct numbers per (attack, metric, budget): mean = offset + 0.1 * i + 0.01 * budget."""
    report = {"protocol": {"budgets": list(budgets)}, "latent": {}, "max_damage": {}}
    for attack, metrics in (("latent", LATENT_METRICS), ("max_damage", MAX_METRICS)):
        for b in budgets:
            report[attack][str(float(b))] = {
                m: {"mean": offset + 0.1 * i + 0.01 * b + (0.5 if attack == "max_damage" else 0),
                    "std": 0.001 * (i + 1) + 0.0001 * b}
                for i, m in enumerate(metrics)}
    report["timing"] = {"seconds": 1.0, "images_x_trials_per_second": 2.0}
    return report


def expected(report, attack, metric, budget):
    stat = report[attack][str(float(budget))][metric]
    return stat["mean"], stat["std"]


def rows():
    return [
        reporting.make_row("model A", fake_robustness(0.0),
                           {"clean_accuracy": 0.9608, "attacked_accuracy": {"mean": 0.9178, "std": 0.0, "values": [0.9178]},
                            "budget": 1.0, "num_attacked": 1000},
                           {"name": "FD-mnist-classifier", "value": 39.3712}),
        reporting.make_row("model B", fake_robustness(0.02), None, None),
    ]


def _png_size(path):
    assert os.path.getsize(path) > 1000
    image = mpimg.imread(path)
    return image.shape[1], image.shape[0]


def fake_examples(k=3, size=32, channels=1, target=True):
    rng = np.random.default_rng(0)
    keys = ["x", "reconstruction", "adversarial", "adversarial_reconstruction"] + (["target"] if target else [])
    entry = {key: rng.random((k, size, size, channels)).astype(np.float32) for key in keys}
    entry["budget"] = 5.0
    return entry


def _fake_eval_dir(root, name, row, complete=True, model=None, summary=True):
    """An evaluation directory holding `row`'s reports, as bin/evaluate.py leaves it (with
    `summary`, its summary.json: a part that is None was skipped); `model` is the reports'
    "model" section (default: only the row's name)."""
    directory = root / name
    directory.mkdir(parents=True)
    for key, sub, filename, type_name in (("robustness", "robustness", "robustness.json", "EvaluationReport"),
                                          ("classifier", "classifier", "classifier.json", "ClassifierReport"),
                                          ("fid", "fid", "fid.json", "FidReport")):
        if row[key] is None:
            continue
        (directory / sub).mkdir(parents=True)
        payload = dict(row[key], model=model or {"name": row["name"]})
        (directory / sub / filename).write_text(json.dumps(payload))
        if complete:
            artifacts.write_marker(artifacts.Artifact(type_name, str(directory / sub)), "test")
    if summary:
        (directory / "summary.json").write_text(json.dumps(row))
    return str(directory)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _classifier(clean, attacked, budget=1.0):
    return {"clean_accuracy": clean, "attacked_accuracy": {"mean": attacked, "std": 0.0, "values": [attacked]},
            "budget": budget, "num_attacked": 100}


def _fake_saved_model(root, name, seed, coupling=0.9, verbose=2):
    """A directory holding only robust_dae_tf.json with a config (what --over_seeds reads)."""
    directory = root / "models" / name
    directory.mkdir(parents=True)
    config = {"train": {"seed": seed, "epochs": 100, "verbose": verbose}, "loss": {"coupling": coupling}}
    (directory / "robust_dae_tf.json").write_text(json.dumps({"variant": "robust", "dataset": "mnist",
                                                              "config": config}))
    return {"name": "robust (mnist)", "variant": "robust", "dataset": "mnist", "path": str(directory)}


def _compare_cli(*args):
    return run_script("compare.py", *args, env={"CUDA_VISIBLE_DEVICES": ""})


def _paper_tables(markdown):
    part = markdown.split("### Comparison with the paper (MNIST): robustness and fidelity (Tables 1, 2)")[1]
    table1 = reporting.parse_markdown_table(part)
    table3 = reporting.parse_markdown_table(part.split("downstream classifier (Table 3)")[1])
    return part, table1, table3
