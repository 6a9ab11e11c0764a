"""Tests of robust_dae_tf.reporting.seeds: rows over training seeds (bin/compare.py --over_seeds)."""

import json
import os

import numpy as np
import pytest

from robust_dae_tf import reporting
from robust_dae_tf.errors import UserError
from tests.reporting.fakes import fake_robustness, expected, rows, _fake_eval_dir, _fake_saved_model


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
