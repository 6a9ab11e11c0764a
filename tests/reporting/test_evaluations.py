"""Tests of robust_dae_tf.reporting: tables (parsed back), CSVs, figures, TensorBoard, comparison."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image as mpimg

from robust_dae_tf import attacks, paper_results, reporting
from robust_dae_tf.errors import ConfigError, UserError
from robust_dae_tf.pipeline import artifacts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


def test_table1_markdown_cells_hold_the_right_numbers():
    data = rows()
    parsed = reporting.parse_markdown_table(reporting.table1_markdown(data, digits=4))
    assert [r["Model"] for r in parsed] == ["model A", "model B"]
    header = list(parsed[0])
    # Column order of the paper's Table 1: groups, each with all budgets, then the FD.
    assert header[1] == "Protocol" and [r["Protocol"] for r in parsed] == ["strong", "strong"]
    assert header[2:5] == [f"Latent: MS-SSIM(x_r, x~_a) ↓ λ={b:g}" for b in BUDGETS]
    assert header[5].startswith("Latent: MS-SSIM(x_r, x_a)") and header[8].startswith("Max damage: MS-SSIM(x~_r")
    assert header[-2:] == ["FD ↓", "FD features"]
    for row, parsed_row in zip(data, parsed):
        for attack, metric, title, arrow in reporting.table1_columns():
            for b in BUDGETS:
                mean, std = (float(v) for v in parsed_row[f"{title} {arrow} λ={b:g}"].split(" ± "))
                want_mean, want_std = expected(row["robustness"], attack, metric, b)
                assert mean == pytest.approx(want_mean, abs=5e-5)
                assert std == pytest.approx(want_std, abs=5e-5)
    assert parsed[0]["FD ↓"] == "39.37" and parsed[0]["FD features"] == "FD-mnist-classifier"
    assert parsed[1]["FD ↓"] == "—"


def test_table1_cells_of_one_value_show_the_mean_alone():
    """One trial (or one seed) has no spread: the cell is the mean, not "mean ± 0.000";
    three trials, or three seeds, keep the std."""
    def row(name, trials):
        report = fake_robustness(0.0)
        report["protocol"]["trials"] = trials
        return reporting.make_row(name, report, None, None)

    one, three = row("one trial", 1), row("three trials", 3)
    seeds_3 = row("s", 1)
    seeds_3["robustness"]["latent"]["1.0"][LATENT_METRICS[1]].update({"n": 3})
    parsed = reporting.parse_markdown_table(reporting.table1_markdown([one, three, seeds_3], digits=4))
    column = "Latent: MS-SSIM(x_r, x~_a) ↓ λ=1"
    want_mean, want_std = expected(one["robustness"], "latent", LATENT_METRICS[1], 1.0)
    assert parsed[0][column] == f"{want_mean:.4f}"
    assert parsed[1][column] == f"{want_mean:.4f} ± {want_std:.4f}"
    assert parsed[2][column] == f"{want_mean:.4f} ± {want_std:.4f}"  # its "n" (seeds) counts, not the trials
    assert parsed[2]["Latent: MS-SSIM(x_r, x~_a) ↓ λ=3"] == f"{expected(one['robustness'], 'latent', LATENT_METRICS[1], 3.0)[0]:.4f}"
    compared = reporting.paper_comparison_markdown([one], "celeb_a", digits=4)
    [ours] = [line for line in compared.splitlines() if line.startswith("| one trial")]
    assert f"| {want_mean:.4f} |" in ours and "±" not in ours


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
    assert parsed[0] == {"Model": "model A", "Protocol": "strong", "clean acc. (%) ↑": "96.08",
                         "λ=1 acc. (%) ↑": "91.78"}
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
    incomplete = _fake_eval_dir(tmp_path, "partial", rows()[0], complete=False, summary=False)
    with pytest.raises(UserError, match="no complete evaluation report"):
        reporting.compare([incomplete])
    with pytest.raises(UserError, match="not a directory"):
        reporting.compare([str(tmp_path / "missing")])


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


# (damage done to a complete evaluation of rows()[0] (all three parts run), words of the error)
DAMAGED_EVALUATIONS = {
    "truncated_report": (lambda d: _write(f"{d}/robustness/robustness.json", '{"latent": {"1.0"'),
                         r"robustness/robustness.json is not readable JSON \(.*\); the evaluation is damaged: "
                         r"rerun bin/evaluate.py --output="),
    "report_removed": (lambda d: os.remove(f"{d}/fid/fid.json"), "fid/fid.json is missing"),
    "report_not_an_object": (lambda d: _write(f"{d}/classifier/classifier.json", "[0.9]"),
                             "classifier.json holds a JSON list, not a report object"),
    "metrics_of_the_wrong_type": (lambda d: _write(f"{d}/robustness/robustness.json", '{"latent": [1, 3]}'),
                                  'robustness.json: "latent" is a list'),
    "budgets_of_the_wrong_type": (lambda d: _write(f"{d}/robustness/robustness.json", '{"latent": {"1.0": 0.5}}'),
                                  '"latent" must map budgets to metrics'),
    "truncated_marker": (lambda d: _write(f"{d}/fid/artifact.json", '{"type": "Fid'),
                         "fid/artifact.json is not readable JSON"),
    "recorded_part_missing": (lambda d: shutil.rmtree(f"{d}/classifier"),
                              r"classifier is missing or incomplete \(no artifact.json\), but .*summary.json records "
                              r"the classifier part as run \(a skipped part is null there, --skip_classifier\)"),
    "recorded_part_unmarked": (lambda d: os.remove(f"{d}/fid/artifact.json"),
                               "fid is missing or incomplete .* records the fid part as run"),
    "unfinished": (lambda d: os.remove(f"{d}/summary.json"),
                   "summary.json is missing: bin/evaluate.py did not finish this evaluation"),
    "truncated_summary": (lambda d: _write(f"{d}/summary.json", '{"name": "mo'), "summary.json is not readable JSON"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED_EVALUATIONS))
def test_compare_refuses_half_written_evaluations(tmp_path, damage):
    """A part the evaluation ran but whose report is gone or damaged is an error naming
    the file, never a "—" as for a part skipped on purpose."""
    good = _fake_eval_dir(tmp_path, "good", rows()[1])
    spoiled = _fake_eval_dir(tmp_path, "spoiled", rows()[0])
    spoil, words = DAMAGED_EVALUATIONS[damage]
    spoil(spoiled)
    with pytest.raises(UserError, match=words) as err:
        reporting.compare([good, spoiled])
    assert spoiled in str(err.value)


def test_compare_shows_parts_skipped_on_purpose(tmp_path):
    """null in summary.json = skipped: "—" (no error), even without the part's directory;
    a part skipped by the last run but complete from an earlier one is still shown."""
    model_b = rows()[1]  # classifier and FD skipped
    skipped = _fake_eval_dir(tmp_path, "skipped", model_b)
    assert not os.path.exists(os.path.join(skipped, "classifier"))
    [row] = reporting.compare([skipped])["rows"]
    assert row["classifier"] is None and row["fid"] is None and row["robustness"]
    earlier = _fake_eval_dir(tmp_path, "earlier", rows()[0])
    _write(os.path.join(earlier, "summary.json"), json.dumps(dict(rows()[0], fid=None)))  # rerun with --skip_fid
    assert reporting.compare([earlier])["rows"][0]["fid"]["value"] == 39.3712


def test_start_evaluation_and_write_report_bracket_an_evaluation(tmp_path, monkeypatch):
    """summary.json (what compare trusts) is removed when an evaluation starts and written
    only after everything else, so an interrupted write_report leaves none."""
    directory = _fake_eval_dir(tmp_path, "eval", rows()[1])
    reporting.start_evaluation(directory)
    reporting.start_evaluation(directory)  # nothing to remove: fine
    assert not os.path.exists(os.path.join(directory, "summary.json"))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reporting, "write_tensorboard", broken)
    with pytest.raises(OSError):
        reporting.write_report(directory, rows()[1])
    assert os.path.exists(os.path.join(directory, "table1.md"))
    assert not os.path.exists(os.path.join(directory, "summary.json"))
    with pytest.raises(UserError, match="did not finish"):
        reporting.load_evaluation(directory)
    monkeypatch.undo()
    files = reporting.write_report(directory, rows()[1], tensorboard=False)["files"]
    assert files[-1] == os.path.join(directory, "summary.json")
    assert reporting.load_evaluation(directory)["name"] == "model B"


# ------------------------------------------------------------------ comparison with the paper

# (header prefix of paper_comparison_markdown, attack, metric of our reports)
PAPER_COLUMNS = (
    ("Latent: MS-SSIM(x_r, x~_a) ↓", "latent", "msssim_target_adv_rec"),
    ("Max damage: MS-SSIM(x~_r, x~_a) ↑", "max_damage", "msssim_rec_adv_rec"),
    ("Latent: MS-SSIM(x, x_a)", "latent", "msssim_input_adv"),
    ("Max damage: MS-SSIM(x, x_a)", "max_damage", "msssim_input_adv"),
)
# The paper's MNIST numbers as printed (Tables 1 and 2), in the column order above.
PAPER_MNIST = {
    "VAE, paper": ["0.55", "0.78", "0.89", "0.64", "0.27", "0.08", "0.99", "0.94", "0.87", "0.98", "0.93", "0.86",
                   "43.21 (FID)"],
    "GMM-DAE, paper": ["0.54", "0.70", "0.82", "0.75", "0.37", "0.30"] + ["—"] * 6 + ["38.89 (FID)"],
    "Augmented, paper": ["0.47", "0.59", "0.71", "0.79", "0.56", "0.54"] + ["—"] * 6 + ["40.16 (FID)"],
    "Ours, paper": ["0.38", "0.47", "0.60", "0.92", "0.82", "0.69", "0.95", "0.90", "0.80", "0.98", "0.89", "0.78",
                    "39.37 (FID)"],
}


def _classifier(clean, attacked, budget=1.0):
    return {"clean_accuracy": clean, "attacked_accuracy": {"mean": attacked, "std": 0.0, "values": [attacked]},
            "budget": budget, "num_attacked": 100}


def _paper_eval_dirs(tmp_path):
    """(directory, row) per evaluation, in a deliberately shuffled order: robust, an unknown
    model, augmented twice (different numbers, same name), gmm_dae without λ=5, vae,
    and a fashion_mnist model."""
    specs = [
        ("robust", "mnist", "mnist_robust", fake_robustness(0.01), _classifier(0.9608, 0.875),
         {"name": "FD-mnist-classifier", "value": 36.7412}),
        ("tiny", "mnist", "mnist_tiny", fake_robustness(0.02), None, None),
        ("augmented", "mnist", "mnist_augmented_a", fake_robustness(0.03), _classifier(0.9635, 0.654, budget=2.0),
         {"name": "FD-mnist-classifier", "value": 33.51}),
        ("gmm_dae", "mnist", "mnist_gmm_dae", fake_robustness(0.04, budgets=(1.0, 3.0)), _classifier(0.9612, 0.746),
         {"name": "FID-keras-inception", "value": 37.8}),
        ("augmented", "mnist", "mnist_augmented_b", fake_robustness(0.05), None,
         {"name": "FD-mnist-classifier", "value": 30.0}),
        ("vae", "mnist", "mnist_vae", fake_robustness(0.06), _classifier(0.9622, 0.688),
         {"name": "FD-mnist-classifier", "value": 61.83}),
        ("robust", "fashion_mnist", "fashion_robust", fake_robustness(0.07), None, None),
    ]
    out = []
    for variant, dataset, dirname, robustness, classifier, fid in specs:
        name = f"{variant} ({dataset})"
        row = reporting.make_row(name, robustness, classifier, fid)
        model = {"name": name, "variant": variant, "dataset": dataset, "path": f"/models/{dirname}"}
        out.append((_fake_eval_dir(tmp_path, dirname, row, model=model), row))
    return out


def _paper_tables(markdown):
    part = markdown.split("### Comparison with the paper (MNIST): robustness and fidelity (Tables 1, 2)")[1]
    table1 = reporting.parse_markdown_table(part)
    table3 = reporting.parse_markdown_table(part.split("downstream classifier (Table 3)")[1])
    return part, table1, table3


def _our_cells(row):
    """Expected "mean ± std" values of our row in the comparison's column order (None: no budget)."""
    cells = []
    for _, attack, metric in PAPER_COLUMNS:
        for b in (1, 3, 5):
            stat = row["robustness"][attack].get(str(float(b)), {}).get(metric)
            cells.append(None if stat is None else (stat["mean"], stat["std"]))
    return cells


