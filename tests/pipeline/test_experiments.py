"""Sweeps (robust_dae_tf.pipeline.experiments): grid parsing, a two-point sweep on the
digits with the local engine (table and figure hold each point's numbers) and a rerun
after a killed point that completes only that point."""

import csv
import os

import pytest

from robust_dae_tf import config_lib, reporting
from robust_dae_tf.attacks.config import budget_key
from robust_dae_tf.attacks.objectives import OBJECTIVES
from robust_dae_tf.errors import ConfigError, UserError
from robust_dae_tf.pipeline import experiments
from tests.pipeline.sweep_helpers import EVAL, tiny_base, tiny_sweep

# ------------------------------------------------------------------ grid parsing (no training)


def test_grid_is_the_cartesian_product_with_typed_values():
    base = config_lib.base_config()
    axes = experiments.parse_grid(["loss.coupling=0.5,0.8,0.9", "model=gmm_dae,robust",
                                   "model.hidden_units=(64,64),(32,)", "train.jit_compile=false"], base)
    assert axes == [("loss.coupling", (0.5, 0.8, 0.9)), ("model.variant", ("gmm_dae", "robust")),
                    ("model.hidden_units", ((64, 64), (32,))), ("train.jit_compile", (False,))]
    points = experiments.make_points(base, axes)
    assert len(points) == 12
    assert len({p.name for p in points}) == 12
    first = points[0]
    assert first.name == "coupling=0.5_gmm_dae_hidden_units=64-64_jit_compile=False"
    assert (first.model, first.epochs, first.seed) == ("gmm_dae", base.train.epochs, 0)
    config = first.config(base)
    assert (config.loss.coupling, config.model.variant, config.model.hidden_units) == (0.5, "gmm_dae", (64, 64))
    assert isinstance(config.train.epochs, int) and base.loss.coupling == 0.9  # the base is not changed
    epochs = experiments.make_points(base, experiments.parse_grid(["epochs=2,3"], base))
    assert [p.epochs for p in epochs] == [2, 3] and [p.name for p in epochs] == ["epochs=2", "epochs=3"]
    assert [p.name for p in experiments.make_points(base, [])] == ["base"]


@pytest.mark.parametrize("spec, words", [
    ("loss.couplin=0.5", ["--grid=loss.couplin=0.5", "no field 'couplin'", "coupling"]),
    ("loss.coupling=0.5,high", ["--grid=loss.coupling=0.5,high", "'high'", "a number"]),
    ("train.epochs=1.5", ["--grid=train.epochs=1.5", "an integer"]),
    ("loss=0.5", ["--grid=loss=0.5", "section"]),
    ("loss.coupling", ["--grid=loss.coupling", "expected --grid=<config field>=<value>"]),
    ("loss.coupling=0.5,0.5", ["listed twice"]),
    ("dataset=mnist,digits", ["one dataset"]),
])
def test_grid_errors_name_the_flag(spec, words):
    with pytest.raises(ConfigError) as err:
        experiments.parse_grid([spec], config_lib.base_config())
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("grid, message", [
    (["loss.coupling=0.5,2.0", "model=robust"], r"--grid=loss.coupling=0.5,2.0: the value 2.0 is invalid.*alpha"),
    (["loss.coupling=0.5", "model=robust,nonsense"], r"--grid=model=robust,nonsense: the value nonsense is invalid"),
])
def test_invalid_point_configs_fail_before_any_work_naming_the_flag(tmp_path, grid, message):
    base = tiny_base()
    axes = experiments.parse_grid(grid, base)
    with pytest.raises(ConfigError, match=message):
        experiments.run_sweep(base, experiments.make_points(base, axes), str(tmp_path / "out"), axes=axes,
                              axis_flags=[f"--grid={g}" for g in grid])
    assert not (tmp_path / "out").exists()


def _model_points(models=("gmm_dae", "vae", "robust")):
    base = tiny_base()
    return experiments.make_points(base, experiments.parse_grid([f"model={','.join(models)}"], base))


def test_model_epochs_replace_the_budget_of_the_named_models_only():
    points = experiments.with_model_epochs(_model_points(), ["vae=3", " robust = 7 "])
    assert [(p.name, p.epochs) for p in points] == [("gmm_dae", 1), ("vae", 3), ("robust", 7)]
    base = tiny_base()
    assert [p.config(base).train.epochs for p in points] == [1, 3, 7]
    assert [p.config(base).model.variant for p in points] == ["gmm_dae", "vae", "robust"]
    paths = experiments.point_paths("out", points[1])
    assert paths["root"] == os.path.join("out", "points", "vae")  # the same directory: the run continues
    assert paths["evaluation"] == os.path.join("out", "points", "vae", "e3", "evaluation")
    assert experiments.with_model_epochs(points, []) == points


