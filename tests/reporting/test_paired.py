"""Tests of robust_dae_tf.reporting.paired: two models compared image by image on the same attacked images."""

import csv
import io
import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from robust_dae_tf import attacks, fileio, reporting
from robust_dae_tf.reporting import per_image
from robust_dae_tf.errors import UserError
from tests.reporting.fakes import _compare_cli, fake_examples
from tests.scripts import assert_one_error_line

MAX_METRIC = attacks.MAX_DAMAGE_OBJECTIVE.main_metric
LATENT_METRIC = attacks.LATENT_OBJECTIVE.main_metric


# ----------------------------------------------------------------------------- the statistics


def test_paired_difference_against_scipy():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.5, 0.9, 40)
    b = a + rng.normal(-0.02, 0.05, 40)
    got = reporting.paired_difference(a, b, higher_is_more_robust=True)
    d = b - a
    assert got["n"] == 40 and got["dropped"] == 0
    assert got["mean_a"] == pytest.approx(a.mean()) and got["mean_b"] == pytest.approx(b.mean())
    assert got["mean_difference"] == pytest.approx(d.mean())
    assert got["standard_error"] == pytest.approx(stats.sem(d))
    assert got["difference_over_se"] == pytest.approx(stats.ttest_rel(b, a).statistic)
    assert got["b_more_robust"] == int(np.sum(b > a))
    # The latent attack's direction: lower is more robust.
    assert reporting.paired_difference(a, b, higher_is_more_robust=False)["b_more_robust"] == int(np.sum(b < a))


def test_paired_difference_ties_nan_and_one_pair():
    a = np.array([0.5, 0.6, np.nan, 0.7, 0.8])
    b = np.array([0.5, 0.7, 0.9, np.nan, 0.6])
    got = reporting.paired_difference(a, b, higher_is_more_robust=True)
    assert got["n"] == 3 and got["dropped"] == 2
    assert got["mean_difference"] == pytest.approx(np.mean([0.0, 0.1, -0.2]))
    assert got["b_more_robust"] == 1  # the tie (0.5, 0.5) counts for neither side
    one = reporting.paired_difference([0.4], [0.3], higher_is_more_robust=False)
    assert one["n"] == 1 and one["mean_difference"] == pytest.approx(-0.1) and one["b_more_robust"] == 1
    assert math.isnan(one["standard_error"]) and math.isnan(one["difference_over_se"])
    same = reporting.paired_difference([0.4, 0.5], [0.4, 0.5], higher_is_more_robust=True)
    assert same["standard_error"] == 0.0 and math.isnan(same["difference_over_se"])
    none = reporting.paired_difference([np.nan], [0.3], higher_is_more_robust=True)
    assert none["n"] == 0 and math.isnan(none["mean_difference"])
    with pytest.raises(UserError, match="differ in length"):
        reporting.paired_difference([0.1, 0.2], [0.1], higher_is_more_robust=True)


# ----------------------------------------------------------------------------- bin/check_attacks.py outputs


def _cell(root, name, attack, budget, method, msssim, images="img", targets="tgt", seed=0):
    cells = os.path.join(str(root), name, "cells")
    os.makedirs(cells, exist_ok=True)
    fingerprint = json.dumps({"images": images, "targets": targets, "seed": seed, "objective": attack,
                              "budget": budget, "model": name})
    cell = {"loss": [0.0] * len(msssim), "msssim": list(msssim), "mean_msssim": float(np.mean(msssim))}
    path = os.path.join(cells, f"{attack}_{float(budget)}_{method}.json")
    with open(path, "w") as f:
        json.dump({"fingerprint": fingerprint, "cell": cell}, f)
    return os.path.join(str(root), name)