def test_paper_comparison_rows_order_and_cells(tmp_path):
    evals = _paper_eval_dirs(tmp_path)
    result = reporting.compare([d for d, _ in evals], digits=4, paper="mnist")
    part, table1, table3 = _paper_tables(result["markdown"])
    # The usual tables come first, unchanged.
    assert result["markdown"].index("### Table 1") < result["markdown"].index("### Comparison with the paper")
    assert [r["Model"] for r in table1] == [
        "VAE, paper", "vae (mnist) [strong]",
        "GMM-DAE, paper", "gmm_dae (mnist) [strong]",
        "Augmented, paper", "augmented (mnist) [mnist_augmented_a] [strong]", "augmented (mnist) [mnist_augmented_b] [strong]",
        "Ours, paper", "robust (mnist) [strong]",
        "tiny (mnist) [strong]",  # unknown model: last, no paper row
    ]
    header = list(table1[0])
    budget_columns = [f"{title} λ={b}" for title, _, _ in PAPER_COLUMNS for b in (1, 3, 5)]
    assert header == ["Model"] + budget_columns + ["FD/FID ↓"]
    by_name = {r["Model"]: [r[h] for h in header[1:]] for r in table1}
    # Paper rows: exactly the published numbers ("—" where Table 2 has no column).
    for name, cells in PAPER_MNIST.items():
        assert by_name[name] == cells, name
    # Our rows: our evaluation data.
    rows = {reporting.load_evaluation(d)["name"] + " [strong]": row for d, row in evals}
    for name in ("vae (mnist) [strong]", "gmm_dae (mnist) [strong]", "robust (mnist) [strong]", "tiny (mnist) [strong]"):
        for got, want in zip(by_name[name][:-1], _our_cells(rows[name])):
            if want is None:
                assert got == "—", name
            else:
                mean, std = (float(v) for v in got.split(" ± "))
                assert (mean, std) == pytest.approx(want, abs=5e-5), name
    for name, directory in (("augmented (mnist) [mnist_augmented_a] [strong]", "mnist_augmented_a"),
                            ("augmented (mnist) [mnist_augmented_b] [strong]", "mnist_augmented_b")):
        row = dict(evals)[str(tmp_path / directory)]
        assert [float(c.split(" ± ")[0]) for c in by_name[name][:-1]] == pytest.approx(
            [m for m, _ in _our_cells(row)], abs=5e-5)
    # Missing budget λ=5 of gmm_dae: "—" in each group's λ=5 column.
    assert [by_name["gmm_dae (mnist) [strong]"][i] for i in (2, 5, 8, 11)] == ["—"] * 4
    assert "—" not in by_name["gmm_dae (mnist) [strong]"][:2]
    # FD cells name the feature extractor.
    assert by_name["robust (mnist) [strong]"][-1] == "36.74 (FD-mnist-classifier)"
    assert by_name["gmm_dae (mnist) [strong]"][-1] == "37.80 (FID-keras-inception)"
    assert by_name["tiny (mnist) [strong]"][-1] == "—"
    # The fashion_mnist model is left out and said so.
    assert "robust (fashion_mnist)" not in by_name
    assert "Left out (evaluated on another dataset than MNIST): robust (fashion_mnist)." in part

    # Table 3: models with classifier reports only, paper row first where the paper has one.
    assert [r["Model"] for r in table3] == [
        "VAE, paper", "vae (mnist) [strong]", "gmm_dae (mnist) [strong]", "augmented (mnist) [mnist_augmented_a] [strong]",
        "Ours, paper", "robust (mnist) [strong]"]
    cells = {r["Model"]: (r["clean acc. (%) ↑"], r["λ=1 acc. (%) ↑"]) for r in table3}
    assert cells["VAE, paper"] == ("92.16", "58.85") and cells["Ours, paper"] == ("96.08", "91.78")
    assert cells["vae (mnist) [strong]"] == ("96.22", "68.80") and cells["robust (mnist) [strong]"] == ("96.08", "87.50")
    assert cells["augmented (mnist) [mnist_augmented_a] [strong]"] == ("96.35", "65.40 (λ=2)")  # not the paper's λ
    assert "The paper's Table 3 has no row for: GMM-DAE, Augmented." in part


