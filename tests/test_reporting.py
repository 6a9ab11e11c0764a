"""Tests of robust_dae_tf.reporting: tables (parsed back), CSVs, figures, TensorBoard, comparison."""

import csv
import io
import json
import os

import numpy as np
import pytest
from matplotlib import image as mpimg

from robust_dae_tf import components, reporting
from robust_dae_tf.errors import UserError

BUDGETS = (1.0, 3.0, 5.0)
LATENT_METRICS = reporting.ATTACK_METRICS["latent"]
MAX_METRICS = reporting.ATTACK_METRICS["max_damage"]


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


def test_table1_markdown_cells_hold_the_right_numbers():
    data = rows()
    parsed = reporting.parse_markdown_table(reporting.table1_markdown(data, digits=4))
    assert [r["Model"] for r in parsed] == ["model A", "model B"]
    header = list(parsed[0])
    # Column order of the paper's Table 1: groups, each with all budgets, then the FD.
    assert header[1:4] == [f"Latent: MS-SSIM(x_r, x~_a) ↓ λ={b:g}" for b in BUDGETS]
    assert header[4].startswith("Latent: MS-SSIM(x_r, x_a)") and header[7].startswith("Max damage: MS-SSIM(x~_r")
    assert header[-2:] == ["FD ↓", "FD features"]
    for row, parsed_row in zip(data, parsed):
        for attack, metric, title, arrow in reporting.TABLE1_GROUPS:
            for b in BUDGETS:
                mean, std = (float(v) for v in parsed_row[f"{title} {arrow} λ={b:g}"].split(" ± "))
                want_mean, want_std = expected(row["robustness"], attack, metric, b)
                assert mean == pytest.approx(want_mean, abs=5e-5)
                assert std == pytest.approx(want_std, abs=5e-5)
    assert parsed[0]["FD ↓"] == "39.37" and parsed[0]["FD features"] == "FD-mnist-classifier"
    assert parsed[1]["FD ↓"] == "—"


def test_table1_csv_is_full_precision():
    data = rows()
    table = list(csv.DictReader(io.StringIO(reporting.table1_csv(data))))
    assert [r["model"] for r in table] == ["model A", "model B"]
    for row, parsed in zip(data, table):
        for attack, metrics in (("latent", LATENT_METRICS), ("max_damage", MAX_METRICS)):
            for metric in metrics:
                for b in BUDGETS:
                    mean, std = expected(row["robustness"], attack, metric, b)
                    assert float(parsed[f"{attack}.{metric}.lambda={b:g}.mean"]) == mean
                    assert float(parsed[f"{attack}.{metric}.lambda={b:g}.std"]) == std
    assert float(table[0]["fd"]) == 39.3712 and table[1]["fd"] == ""


def test_table3_in_percent():
    data = rows()
    data[1]["classifier"] = {"clean_accuracy": 0.5, "attacked_accuracy": {"mean": 0.25, "std": 0.05,
                                                                          "values": [0.2, 0.3]}, "budget": 1.0}
    parsed = reporting.parse_markdown_table(reporting.table3_markdown(data))
    assert parsed[0] == {"Model": "model A", "clean acc. (%) ↑": "96.08", "λ=1 acc. (%) ↑": "91.78"}
    assert parsed[1]["λ=1 acc. (%) ↑"] == "25.00 ± 5.00"
    table = list(csv.DictReader(io.StringIO(reporting.table3_csv(data))))
    assert float(table[0]["clean_accuracy"]) == 0.9608 and float(table[1]["attacked_accuracy.std"]) == 0.05


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


def test_figures_are_written_with_the_expected_size(tmp_path):
    curves = reporting.plot_attack_curves(fake_robustness(0.0), str(tmp_path / "f" / "curves.png"), "title")
    w, h = reporting.CURVES_SIZE_IN
    assert _png_size(curves) == (int(w * reporting.CURVES_DPI), int(h * reporting.CURVES_DPI))
    grid = reporting.plot_image_grid(fake_examples(3), str(tmp_path / "grid.png"), "latent")
    assert _png_size(grid) == reporting.grid_figure_size(5, 3)
    grid4 = reporting.plot_image_grid(fake_examples(2, 64, 3, target=False), str(tmp_path / "grid4.png"))
    assert _png_size(grid4) == reporting.grid_figure_size(4, 2)
    mosaic = reporting.image_grid_array(fake_examples(3), pad=2)
    assert mosaic.shape == (5 * 34 + 2, 3 * 34 + 2, 3)
    np.testing.assert_allclose(mosaic[2:34, 2:34, 1], fake_examples(3)["x"][0, ..., 0])
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def _scalars(logdir):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    import tensorflow as tf

    out = {tag: {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}
           for tag in acc.Tags()["tensors"] if not tag.startswith(("figures", "grids", "attack_curves"))}
    return out, acc.Tags()["tensors"]