def test_check_outputs_pair_by_method_attack_budget(tmp_path):
    rng = np.random.default_rng(0)
    values = {m: {k: rng.uniform(0, 1, 12) for k in ("ensemble", "pgd_towards")} for m in ("a", "b")}
    for model in ("a", "b"):
        for method in ("ensemble", "pgd_towards"):
            _cell(tmp_path, model, "max_damage", 5.0, method, values[model][method])
        _cell(tmp_path, model, "latent", 1.0, "pgd", values[model]["pgd_towards"][::-1])
    _cell(tmp_path, "a", "max_damage", 3.0, "pgd", [0.5] * 12)  # in A only: not compared
    rows = reporting.paired_comparison(str(tmp_path / "a"), str(tmp_path / "b"))
    got = {(r["group"], r["attack"], r["budget"]): r for r in rows}
    assert set(got) == {("ensemble", "max_damage", 5.0), ("pgd_towards", "max_damage", 5.0), ("pgd", "latent", 1.0)}
    for method in ("ensemble", "pgd_towards"):
        row = got[(method, "max_damage", 5.0)]
        d = values["b"][method] - values["a"][method]
        assert row["metric"] == MAX_METRIC
        assert row["mean_difference"] == pytest.approx(d.mean()) and row["standard_error"] == pytest.approx(stats.sem(d))
        assert row["b_more_robust"] == int(np.sum(d > 0))
    latent = got[("pgd", "latent", 1.0)]
    d = values["b"]["pgd_towards"][::-1] - values["a"]["pgd_towards"][::-1]
    assert latent["metric"] == LATENT_METRIC and latent["b_more_robust"] == int(np.sum(d < 0))


@pytest.mark.parametrize("field", ["images", "targets", "seed"])
def test_check_outputs_on_other_images_are_refused(tmp_path, field):
    _cell(tmp_path, "a", "max_damage", 5.0, "pgd", [0.5, 0.6])
    _cell(tmp_path, "b", "max_damage", 5.0, "pgd", [0.5, 0.6], **{field: 7 if field == "seed" else "other"})
    with pytest.raises(UserError, match=f"same images in cell pgd/max_damage/5.0: {field}"):
        reporting.paired_comparison(str(tmp_path / "a"), str(tmp_path / "b"))


