"""User faults of sweeps, end to end through `bin/sweep.py` and `bin/reproduce.py`: the grid,
the evaluation pass-through, the engine. Each ends in one clear `error:` line before anything
is written (shared helpers: tests/scripts.py).
"""

import os

import pytest

from tests.scripts import ROOT, assert_one_error_line, run_script

SWEEP_CASES = [
    ("sweep.py", ["--grid=loss.couplin=0.5,0.9"], ["--grid=loss.couplin=0.5,0.9", "no field 'couplin'", "coupling"]),
    ("sweep.py", ["--grid=loss.coupling=0.5,high"], ["--grid=loss.coupling=0.5,high", "'high'", "a number"]),
    ("sweep.py", ["--grid=loss.coupling"], ["--grid=loss.coupling", "expected --grid=<config field>=<value>"]),
    ("sweep.py", ["--grid=loss.coupling=0.5,1.5"], ["--grid=loss.coupling=0.5,1.5", "value 1.5 is invalid", "alpha"]),
    ("sweep.py", ["--grid=model=robust,robustt"], ["--grid=model=robust,robustt", "'robustt' is unknown"]),
    ("sweep.py", ["--eval=trails=2"], ["--eval=trails=2", "trials"]),
    ("sweep.py", ["--eval=budgets=1"], ["--front_budget=3", "budgets"]),
    ("reproduce.py", ["--models=gmm_dae,robustt"], ["--models=gmm_dae,robustt", "'robustt' is unknown"]),
    ("reproduce.py", ["--models=gmm_dae,vae", "--model_epochs=se=3"], ["--model_epochs=se=3", "'se' is not one of"]),
    ("reproduce.py", ["--model_epochs=robust=0"], ["--model_epochs=robust=0", "positive integer"]),
]


@pytest.mark.parametrize("script, args, words", SWEEP_CASES, ids=[" ".join(c[1]) for c in SWEEP_CASES])
def test_sweep_bad_input(tmp_path, script, args, words):
    output = tmp_path / "out"
    done = run_script(script, "--dataset=digits", f"--output={output}", *args, timeout=120)
    assert_one_error_line(done, *words)
    assert not output.exists()  # checked before anything is written


def test_sweep_engine_ray_without_ray_says_how_to_install(tmp_path):
    fake = tmp_path / "no_ray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = os.pathsep.join([str(fake), ROOT, os.environ.get("PYTHONPATH", "")])
    done = run_script("sweep.py", "--dataset=digits", "--engine=ray", f"--output={tmp_path / 'out'}",
                      env={"PYTHONPATH": path}, timeout=120)
    assert_one_error_line(done, "--engine=ray", "pip install .[distributed]")