@pytest.mark.parametrize("items, words", [
    (["vae"], ["--model_epochs=vae", "expected <model>=<epochs>"]),
    (["=3"], ["--model_epochs==3", "expected <model>=<epochs>"]),
    (["se=3"], ["--model_epochs=se=3", "'se' is not one of the models run (gmm_dae, vae, robust)"]),
    (["vae=3", "vae=4"], ["--model_epochs", "vae is given twice"]),
    (["vae=0"], ["--model_epochs=vae=0", "positive integer", "'0'"]),
    (["vae=2.5"], ["--model_epochs=vae=2.5", "positive integer", "'2.5'"]),
    (["vae=-1"], ["positive integer"]),
    (["vae=ten"], ["positive integer", "'ten'"]),
])
def test_model_epochs_errors_name_the_flag(items, words):
    with pytest.raises(ConfigError) as err:
        experiments.with_model_epochs(_model_points(), items)
    for word in words:
        assert word in str(err.value)


def test_a_model_with_its_own_epoch_budget_trains_that_many_epochs(tmp_path):
    base = tiny_base()  # --epochs=1 for every other model
    axes = experiments.parse_grid(["model=gmm_dae"], base)
    points = experiments.with_model_epochs(experiments.make_points(base, axes), ["gmm_dae=2"])
    output = str(tmp_path / "out")
    settings = experiments.parse_settings(EVAL + [f"feature_cache={tmp_path / 'fc'}"])
    experiments.run_sweep(base, points, output, settings, front_budget=1.0, axes=axes,
                          axis_flags=["--grid=model=gmm_dae"])
    paths = experiments.point_paths(output, points[0])
    assert paths["export"] == os.path.join(output, "points", "gmm_dae", "e2", "saved_model")
    assert experiments.is_complete(output, points[0])
    with open(os.path.join(paths["workdir"], "trainer", "history.json")) as f:
        assert len(__import__("json").load(f)["loss"]) == 2
    assert not os.path.exists(os.path.join(output, "points", "gmm_dae", "e1"))


def test_evaluation_settings_pass_through():
    settings = experiments.parse_settings(["trials=2", "budgets=1,3", "skip_fid=true", "attack_steps=none"])
    assert (settings.trials, settings.budgets, settings.skip_fid, settings.attack_steps) == (2, "1,3", True, None)
    with pytest.raises(ConfigError, match="--eval=trails=2: expected"):
        experiments.parse_settings(["trails=2"])
    with pytest.raises(ConfigError, match="--eval=trials=two.*an integer"):
        experiments.parse_settings(["trials=two"])
    with pytest.raises(ConfigError, match="set by the sweep"):
        experiments.parse_settings(["examples=/x"], examples=None)


# ------------------------------------------------------------------ a two-point sweep, local engine


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    output = str(tmp_path_factory.mktemp("sweep") / "out")
    result, axes = tiny_sweep(output)
    return output, result, axes