def test_bad_directories(tmp_path):
    a = _cell(tmp_path, "a", "max_damage", 5.0, "pgd", [0.5, 0.6])
    b = _cell(tmp_path, "b", "max_damage", 3.0, "pgd", [0.5, 0.6])
    with pytest.raises(UserError, match="share no"):
        reporting.paired_comparison(a, b)
    with pytest.raises(UserError, match="not a directory"):
        reporting.paired_comparison(a, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither"):
        reporting.paired_comparison(a, str(tmp_path / "empty"))
    evaluation = _evaluation(tmp_path, "e", {"max_damage": [0.5, 0.6]})
    with pytest.raises(UserError, match="check directory and .* evaluation directory"):
        reporting.paired_comparison(a, evaluation)
    with open(os.path.join(b, "cells", "max_damage_3.0_pgd.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(UserError, match="is not readable JSON.*rerun bin/check_attacks.py"):
        reporting.paired_comparison(a, b)


# ----------------------------------------------------------------------------- bin/evaluate.py outputs


def _evaluation(root, name, values, budget=5.0, protocol="strong", seed=0, examples_seed=0, per_image_file=True):
    """An evaluation's robustness artifact as bin/evaluate.py writes it: robustness.json,
    per_image.npz ({attack: main-metric values at `budget`}) and examples.npz."""
    directory = os.path.join(str(root), name)
    robustness = os.path.join(directory, reporting.ROBUSTNESS_DIR)
    os.makedirs(robustness)
    n = len(next(iter(values.values())))
    report = {"protocol": {"name": protocol, "seed": seed, "trial_seeds": [seed + 11], "num_images": n, "trials": 1,
                           "budgets": [budget]},
              "pool_size": 100, "split": "test", "split_start": 0, "model": {"dataset": "mnist", "name": name}}
    fileio.write_text_atomic(os.path.join(robustness, reporting.ROBUSTNESS_FILE), json.dumps(report))
    metric_of = {"latent": LATENT_METRIC, "max_damage": MAX_METRIC}
    if per_image_file:
        per_image.save(os.path.join(robustness, per_image.FILE),
                       {attack: {str(budget): {metric_of[attack]: np.asarray(v), "attack_loss": np.zeros(n)}}
                        for attack, v in values.items()}, trials=1)
    examples = {attack: fake_examples(k=2, target=attack == "latent") for attack in values}
    if examples_seed:
        examples["max_damage"]["x"] = examples["max_damage"]["x"] + 0.01 * examples_seed
    reporting.save_examples_npz(os.path.join(robustness, reporting.EXAMPLES_FILE), examples)
    return directory


def test_evaluations_pair_by_protocol_attack_budget(tmp_path):
    rng = np.random.default_rng(1)
    va = {"latent": rng.uniform(0.2, 0.4, 9), "max_damage": rng.uniform(0.7, 0.9, 9)}
    vb = {"latent": rng.uniform(0.2, 0.4, 9), "max_damage": rng.uniform(0.7, 0.9, 9)}
    for protocol in ("strong", "paper"):  # --protocol=both layout: <dir>/strong, <dir>/paper
        _evaluation(tmp_path / "a", protocol, va, protocol=protocol)
        _evaluation(tmp_path / "b", protocol, vb if protocol == "strong" else va, protocol=protocol)
    rows = reporting.paired_comparison(str(tmp_path / "a"), str(tmp_path / "b"))
    got = {(r["group"], r["attack"]): r for r in rows}
    assert set(got) == {(p, a) for p in ("strong", "paper") for a in ("latent", "max_damage")}
    for attack in ("latent", "max_damage"):
        strong = got[("strong", attack)]
        d = vb[attack] - va[attack]
        assert strong["budget"] == 5.0 and strong["n"] == 9
        assert strong["mean_difference"] == pytest.approx(d.mean())
        assert strong["difference_over_se"] == pytest.approx(stats.ttest_rel(vb[attack], va[attack]).statistic)
        assert got[("paper", attack)]["mean_difference"] == 0.0
    assert got[("strong", "latent")]["b_more_robust"] == int(np.sum(vb["latent"] < va["latent"]))
    assert got[("strong", "max_damage")]["b_more_robust"] == int(np.sum(vb["max_damage"] > va["max_damage"]))


def test_evaluations_of_other_images_are_refused(tmp_path):
    values = {"max_damage": [0.5, 0.6, 0.7]}
    a = _evaluation(tmp_path, "a", values)
    with pytest.raises(UserError, match="seed is 0 vs 1"):
        reporting.paired_comparison(a, _evaluation(tmp_path, "other_seed", values, seed=1))
    with pytest.raises(UserError, match="example images"):
        reporting.paired_comparison(a, _evaluation(tmp_path, "other_images", values, examples_seed=1))
    with pytest.raises(UserError, match="num_images is 3 vs 2"):
        reporting.paired_comparison(a, _evaluation(tmp_path, "fewer", {"max_damage": [0.5, 0.6]}))
    with pytest.raises(UserError, match="per_image.npz is missing"):
        reporting.paired_comparison(a, _evaluation(tmp_path, "old", values, per_image_file=False))


# ----------------------------------------------------------------------------- Markdown, CSV, CLI


def test_markdown_and_csv_hold_the_rows(tmp_path):
    a = _cell(tmp_path, "gmm", "max_damage", 5.0, "ensemble", [0.8, 0.9, np.nan, 0.7])
    b = _cell(tmp_path, "robust", "max_damage", 5.0, "ensemble", [0.7, 0.8, 0.5, 0.75])
    rows = reporting.paired_comparison(a, b)
    table = reporting.parse_markdown_table(reporting.paired_markdown(rows, "gmm", "robust"))
    assert len(table) == 1
    assert table[0]["n"] == "3 (1 dropped)" and table[0]["B − A"] == f"{np.mean([-0.1, -0.1, 0.05]):.3f}"
    assert table[0]["B more robust on"] == "1 / 3" and table[0]["A: gmm"] == f"{np.mean([0.8, 0.9, 0.7]):.3f}"
    parsed = list(csv.DictReader(io.StringIO(reporting.paired_csv(rows))))
    assert float(parsed[0]["standard_error"]) == pytest.approx(stats.sem([-0.1, -0.1, 0.05]))


def test_compare_cli_paired(tmp_path):
    a = _cell(tmp_path, "gmm", "max_damage", 5.0, "pgd", [0.8, 0.9, 0.7])
    b = _cell(tmp_path, "robust", "max_damage", 5.0, "pgd", [0.7, 0.8, 0.75])
    output = tmp_path / "out" / "paired.md"
    output.parent.mkdir()
    done = _compare_cli("--paired", a, b, f"--output={output}")
    assert done.returncode == 0, done.stderr[-2000:]
    table = reporting.parse_markdown_table(output.read_text())
    assert table[0]["A: gmm"] == "0.800" and table[0]["B: robust"] == "0.750"
    assert (tmp_path / "out" / "paired_paired.csv").exists()
    assert "B − A" in done.stdout
    assert_one_error_line(_compare_cli("--paired", a), "--paired", "exactly two")
    assert_one_error_line(_compare_cli("--paired", a, str(tmp_path / "missing")), "not a directory")


def test_an_attack_this_installation_does_not_register_is_one_error(tmp_path):
    a = _cell(tmp_path, "a", "no_such_attack", 5.0, "pgd", [0.5, 0.6])
    b = _cell(tmp_path, "b", "no_such_attack", 5.0, "pgd", [0.5, 0.6])
    with pytest.raises(UserError, match="unknown attack 'no_such_attack'"):
        reporting.paired_comparison(a, b)


def test_local_gains_of_two_evaluations_are_paired_once_per_attack(tmp_path):
    """Evaluations made with --local_gain hold the gain under every budget; the paired
    comparison adds one budget-free row per attack, lower gain = more robust."""
    rng = np.random.default_rng(4)
    msssim = {"max_damage": rng.uniform(0.7, 0.9, 6)}
    gains_a, gains_b = rng.uniform(1, 3, 6), rng.uniform(1, 3, 6)
    gains_b[2] = np.nan  # a model not finite near one image: that pair is dropped
    directories = []
    for name, gains in (("a", gains_a), ("b", gains_b)):
        directory = _evaluation(tmp_path, name, msssim)
        values = {"max_damage": {budget: {MAX_METRIC: msssim["max_damage"], "attack_loss": np.zeros(6),
                                           "local_gain": gains} for budget in ("1.0", "5.0")}}
        per_image.save(os.path.join(directory, reporting.ROBUSTNESS_DIR, per_image.FILE), values, trials=1)
        directories.append(directory)
    rows = reporting.paired_comparison(*directories)
    gain_rows = [r for r in rows if r["metric"] == "local_gain"]
    assert len(gain_rows) == 1 and len(rows) == 3  # two budgets of MS-SSIM, one gain row
    row = gain_rows[0]
    keep = np.isfinite(gains_b)
    assert row["budget"] is None and row["n"] == 5 and row["dropped"] == 1
    assert row["mean_difference"] == pytest.approx(np.mean(gains_b[keep] - gains_a[keep]))
    assert row["difference_over_se"] == pytest.approx(stats.ttest_rel(gains_b[keep], gains_a[keep]).statistic)
    assert row["b_more_robust"] == int(np.sum(gains_b[keep] < gains_a[keep]))  # lower gain is more robust
    markdown = reporting.paired_markdown(rows, "a", "b")
    table = [r for r in reporting.parse_markdown_table(markdown) if r["metric"] == "local_gain"]
    assert table[0]["λ"] == "—" and "local_gain rows" in markdown
    parsed = [r for r in csv.DictReader(io.StringIO(reporting.paired_csv(rows))) if r["metric"] == "local_gain"]
    assert parsed[0]["budget"] == "" and float(parsed[0]["n"]) == 5
    only_a = _evaluation(tmp_path, "no_gain", msssim)  # one side without --local_gain: no gain row
    assert all(r["metric"] != "local_gain" for r in reporting.paired_comparison(directories[0], only_a))