def test_paper_comparison_other_datasets_and_unpublished_models():
    row = reporting.make_row("avae (svhn_cropped)", fake_robustness(0.0), _classifier(0.7, 0.5),
                             {"name": "FD-svhn_cropped-classifier", "value": 50.0})
    row["robustness"]["model"] = {"variant": "avae", "dataset": "svhn_cropped"}
    se = reporting.make_row("se (svhn_cropped)", fake_robustness(0.1), _classifier(0.6, 0.4), None, protocol="paper")
    se["classifier"]["model"] = {"variant": "se", "dataset": "svhn_cropped"}  # metadata in any report
    markdown = reporting.paper_comparison_markdown([row, se], "svhn_cropped", digits=2)
    table1 = reporting.parse_markdown_table(markdown)
    # SVHN has no AAVE row in Table 1: no paper row for it, and a note; SE keeps the paper order.
    assert [r["Model"] for r in table1] == ["SE, paper", "se (svhn_cropped) [paper]", "avae (svhn_cropped) [strong]"]
    assert table1[0]["FD/FID ↓"] == "61.28 (FID)" and table1[0]["Latent: MS-SSIM(x, x_a) λ=3"] == "0.92"
    assert "no SVHN row for: AAVE" in markdown
    table3 = reporting.parse_markdown_table(markdown.split("(Table 3)")[1])
    assert table3[0] == {"Model": "SE, paper", "clean acc. (%) ↑": "62.36", "λ=1 acc. (%) ↑": "44.40"}
    # CelebA: Table 1 only; the paper has no Table 3 column for it.
    row["robustness"]["model"] = {"variant": "robust", "dataset": "celeb_a"}
    celeb = reporting.paper_comparison_markdown([row], "celeb_a")
    assert reporting.parse_markdown_table(celeb)[0]["FD/FID ↓"] == "51.98 (FID)"
    assert [r["Model"] for r in reporting.parse_markdown_table(celeb.split("(Table 3)")[1])] == ["avae (svhn_cropped) [strong]"]
    assert "The paper's Table 3 has no CELEBA column." in celeb
    # Rows without metadata (e.g. built by hand) are unknown models: no paper rows.
    plain = reporting.paper_comparison_markdown(rows(), "mnist")
    assert [r["Model"] for r in reporting.parse_markdown_table(plain)] == ["model A [strong]", "model B [strong]"]