def _csv_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_table_and_figure_hold_every_points_numbers(sweep):
    output, result, _ = sweep
    assert [p.name for p in result["points"]] == ["seed=0", "seed=1"] and result["skipped"] == []
    rows = _csv_rows(os.path.join(output, "sweep.csv"))
    assert [r["point"] for r in rows] == ["seed=0", "seed=1"]
    assert [r["train.seed"] for r in rows] == ["0", "1"]
    fronts = []
    for row in rows:
        paths = experiments.point_paths(output, experiments.Point(row["point"], "digits", "robust", epochs=1))
        evaluation = reporting.load_evaluation(paths["evaluation"])
        assert evaluation["name"] == "robust (digits)" and evaluation["classifier"] is None
        damage_metric, latent_metric = (OBJECTIVES[name].main_metric for name in ("max_damage", "latent"))
        damage = evaluation["robustness"]["max_damage"][budget_key(1)][damage_metric]
        latent = evaluation["robustness"]["latent"][budget_key(1)][latent_metric]
        assert float(row[f"max_damage.{damage_metric}.lambda=1.mean"]) == damage["mean"]
        assert float(row[f"latent.{latent_metric}.lambda=1.mean"]) == latent["mean"]
        assert float(row["fd"]) == evaluation["fid"]["value"]
        assert row["clean_accuracy"] == ""  # skipped
        mse = float(row["reconstruction_mse"])
        with open(paths["result"]) as f:
            assert mse == __import__("json").load(f)["reconstruction_mse"]
        assert 0 < mse < 0.5
        fronts.append((damage["mean"], float(row["fd"]), mse))
    assert rows[0]["reconstruction_mse"] != rows[1]["reconstruction_mse"]  # two different models
    assert [p.seed for p in result["points"]] == [0, 1]
    on_fd = reporting.pareto_front([(d, f) for d, f, _ in fronts], (True, False))
    assert [r["pareto_fd"] for r in rows] == [str(int(i in on_fd)) for i in range(2)]
    with open(os.path.join(output, "sweep.md")) as f:
        markdown = f.read()
    assert "| seed=1 | 1 |" in markdown and "front vs Frechet distance (λ=1)" in markdown
    for point, (damage, _, _) in zip(("seed=0", "seed=1"), fronts):  # one trial: the mean alone, no "± 0.000"
        [line] = [line for line in markdown.splitlines() if line.startswith(f"| {point} |")]
        assert f"| {damage:.3f} |" in line and "±" not in line
    with open(os.path.join(output, "sweep_front.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in os.listdir(output) if ".tmp" in n]


def _mtimes(directory):
    return {os.path.join(root, n): os.stat(os.path.join(root, n)).st_mtime_ns
            for root, _, names in os.walk(directory) for n in names}


def test_rerun_after_a_killed_point_completes_only_that_point(sweep, capsys, caplog):
    output, _, _ = sweep
    points = {p: experiments.point_paths(output, experiments.Point(p, "digits", "robust", epochs=1))
              for p in ("seed=0", "seed=1")}
    untouched = _mtimes(points["seed=0"]["root"])
    # The state of a point killed during training: checkpoints, no trainer marker, no export/evaluation.
    killed = points["seed=1"]
    os.remove(os.path.join(killed["workdir"], "trainer", "artifact.json"))
    for path in (killed["export"], killed["evaluation"]):
        __import__("shutil").rmtree(path)
    capsys.readouterr()
    caplog.set_level("INFO", logger="robust_dae_tf")
    result, _ = tiny_sweep(output)
    out = capsys.readouterr().out
    assert result["skipped"] == ["seed=0"]
    assert "[sweep 1/2 seed=0] skipped: complete" in out
    assert "1 of 2 points to run" in out and "[sweep 2/2 seed=1] training" in out
    assert _mtimes(points["seed=0"]["root"]) == untouched  # not retrained, re-exported or re-evaluated
    assert experiments.is_complete(output, experiments.Point("seed=1", "digits", "robust", epochs=1))
    resumed = [r.getMessage() for r in caplog.records if "seed=1/run" in r.getMessage()]
    assert any("Resuming from" in m or "nothing to train" in m for m in resumed), resumed
    assert os.path.getmtime(os.path.join(output, "sweep.csv")) > max(untouched.values()) / 1e9


def test_a_point_rerun_with_other_settings_is_refused(sweep):
    output, _, _ = sweep
    base = tiny_base()
    base.loss.coupling = 0.5
    with pytest.raises(UserError, match=r"points/seed=0 holds the point seed=0 run with other settings "
                                        r"\(config.loss.coupling: 0.9 -> 0.5"):
        tiny_sweep(output, base=base)


def test_a_point_recorded_before_a_setting_existed_matches_at_its_default(tmp_path):
    """point.json written before an EvaluationSettings field was added (here: attack_precision)
    still describes the point when the field is at its default, and not otherwise."""
    import dataclasses
    import json

    from robust_dae_tf.evaluation.settings import EvaluationSettings

    point = experiments.Point("seed=0", "digits", "robust", epochs=1)
    config, settings = tiny_base(), EvaluationSettings()
    experiments.record_spec(str(tmp_path), point, config, settings)
    spec_path = experiments.point_paths(str(tmp_path), point)["spec"]
    recorded = json.loads(open(spec_path).read())
    del recorded["evaluation"]["attack_precision"]
    with open(spec_path, "w") as f:
        json.dump(recorded, f)
    experiments.record_spec(str(tmp_path), point, config, settings)  # no error: the default
    with pytest.raises(UserError, match=r"evaluation.attack_precision: 'float32' -> 'bfloat16'"):
        experiments.record_spec(str(tmp_path), point, config, dataclasses.replace(settings,
                                                                                  attack_precision="bfloat16"))