def test_write_report_and_tensorboard(tmp_path):
    row = rows()[0]
    out = reporting.write_report(str(tmp_path), row, {"latent": fake_examples(3),
                                                       "max_damage": fake_examples(3, target=False)})
    for name in ("summary.json", "table1.md", "table1.csv", "table3.md", "table3.csv", "report.md",
                 "figures/attack_curves.png", "figures/grid_latent.png", "figures/grid_max_damage.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    assert json.loads((tmp_path / "summary.json").read_text())["name"] == "model A"
    assert "![grid_latent](figures/grid_latent.png)" in out["markdown"]
    scalars, tags = _scalars(str(tmp_path / "tensorboard"))
    # Steps are the (integer) budgets themselves.
    assert scalars["latent/msssim_target_adv_rec"] == pytest.approx(
        {int(b): expected(row["robustness"], "latent", "msssim_target_adv_rec", b)[0] for b in BUDGETS})
    assert scalars["max_damage/attack_loss_std"][3] == pytest.approx(
        expected(row["robustness"], "max_damage", "attack_loss", 3)[1])
    assert scalars["classifier/clean_accuracy"][0] == pytest.approx(0.9608)
    assert {"figures/attack_curves", "grids/latent", "grids/max_damage"} <= set(tags)


def test_tensorboard_steps():
    assert reporting.tensorboard_steps(["1.0", "3.0", "5.0"]) == {"1.0": 1, "3.0": 3, "5.0": 5}
    assert reporting.tensorboard_steps(["0.5", "1.0", "2.5"]) == {"0.5": 0, "1.0": 1, "2.5": 2}


def _fake_eval_dir(root, name, row, complete=True):
    directory = root / name
    for key, sub, filename, type_name in (("robustness", "robustness", "robustness.json", "EvaluationReport"),
                                          ("classifier", "classifier", "classifier.json", "ClassifierReport"),
                                          ("fid", "fid", "fid.json", "FidReport")):
        if row[key] is None:
            continue
        (directory / sub).mkdir(parents=True)
        payload = dict(row[key], model={"name": row["name"]})
        (directory / sub / filename).write_text(json.dumps(payload))
        if complete:
            components.write_marker(components.Artifact(type_name, str(directory / sub)), "test")
    return str(directory)


def test_compare_builds_one_table_from_eval_dirs(tmp_path):
    a, b = rows()
    dirs = [_fake_eval_dir(tmp_path, "a", a), _fake_eval_dir(tmp_path, "b", b)]
    result = reporting.compare(dirs, digits=4)
    parsed = reporting.parse_markdown_table(result["markdown"])
    assert [r["Model"] for r in parsed] == ["model A", "model B"]
    cell = parsed[1]["Max damage: MS-SSIM(x~_r, x~_a) ↑ λ=5"]
    assert float(cell.split(" ± ")[0]) == pytest.approx(expected(b["robustness"], "max_damage",
                                                                 "msssim_rec_adv_rec", 5)[0], abs=5e-5)
    table3 = reporting.parse_markdown_table(result["markdown"].split("Table 3")[1])
    assert table3[0]["clean acc. (%) ↑"] == "96.08" and table3[1]["clean acc. (%) ↑"] == "—"
    assert len(list(csv.DictReader(io.StringIO(result["table1_csv"])))) == 2
    # Same model name twice: disambiguated by directory.
    dup = reporting.compare([dirs[0], _fake_eval_dir(tmp_path, "a2", a)])
    assert [r["name"] for r in dup["rows"]] == ["model A [a]", "model A [a2]"]


def test_compare_ignores_incomplete_reports(tmp_path):
    incomplete = _fake_eval_dir(tmp_path, "partial", rows()[0], complete=False)
    with pytest.raises(UserError, match="no complete evaluation report"):
        reporting.compare([incomplete])
    with pytest.raises(UserError, match="not a directory"):
        reporting.compare([str(tmp_path / "missing")])