def test_paper_comparison_rejects_unknown_datasets(tmp_path):
    with pytest.raises(ConfigError, match="choose one of mnist, fashion_mnist, svhn_cropped, celeb_a"):
        reporting.paper_comparison_markdown(rows(), "svhn")
    # compare checks the name before reading any directory.
    with pytest.raises(ConfigError, match="no results for dataset 'digits'"):
        reporting.compare([str(tmp_path / "missing")], paper="digits")
    assert set(paper_results.DATASETS) == {"mnist", "fashion_mnist", "svhn_cropped", "celeb_a"}


def _compare_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", "compare.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_compare_cli_paper_flag(tmp_path):
    dirs = [d for d, _ in _paper_eval_dirs(tmp_path)]
    output = tmp_path / "cmp.md"
    proc = _compare_cli(*dirs, "--paper=mnist", f"--output={output}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in (proc.stdout, output.read_text()):
        assert "### Table 1 (robustness, fidelity)" in text
        _, table1, table3 = _paper_tables(text)
        assert [r["Model"] for r in table1][:2] == ["VAE, paper", "vae (mnist) [strong]"]
        assert [table1[0][h] for h in list(table1[0])[1:]] == PAPER_MNIST["VAE, paper"]
        assert table3[0]["Model"] == "VAE, paper"
    # Without the flag: no comparison.
    plain = _compare_cli(*dirs)
    assert plain.returncode == 0 and "Comparison with the paper" not in plain.stdout
    # A bad value: one "error:" line naming the flag and the choices, exit status 1, nothing printed.
    for bad in ("--paper=svhn", "--paper="):
        proc = _compare_cli(*dirs, bad)
        assert proc.returncode == 1
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: --paper must be one of mnist, fashion_mnist, "
                                                       "svhn_cropped, celeb_a"), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_success_levels_appear_in_the_report_and_the_curves(tmp_path, monkeypatch):
    robustness = fake_robustness(0.0)
    robustness["success_levels"] = {"latent": {"msssim_target_adv_rec": {"mean": 0.9612, "std": 0.01}},
                                    "max_damage": {"msssim_rec_adv_rec": {"mean": 0.0876, "std": 0.01}}}
    row = reporting.make_row("model A", robustness, None, None)
    drawn = []
    plt = reporting._pyplot()
    original = plt.Axes.axhline
    monkeypatch.setattr(plt.Axes, "axhline", lambda ax, y, **kw: drawn.append((y, kw["label"])) or original(ax, y, **kw))
    markdown = reporting.write_report(str(tmp_path), row, tensorboard=False)["markdown"]
    assert "MS-SSIM(x_t, x~_a) = 0.961" in markdown and "MS-SSIM(x~, x~_t) = 0.088" in markdown
    assert sorted(y for y, _ in drawn) == [0.0876, 0.9612]
    assert {label.split(":")[0] for _, label in drawn} == {"latent", "max damage"}
    # Reports of earlier versions (no levels) still render, without the sentence or the lines.
    drawn.clear()
    plain = reporting.write_report(str(tmp_path / "old"), rows()[1], tensorboard=False)["markdown"]
    assert "Success levels" not in plain and drawn == []


