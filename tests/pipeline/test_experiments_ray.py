"""The Ray engine of sweeps: each point one Ray task in a fresh worker process (Ray is the
optional extra `distributed`, installed by CI)."""

import csv
import os

import pytest
import ray  # a hard requirement of this file: CI installs the extra (pip install .[distributed])

from robust_dae_tf.errors import UserError
from robust_dae_tf.pipeline import experiments
from tests.pipeline.sweep_helpers import tiny_sweep


def test_two_point_sweep_on_ray(tmp_path, capsys):
    output = str(tmp_path / "out")
    try:
        result, _ = tiny_sweep(output, engine="ray", cpus_per_point=1,
                               ray_init_kwargs={"num_cpus": 2, "include_dashboard": False})
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert "Ray: 2 CPUs, 1 per point" in out and "2 of 2 points to run (ray engine)" in out
    assert "finished: seed=0" in out and "finished: seed=1" in out
    for point in result["points"]:
        assert experiments.is_complete(output, point)
    with open(os.path.join(output, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["point"] for r in rows] == ["seed=0", "seed=1"]
    assert all(0 < float(r["reconstruction_mse"]) < 0.5 and r["fd"] for r in rows)
    assert os.path.exists(os.path.join(output, "sweep_front.png"))


def test_ray_engine_without_ray_says_how_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UserError, match=r"pip install \.\[distributed\]"):
        experiments.import_ray()
