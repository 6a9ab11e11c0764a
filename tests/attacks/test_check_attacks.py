"""bin/check_attacks.py end to end on a tiny exported model with tiny budgets: the table and
JSON (loss, MS-SSIM, images won, gradient evaluations, seconds, CPU), resuming per cell, and
one clear error for bad flags."""

import json
import os

import numpy as np

from tests.helpers import export_tiny_autoencoder
from tests.reporting.fakes import _png_size
from tests.scripts import assert_one_error_line, run_script


def test_check_attacks_end_to_end_and_resume(tmp_path):
    model = export_tiny_autoencoder(str(tmp_path / "model"))
    out = str(tmp_path / "check")
    args = [f"--model={model}", "--trust_model", "--num_images=3", "--budgets=0.5,1", "--attacks=latent,max_damage",
            "--steps=8", "--restarts=1", "--exploration_starts=2", "--reference_factor=2",
            "--ensemble_evaluations=80", f"--output={out}"]
    done = run_script("check_attacks.py", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("attacking 3 images") == 2 * 2 * 3
    with open(os.path.join(out, "results.json")) as f:
        payload = json.load(f)
    meta, results = payload["meta"], payload["results"]
    assert meta["cpu"] and meta["cpu"] in open(os.path.join(out, "summary.md")).read()
    for attack, maximize in (("latent", False), ("max_damage", True)):
        for budget in ("0.5", "1.0"):
            cells = results[attack][budget]
            losses = np.array([cells[m]["loss"] for m in ("ensemble", "pgd", "reference")])
            best = losses.max(0) if maximize else losses.min(0)
            assert cells["images_won"] == {m: int(np.sum(losses[i] == best))
                                           for i, m in enumerate(("ensemble", "pgd", "reference"))}
            assert sum(cells["images_won"].values()) >= 3
            # Spent gradient evaluations: pgd 2 x ceil(8/8) + 8 = 10, the reference 2 x 2 starts x 2 + 2 x 16 = 40.
            assert cells["pgd"]["gradient_evaluations_per_image"] == 10
            assert cells["reference"]["gradient_evaluations_per_image"] == 40
            assert 0 < cells["ensemble"]["gradient_evaluations_per_image"] <= 80
            assert sum(cells["ensemble"]["log"]["member_wins"].values()) == 3
            for m in ("ensemble", "pgd", "reference"):
                assert np.isclose(cells[m]["mean_loss"], np.mean(cells[m]["loss"]))
                assert 0 <= cells[m]["mean_msssim"] <= 1 and cells[m]["seconds"] > 0
    summary = open(os.path.join(out, "summary.md")).read()
    assert summary.count("| latent | 0.5 |") == 3 and "| max_damage | 1 | ensemble |" in summary
    # The per-image figure: one 4-inch panel per (attack, budget) at 100 dpi.
    assert f"Per-image figure: {os.path.join(out, 'per_image.png')}" in done.stdout
    assert _png_size(os.path.join(out, "per_image.png")) == (4 * 400, 400)
    # A rerun reuses every finished cell; a removed cell is attacked again, with the same result.
    cell = os.path.join(out, "cells", "max_damage_1.0_pgd.json")
    with open(cell) as f:  # float32 is left out, as in cells written before the precision field existed
        recorded = json.loads(json.load(f)["fingerprint"])["config"]
    assert "precision" not in recorded and recorded["method"] == "pgd" and "gradient_evaluations" in recorded
    os.remove(cell)
    again = run_script("check_attacks.py", *args, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("reused") == 11 and again.stdout.count("attacking 3 images") == 1
    with open(os.path.join(out, "results.json")) as f:
        rerun = json.load(f)["results"]
    assert rerun["max_damage"]["1.0"]["pgd"]["loss"] == results["max_damage"]["1.0"]["pgd"]["loss"]


def test_check_attacks_bad_flags(tmp_path):
    model = export_tiny_autoencoder(str(tmp_path / "model"))
    done = run_script("check_attacks.py", f"--model={model}", "--trust_model", "--methods=pgd,fab",
                      f"--output={tmp_path}/c")
    assert_one_error_line(done, "--methods", "fab")
    done = run_script("check_attacks.py", f"--model={model}", "--trust_model", "--ensemble_evaluations=10",
                      f"--output={tmp_path}/c")
    assert_one_error_line(done, "ensemble", "at least 80")


def test_check_attacks_pgd_towards_is_pgd_with_starts_towards_other_images(tmp_path):
    """Method pgd_towards: the pgd cell's settings with half of the first phase's starts
    towards other images (here 1 of 2): the same gradient evaluations, described in the meta."""
    model = export_tiny_autoencoder(str(tmp_path / "model"))
    out = str(tmp_path / "check")
    done = run_script("check_attacks.py", f"--model={model}", "--trust_model", "--num_images=3", "--budgets=1",
                      "--attacks=max_damage", "--methods=pgd,pgd_towards", "--steps=8", "--restarts=1",
                      "--exploration_starts=2", f"--output={out}", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        payload = json.load(f)
    cells = payload["results"]["max_damage"]["1.0"]
    assert cells["pgd_towards"]["gradient_evaluations_per_image"] == cells["pgd"]["gradient_evaluations_per_image"] == 10
    assert payload["meta"]["configs"]["max_damage"]["pgd_towards"]["towards_starts"] == 1
    assert payload["meta"]["configs"]["max_damage"]["pgd"]["towards_starts"] == 0
    assert "1 starts towards other images" in payload["meta"]["methods"]["pgd_towards"]
    assert cells["pgd_towards"]["loss"] != cells["pgd"]["loss"]  # a different start was used
    done = run_script("check_attacks.py", f"--model={model}", "--trust_model", "--methods=pgd_towards",
                      "--towards_starts=0", f"--output={tmp_path}/c")
    assert_one_error_line(done, "--towards_starts", ">= 1")