def _fake_saved_model(root, name, seed, coupling=0.9, verbose=2):
    """A directory holding only robust_dae_tf.json with a config (what --over_seeds reads)."""
    directory = root / "models" / name
    directory.mkdir(parents=True)
    config = {"train": {"seed": seed, "epochs": 100, "verbose": verbose}, "loss": {"coupling": coupling}}
    (directory / "robust_dae_tf.json").write_text(json.dumps({"variant": "robust", "dataset": "mnist",
                                                              "config": config}))
    return {"name": "robust (mnist)", "variant": "robust", "dataset": "mnist", "path": str(directory)}


def test_compare_over_seeds_aggregates_each_cell_over_training_seeds(tmp_path):
    # Three seeds of one model (verbose differs: not a training setting), plus one model with another
    # coupling that must stay its own row.
    offsets, dirs, reports = (0.0, 0.03, 0.09), [], []
    for seed, offset in enumerate(offsets):
        a, _ = rows()
        a["robustness"] = fake_robustness(offset)
        a["classifier"] = {"clean_accuracy": 0.95 + 0.01 * seed,
                           "attacked_accuracy": {"mean": 0.5 + 0.1 * seed, "std": 0.01, "values": [0.5, 0.5]},
                           "budget": 1.0, "num_attacked": 1000}
        a["fid"] = {"name": "FD-mnist-classifier", "value": 10.0 + 3 * seed}
        reports.append(a)
        model = _fake_saved_model(tmp_path, f"s{seed}", seed, verbose=seed)
        dirs.append(_fake_eval_dir(tmp_path, f"e{seed}", a, model=model))
    other, _ = rows()
    dirs.append(_fake_eval_dir(tmp_path, "other", other, model=_fake_saved_model(tmp_path, "c05", 0, coupling=0.5)))

    result = reporting.compare(dirs, digits=4, over_seeds=True)
    # Same model name: each row says what tells it apart (the coupling; not verbose, not the seed).
    assert [r["name"] for r in result["rows"]] == ["robust (mnist) [loss.coupling=0.9], 3 seeds (0, 1, 2)",
                                                   "robust (mnist) [loss.coupling=0.5], 1 seed (0)"]
    parsed = reporting.parse_markdown_table(result["markdown"])
    for attack, metric, column in (("max_damage", "msssim_rec_adv_rec", "Max damage: MS-SSIM(x~_r, x~_a) ↑ λ=3"),
                                   ("latent", "msssim_target_adv_rec", "Latent: MS-SSIM(x_r, x~_a) ↓ λ=1")):
        budget = 3 if "3" in column else 1
        per_seed = [expected(r["robustness"], attack, metric, budget)[0] for r in reports]
        mean, std = parsed[0][column].split(" ± ")
        assert float(mean) == pytest.approx(np.mean(per_seed), abs=5e-5)
        assert float(std) == pytest.approx(np.std(per_seed, ddof=1), abs=5e-5)  # over seeds, not trials
    fd_mean, fd_std = parsed[0]["FD ↓"].split(" ± ")
    assert float(fd_mean) == pytest.approx(13.0, abs=0.005) and float(fd_std) == pytest.approx(3.0, abs=0.005)
    table3 = reporting.parse_markdown_table(result["markdown"].split("Table 3")[1])
    clean_mean, clean_std = table3[0]["clean acc. (%) ↑"].split(" ± ")
    assert float(clean_mean) == pytest.approx(96.0) and float(clean_std) == pytest.approx(1.0)
    attacked_mean, attacked_std = table3[0]["λ=1 acc. (%) ↑"].split(" ± ")
    assert float(attacked_mean) == pytest.approx(60.0) and float(attacked_std) == pytest.approx(10.0)
    assert "std over seeds" in result["markdown"]


