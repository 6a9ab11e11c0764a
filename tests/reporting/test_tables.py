"""Tests of robust_dae_tf.reporting.tables: Table 1 and Table 3 (parsed back) and their CSVs."""

import csv
import io

import pytest

from robust_dae_tf import reporting
from tests.reporting.fakes import BUDGETS, LATENT_METRICS, MAX_METRICS, fake_robustness, expected, rows


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


def _with_runs(report, method, logs):
    """`report` with the protocol's attack method and per-attack run logs {attack: [log per budget]}."""
    report["protocol"].update({"name": "strong", "attack": {"method": method}})
    report["attack_runs"] = {attack: {str(float(b)): log for b, log in zip(BUDGETS, attack_logs)}
                             for attack, attack_logs in logs.items()}
    return report


def test_attack_sentence_only_for_what_the_protocol_sentence_does_not_say(tmp_path):
    from robust_dae_tf.reporting import tables

    pgd = {"gradient_evaluations_per_image": 3200, "precision": "float32"}
    plain = _with_runs(fake_robustness(0.1), "pgd", {"latent": [pgd] * 3, "max_damage": [pgd] * 3})
    assert tables.attack_markdown(plain) == ""
    assert tables.attack_markdown(None) == "" and tables.attack_markdown(fake_robustness(0.1)) == ""
    paper = _with_runs(fake_robustness(0.1), "paper", {"latent": [pgd] * 3})
    paper["protocol"]["name"] = "paper"
    assert tables.attack_markdown(paper) == ""
    old = _with_runs(fake_robustness(0.1), "ensemble", {  # logs written before the precision was recorded
        "latent": [{"gradient_evaluations_per_image": 800}] * 3,
        "max_damage": [{"gradient_evaluations_per_image": 496}, {"gradient_evaluations_per_image": 500},
                       {"gradient_evaluations_per_image": 496}]})
    assert tables.attack_markdown(old) == (
        "Attack: `ensemble`; latent: 800 gradient evaluations per image, search in float32; max_damage: 496 / 500 "
        "gradient evaluations per image, search in float32.")


def test_attack_sentence_names_a_bfloat16_search_and_its_measurement(tmp_path):
    from robust_dae_tf.reporting import tables

    auto = {"gradient_evaluations_per_image": 800, "precision": "bfloat16",
            "precision_measurement": {"speedup": 1.9049, "requested": "auto"}}
    kept = {"gradient_evaluations_per_image": 3200, "precision": "float32", "precision_note": "..."}
    report = _with_runs(fake_robustness(0.1), "pgd", {"latent": [auto, dict(auto, precision_measurement={
        "speedup": 1.87})], "max_damage": [kept, kept]})
    sentence = tables.attack_markdown(report)
    assert sentence == ("Attack: `pgd`; latent: 800 gradient evaluations per image, search in bfloat16 (auto: "
                        "bfloat16 measured 1.87x as fast); max_damage: 3200 gradient evaluations per image, search in "
                        "float32. What the bfloat16 search found was scored with the float32 model, as every "
                        "reported number.")
    row = reporting.make_row("m", robustness=report)
    markdown = reporting.write_report(str(tmp_path), row, tensorboard=False)["markdown"]
    assert sentence in markdown
    plain = reporting.write_report(str(tmp_path / "plain"), reporting.make_row("m", robustness=fake_robustness(0.1)),
                                   tensorboard=False)["markdown"]
    assert "Attack: `" not in plain


def test_local_gain_sentence(tmp_path):
    from robust_dae_tf.reporting import tables

    report = fake_robustness(0.1)
    assert tables.local_gain_markdown(report) == "" and tables.local_gain_markdown(None) == ""
    report["local_gain"] = {
        "latent": {"mean": 2.5612, "median": 2.5, "std": 0.41, "images": 100, "non_finite_images": 0},
        "max_damage": {"mean": 1.0, "median": 1.25, "std": 0.0, "images": 100, "non_finite_images": 3},
        "other": {"mean": None, "median": None, "std": None, "images": 4, "non_finite_images": 4}}
    sentence = tables.local_gain_markdown(report)
    assert sentence.endswith(
        "latent mean 2.56, median 2.5, std 0.41 over 100 images; max_damage mean 1, median 1.25, std 0 over 97 images "
        "(3 left out: the model is not finite near them); other: not finite at any image.")
    markdown = reporting.write_report(str(tmp_path), reporting.make_row("m", robustness=report),
                                      tensorboard=False)["markdown"]
    assert sentence in markdown
