"""Tests of robust_dae_tf.reporting.tensorboard (through write_report)."""

import json
import os

import pytest

from robust_dae_tf import reporting
from tests.reporting.fakes import BUDGETS, expected, rows, fake_examples


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