def test_compare_over_seeds_groups_a_config_saved_before_fields_were_added(tmp_path):
    # Seed 0 exported by an older version: no loss.weighting (its default, "paper", is what that
    # version trained with) and se.norm instead of se.threat_model. It is the same model as seed 1.
    a, _ = rows()
    old = _fake_saved_model(tmp_path, "old", 0)
    meta_path = os.path.join(old["path"], "robust_dae_tf.json")
    meta = json.loads(open(meta_path).read())
    meta["config"]["se"] = {"norm": "linf"}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    new = _fake_saved_model(tmp_path, "new", 1)
    meta = json.loads(open(os.path.join(new["path"], "robust_dae_tf.json")).read())
    meta["config"]["loss"]["weighting"] = "paper"
    meta["config"]["se"] = {"threat_model": "linf", "l2_radius": 1.0}
    with open(os.path.join(new["path"], "robust_dae_tf.json"), "w") as f:
        json.dump(meta, f)
    # The newer evaluation also records the protocol's name and decode noise; the older one does not.
    b = json.loads(json.dumps(a))
    b["robustness"]["protocol"].update(name="strong", decode_noise_std={"latent": 0.0, "max_damage": 0.0})
    dirs = [_fake_eval_dir(tmp_path, "e0", a, model=old), _fake_eval_dir(tmp_path, "e1", b, model=new)]
    assert [r["name"] for r in reporting.compare(dirs, over_seeds=True)["rows"]] == ["robust (mnist), 2 seeds (0, 1)"]
    # ... but a model trained with the other weighting stays apart.
    meta["config"]["loss"]["weighting"] = "reference"
    with open(os.path.join(new["path"], "robust_dae_tf.json"), "w") as f:
        json.dump(meta, f)
    assert [r["name"] for r in reporting.compare(dirs, over_seeds=True)["rows"]] == [
        "robust (mnist) [loss.weighting=paper], 1 seed (0)", "robust (mnist) [loss.weighting=reference], 1 seed (1)"]


def test_compare_over_seeds_groups_by_the_attack_settings_as_resolved(tmp_path):
    # Seed 0 asked for chunk_size=1000 and XLA explicitly, seed 1 left them automatic (None); both
    # resolved to the same settings per attack (attack_by_kind), so they are one model evaluated one way.
    # Resolved settings that differ keep the rows apart.
    resolved = {"latent": {"chunk_size": 1000, "jit_compile": True, "steps": 400},
                "max_damage": {"chunk_size": 1000, "jit_compile": True, "steps": 200}}
    explicit, _ = rows()
    explicit["robustness"]["protocol"].update(attack={"chunk_size": 1000, "jit_compile": True},
                                              attack_by_kind=resolved)
    automatic = json.loads(json.dumps(explicit))
    automatic["robustness"]["protocol"]["attack"] = {"chunk_size": None, "jit_compile": None}
    dirs = [_fake_eval_dir(tmp_path, "e0", explicit, model=_fake_saved_model(tmp_path, "s0", 0)),
            _fake_eval_dir(tmp_path, "e1", automatic, model=_fake_saved_model(tmp_path, "s1", 1))]
    assert [r["name"] for r in reporting.compare(dirs, over_seeds=True)["rows"]] == ["robust (mnist), 2 seeds (0, 1)"]
    weaker = json.loads(json.dumps(automatic))
    weaker["robustness"]["protocol"]["attack_by_kind"]["latent"]["steps"] = 50
    dirs[1] = _fake_eval_dir(tmp_path, "e1b", weaker, model=_fake_saved_model(tmp_path, "s1b", 1))
    names = [r["name"] for r in reporting.compare(dirs, over_seeds=True)["rows"]]
    assert names == ["robust (mnist) [protocol.attack_by_kind.latent.steps=400], 1 seed (0)",
                     "robust (mnist) [protocol.attack_by_kind.latent.steps=50], 1 seed (1)"]


def test_compare_over_seeds_rows_of_two_protocols_need_no_label(tmp_path):
    # The same models under the strong and the paper protocol: the Protocol column tells the rows apart,
    # so the names carry no settings (the two protocols' attack settings always differ).
    strong, _ = rows()
    strong["robustness"]["protocol"].update(name="strong")
    paper = json.loads(json.dumps(strong))
    paper["robustness"]["protocol"].update(name="paper", attack={"method": "paper"})
    paper["protocol"] = "paper"
    models = [_fake_saved_model(tmp_path, f"s{seed}", seed) for seed in (0, 1)]
    dirs = [_fake_eval_dir(tmp_path, f"{name}{seed}", report, model=models[seed])
            for seed in (0, 1) for name, report in (("strong", strong), ("paper", paper))]
    result = reporting.compare(dirs, over_seeds=True)
    assert sorted(r["name"] for r in result["rows"]) == ["robust (mnist), 2 seeds (0, 1)"] * 2
    assert sorted(r["protocol"] for r in result["rows"]) == ["paper", "strong"]


def test_compare_over_seeds_shows_a_part_only_when_every_seed_has_it(tmp_path):
    with_parts, _ = rows()  # classifier and FD
    without = reporting.make_row("model A", with_parts["robustness"], None, None)
    dirs = [_fake_eval_dir(tmp_path, "e1", without, model=_fake_saved_model(tmp_path, "s1", 1)),
            _fake_eval_dir(tmp_path, "e0", with_parts, model=_fake_saved_model(tmp_path, "s0", 0))]
    result = reporting.compare(dirs, over_seeds=True)
    row = result["rows"][0]
    assert row["seeds"] == [0, 1] and row["name"].endswith("2 seeds (0, 1)")
    assert row["classifier"] is None and row["fid"] is None
    assert reporting.parse_markdown_table(result["markdown"])[0]["FD ↓"] == "—"


def test_compare_over_seeds_refuses_a_repeated_seed_and_a_missing_model(tmp_path):
    a, _ = rows()
    dirs = [_fake_eval_dir(tmp_path, f"e{i}", a, model=_fake_saved_model(tmp_path, f"m{i}", 0)) for i in range(2)]
    with pytest.raises(UserError, match="same training seed"):
        reporting.compare(dirs, over_seeds=True)
    gone = _fake_eval_dir(tmp_path, "gone", a, model={"name": "x", "path": str(tmp_path / "nowhere")})
    with pytest.raises(UserError, match="training seed is unknown"):
        reporting.compare([gone], over_seeds=True)


# ------------------------------------------------------------------ sweeps: the Pareto front


def test_pareto_front_hand_computed_with_ties():
    # (robustness up, fidelity error down)
    values = [
        (0.9, 10.0),   # 0: optimal (most robust)
        (0.8, 5.0),    # 1: optimal
        (0.8, 5.0),    # 2: tie with 1: equal entries do not dominate each other
        (0.7, 6.0),    # 3: dominated by 1
        (0.5, 1.0),    # 4: optimal (best fidelity)
        (0.9, 12.0),   # 5: dominated by 0 (same robustness, worse fidelity)
        (None, 0.1),   # 6: incomplete: never optimal, dominates nothing
        (float("nan"), 0.1),  # 7: likewise
    ]
    assert reporting.pareto_front(values, (True, False)) == [0, 1, 2, 4]
    assert reporting.pareto_front(values, (False, True)) == [3, 4, 5]  # both directions flipped
    assert reporting.pareto_front([(1.0, 1.0)], (True, True)) == [0]
    assert reporting.pareto_front([], (True,)) == []


def test_compare_puts_both_protocols_side_by_side(tmp_path):
    """A --protocol=both directory (<dir>/strong, <dir>/paper) gives two rows of one model,
    each naming its protocol in Table 1 / Table 3 (Markdown and CSV) and in the paper
    comparison; --protocol keeps one; a summary from before protocols counts as strong."""
    strong = reporting.make_row("robust (mnist)", fake_robustness(0.01), _classifier(0.96, 0.8), None)
    paper = reporting.make_row("robust (mnist)", fake_robustness(0.3), _classifier(0.96, 0.9), None, protocol="paper")
    model = {"name": "robust (mnist)", "variant": "robust", "dataset": "mnist"}
    both = tmp_path / "mnist_robust"
    _fake_eval_dir(both, "strong", strong, model=model)
    _fake_eval_dir(both, "paper", paper, model=model)
    old = reporting.make_row("gmm_dae (mnist)", fake_robustness(0.05), None, None)
    old_dir = _fake_eval_dir(tmp_path, "old", old, model={**model, "name": "gmm_dae (mnist)", "variant": "gmm_dae"})
    summary = json.loads((tmp_path / "old" / "summary.json").read_text())
    del summary["protocol"], summary["split"]  # as written before protocols existed
    (tmp_path / "old" / "summary.json").write_text(json.dumps(summary))

    result = reporting.compare([str(both), old_dir], digits=4, paper="mnist")
    table1 = reporting.parse_markdown_table(result["markdown"])
    assert [(r["Model"], r["Protocol"]) for r in table1] == [
        ("robust (mnist)", "strong"), ("robust (mnist)", "paper"), ("gmm_dae (mnist)", "strong")]
    column = "Latent: MS-SSIM(x_r, x~_a) ↓ λ=1"
    assert [float(r[column].split(" ± ")[0]) for r in table1] == pytest.approx(
        [expected(row["robustness"], "latent", "msssim_target_adv_rec", 1)[0] for row in (strong, paper, old)],
        abs=5e-5)
    table3 = reporting.parse_markdown_table(result["markdown"].split("### Table 3")[1])
    assert [(r["Protocol"], r["λ=1 acc. (%) ↑"]) for r in table3[:2]] == [("strong", "80.00"), ("paper", "90.00")]
    csv1 = list(csv.DictReader(io.StringIO(result["table1_csv"])))
    assert [(r["model"], r["protocol"], r["split"]) for r in csv1] == [
        ("robust (mnist)", "strong", "test"), ("robust (mnist)", "paper", "test"), ("gmm_dae (mnist)", "strong", "test")]
    assert [r["protocol"] for r in csv.DictReader(io.StringIO(result["table3_csv"]))][:2] == ["strong", "paper"]
    _, paper_table1, _ = _paper_tables(result["markdown"])
    assert [r["Model"] for r in paper_table1] == [
        "GMM-DAE, paper", "gmm_dae (mnist) [strong]", "Ours, paper", "robust (mnist) [strong]",
        "robust (mnist) [paper]"]

    only = reporting.compare([str(both), old_dir], protocol="paper")
    assert [(r["name"], r["protocol"]) for r in only["rows"]] == [("robust (mnist)", "paper")]
    with pytest.raises(UserError, match="none of the evaluations was run under the paper protocol"):
        reporting.compare([old_dir], protocol="paper")
    with pytest.raises(ConfigError, match="--protocol='weak' is unknown"):
        reporting.compare([old_dir], protocol="weak")


def test_report_names_protocol_and_split(tmp_path):
    row = reporting.make_row("tiny (digits)", fake_robustness(0.1), None, None, protocol="paper",
                             split="heldout_train")
    written = reporting.write_report(str(tmp_path), row, tensorboard=False)
    assert "Evaluation protocol: paper (the paper's attacker" in written["markdown"]
    assert "Attacked images: held-out training images" in written["markdown"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["protocol"] == "paper" and summary["split"] == "heldout_train"
    assert reporting.parse_markdown_table((tmp_path / "table1.md").read_text())[0]["Protocol"] == "paper"
