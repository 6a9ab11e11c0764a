"""Tests for robust_dae_tf.evaluation.robustness: the paper's protocol, report format, seeds, errors."""

import dataclasses
import json
import os
import shutil
import types

import numpy as np
import pytest
import tensorflow as tf

from robust_dae_tf import attacks
from robust_dae_tf.evaluation import robustness, speed
from robust_dae_tf.attacks import AttackConfig
from robust_dae_tf.errors import ConfigError, DataError
from robust_dae_tf.metrics.msssim import ms_ssim_paper
from robust_dae_tf.evaluation.robustness import Protocol
from tests.helpers import Killed, count_attack_runs, digits_arrays

FAST = AttackConfig(steps=6, restarts=1, exploration_starts=4)


class TinyAutoencoder:
    """A random MLP autoencoder on 32x32x1 images (sigmoid output)."""

    def __init__(self, seed=0, nan=False):
        tf.keras.utils.set_random_seed(seed)
        self.encoder = tf.keras.Sequential([
            tf.keras.Input((32, 32, 1)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(8),
        ])
        self.decoder = tf.keras.Sequential([
            tf.keras.Input((8,)), tf.keras.layers.Dense(1024, activation="sigmoid"),
            tf.keras.layers.Reshape((32, 32, 1)),
        ])
        self.nan = nan

    def encode(self, images):
        z = self.encoder(images, training=False)
        return z * np.nan if self.nan else z

    def decode(self, latents):
        return self.decoder(latents, training=False)


@pytest.fixture(scope="module")
def model():
    return TinyAutoencoder()


@pytest.fixture(scope="module")
def test_split():
    _, _, x, y = digits_arrays()
    return x, y


@pytest.fixture(scope="module")
def report(model, test_split):
    x, y = test_split
    return robustness.evaluate_robustness(
        model, x, y, Protocol(num_images=6, trials=2, budgets=(1.0, 2.0), seed=3, attack=FAST), progress=False)


def test_report_format(report):
    assert set(report) == {"protocol", "latent", "max_damage", "attack_runs", "success_levels", "examples", "timing"}
    proto = report["protocol"]
    assert proto["num_images"] == 6 and proto["trials"] == 2 and proto["budgets"] == [1.0, 2.0]
    assert proto["seed"] == 3 and len(proto["trial_seeds"]) == 2
    assert proto["attack"] == {"steps": 6, "restarts": 1, "exploration_starts": 4,
                               "initial_step_fraction": FAST.initial_step_fraction,
                               "chunk_size": None, "method": "pgd", "jit_compile": None,
                               "gradient_evaluations": None, "ensemble_members": None, "towards_starts": 0,
                               "precision": "float32"}
    # What each run spent: (4 starts x ceil(6/8) steps) + 6 refinement steps.
    assert report["attack_runs"] == {name: {b: {"gradient_evaluations_per_image": 4 * 1 + 6, "precision": "float32"} for b in ("1.0", "2.0")}
                                     for name in ("latent", "max_damage")}
    assert proto["msssim_convention"] == "paper (see metrics.msssim.ms_ssim_paper)"
    assert proto["attack_by_kind"]["latent"]["steps"] == 6
    # The automatic fields as the attacks ran: an FC model on 32x32x1 images.
    assert proto["attack_by_kind"]["latent"]["chunk_size"] == 1000
    assert proto["attack_by_kind"]["max_damage"]["jit_compile"] is True
    defaults = robustness.Protocol().attack
    assert attacks.resolve(defaults, "latent").steps == 400 and attacks.resolve(defaults, "max_damage").steps == 200
    # The report's keys (read by reporting, bin/compare.py and earlier evaluations) are fixed.
    latent_metrics = ("attack_loss", "msssim_target_adv_rec", "msssim_target_adv_rec_standard", "l2_target_adv_rec",
                      "msssim_input_adv", "l2_input_adv")
    max_damage_metrics = ("attack_loss", "msssim_rec_adv_rec", "msssim_rec_adv_rec_standard", "l2_rec_adv_rec",
                          "msssim_input_adv", "l2_input_adv")
    assert attacks.LATENT_OBJECTIVE.metrics == latent_metrics
    assert attacks.MAX_DAMAGE_OBJECTIVE.metrics == max_damage_metrics
    for kind, metrics in (("latent", latent_metrics), ("max_damage", max_damage_metrics)):
        assert set(report[kind]) == {"1.0", "2.0"}
        for key, budget in (("1.0", 1.0), ("2.0", 2.0)):
            entry = report[kind][key]
            assert set(entry) == set(metrics)
            for stat in entry.values():
                assert set(stat) == {"mean", "std"} and all(isinstance(v, float) for v in stat.values())
            assert entry["l2_input_adv"]["mean"] <= budget * (1 + 1e-5)
            assert 0 <= entry["msssim_input_adv"]["mean"] <= 1
    # The maximum-damage loss is the L2 distance of the two reconstructions, computed
    # independently (in the attack graph and in numpy on the returned images).
    for key in ("1.0", "2.0"):
        md = report["max_damage"][key]
        assert md["attack_loss"]["mean"] == pytest.approx(md["l2_rec_adv_rec"]["mean"], rel=1e-4)
    ex = report["examples"]
    assert set(ex["latent"]) == {"budget", "x", "reconstruction", "adversarial", "adversarial_reconstruction", "target"}
    assert set(ex["max_damage"]) == {"budget", "x", "reconstruction", "adversarial", "adversarial_reconstruction"}
    assert ex["latent"]["budget"] == 2.0
    for arr in (v for kind in ex.values() for v in kind.values() if isinstance(v, np.ndarray)):
        assert arr.shape == (6, 32, 32, 1) and arr.dtype == np.float32
    assert report["timing"]["seconds"] > 0 and report["timing"]["images_x_trials_per_second"] > 0
    json.dumps({k: v for k, v in report.items() if k != "examples"})  # JSON-serialisable


def test_summary_statistics_over_trials(model, test_split):
    """Per-image metrics averaged within a trial, then mean/std over trials."""
    stat = robustness._summary(np.array([1.0, 3.0, 10.0, 20.0]), trials=2)  # trial means 2 and 15
    assert stat == {"mean": 8.5, "std": 6.5}
    # End to end with one trial: the report equals the metrics recomputed from the examples.
    x, y = test_split
    protocol = Protocol(num_images=4, trials=1, budgets=(0.5,), attack=FAST)
    rep = robustness.evaluate_robustness(model, x, y, protocol, progress=False)
    _, sources, targets = robustness.select_trials(y, protocol)
    ex = rep["examples"]["latent"]
    np.testing.assert_array_equal(ex["x"], x[sources[0]])
    np.testing.assert_array_equal(ex["target"], x[targets[0]])
    rec_adv = model.decode(model.encode(ex["adversarial"])).numpy()
    entry = rep["latent"]["0.5"]
    l2 = np.linalg.norm((ex["target"] - rec_adv).reshape(4, -1), axis=1).mean()
    assert entry["l2_target_adv_rec"] == {"mean": pytest.approx(l2, rel=1e-5), "std": 0.0}
    msssim = ms_ssim_paper(ex["target"], rec_adv).numpy().mean()
    assert entry["msssim_target_adv_rec"]["mean"] == pytest.approx(msssim, rel=1e-5)
    l2_in = np.linalg.norm((ex["x"] - ex["adversarial"]).reshape(4, -1), axis=1).mean()
    assert entry["l2_input_adv"]["mean"] == pytest.approx(l2_in, rel=1e-5)
    # Success levels: the MS-SSIMs the attacks would reach if x_a were reconstructed as x_t is.
    rec, rec_t = (model.decode(model.encode(a)).numpy() for a in (ex["x"], ex["target"]))
    levels = rep["success_levels"]
    assert levels["latent"]["msssim_target_adv_rec"] == {
        "mean": pytest.approx(ms_ssim_paper(ex["target"], rec_t).numpy().mean(), rel=1e-5), "std": 0.0}
    assert levels["max_damage"]["msssim_rec_adv_rec"]["mean"] == pytest.approx(
        ms_ssim_paper(rec, rec_t).numpy().mean(), rel=1e-5)
    assert robustness.success_levels(model, x, y, protocol) == levels  # the same without attacks
    with pytest.raises(DataError, match="--num_images=5 exceeds the test split size 4"):
        robustness.success_levels(model, x[:4], y[:4], Protocol(num_images=5, trials=1))
    # A latent attack whose adversarial image IS the target reaches the level exactly.
    assert robustness._summary(robustness._msssim(ex["target"], rec_t), 1)["mean"] == pytest.approx(
        levels["latent"]["msssim_target_adv_rec"]["mean"], rel=1e-6)


def test_targets_have_other_classes_and_seeds_are_reproducible(test_split):
    _, y = test_split
    protocol = Protocol(num_images=50, trials=4, seed=11)
    seeds, sources, targets = robustness.select_trials(y, protocol)
    assert sources.shape == targets.shape == (4, 50)
    assert all(len(set(row)) == 50 for row in sources)  # without replacement
    assert np.all(y[sources] != y[targets])
    again = robustness.select_trials(y, protocol)
    assert again[0] == seeds
    np.testing.assert_array_equal(again[1], sources)
    np.testing.assert_array_equal(again[2], targets)
    other = robustness.select_trials(y, Protocol(num_images=50, trials=4, seed=12))
    assert not np.array_equal(other[1], sources)
    assert len(set(seeds)) == 4
    # Without classes (labels < 0): the target is another image.
    no_class = np.full(30, -1)
    _, src, tgt = robustness.select_trials(no_class, Protocol(num_images=30, trials=3))
    assert np.all(src != tgt)


def test_targets_without_classes_are_another_random_image(test_split):
    """has_classes=False (CelebA): every target is a different image of the split, drawn
    at random (all other images occur, not a fixed shift), even when labels are given."""
    _, y = test_split
    m = 40
    _, src, tgt = robustness.select_trials(y[:m], Protocol(num_images=m, trials=20, seed=4), has_classes=False)
    assert np.all(src != tgt) and tgt.min() >= 0 and tgt.max() < m
    assert np.any(y[:m][src] == y[:m][tgt])  # classes are ignored
    assert set(tgt.ravel()) == set(range(m))
    assert len(np.unique(tgt - src)) > m // 2


def test_same_protocol_gives_identical_results(model, test_split, report):
    x, y = test_split
    again = robustness.evaluate_robustness(
        model, x, y, Protocol(num_images=6, trials=2, budgets=(1.0, 2.0), seed=3, attack=FAST), progress=False)
    for kind in ("latent", "max_damage"):
        assert again[kind] == report[kind]
        np.testing.assert_array_equal(again["examples"][kind]["adversarial"], report["examples"][kind]["adversarial"])
    assert again["protocol"] == report["protocol"]


def test_bad_inputs(model, test_split):
    x, y = test_split
    with pytest.raises(DataError, match=r"--num_images=400 .*297"):
        robustness.evaluate_robustness(model, x, y, Protocol(num_images=400, trials=1, attack=FAST), progress=False)
    with pytest.raises(DataError, match="no second class"):
        robustness.evaluate_robustness(model, x, np.zeros_like(y), Protocol(num_images=3, trials=1, attack=FAST),
                                       progress=False)
    with pytest.raises(ConfigError, match="--budgets"):
        robustness.evaluate_robustness(model, x, y, Protocol(num_images=3, trials=1, budgets=(1.0, 0.0), attack=FAST),
                                       progress=False)
    with pytest.raises(DataError, match="NaN latents/reconstructions for 3 of 3 images"):
        robustness.evaluate_robustness(TinyAutoencoder(nan=True), x, y,
                                       Protocol(num_images=3, trials=1, attack=FAST), progress=False)
    with pytest.raises(DataError, match="labels"):
        robustness.evaluate_robustness(model, x, y[:10], Protocol(num_images=3, trials=1, attack=FAST), progress=False)
    with pytest.raises(ConfigError, match="--trials"):
        robustness.evaluate_robustness(model, x, y, Protocol(num_images=3, trials=0, attack=FAST), progress=False)


def test_speedup_helper(model, test_split):
    x, _ = test_split
    out = speed.attack_one_at_a_time_speedup(model, x[:12], budget=1.0, config=AttackConfig(steps=4, restarts=1),
                                                 n=2)
    assert out["images"] == 12 and out["one_at_a_time_images_measured"] == 2
    assert out["batched_seconds"] > 0 and out["speedup"] > 0
    assert out["one_at_a_time_seconds_extrapolated"] == pytest.approx(out["one_at_a_time_seconds_per_image"] * 12)


def _numpy_autoencoder(model):
    """(encode, decode) of TinyAutoencoder in float64 numpy, from its weights."""
    (w_e, b_e), (w_d, b_d) = (l.get_weights() for l in (model.encoder.layers[-1], model.decoder.layers[0]))

    def encode(x):
        return x.reshape(len(x), -1).astype(np.float64) @ w_e + b_e

    def decode(z):
        return (1.0 / (1.0 + np.exp(-(z @ w_d + b_d)))).reshape(len(z), 32, 32, 1)

    return encode, decode


def _noise(seed, name, role, budget_index, shape):
    """The documented decode-noise stream, drawn independently of robustness.py."""
    import zlib

    entropy = [seed, 3_000_000, zlib.crc32(name.encode()), role, budget_index]
    return np.random.default_rng(np.random.SeedSequence(entropy)).standard_normal(shape, dtype=np.float32)


def _per_trial_mean(values, trials):
    return np.asarray(values).reshape(trials, -1).mean(axis=1).mean()


def test_paper_protocol_decodes_every_reported_reconstruction_with_its_noise(model, test_split):
    """Under the paper protocol x~_a, x~ and x~_t are f(g(.) + s n) with s = 0.4 (latent
    attack) / 0.004 (maximum damage) and n the documented seeded stream: checked against
    a numpy computation of the same noise on the model's weights. The attacks are the
    paper's attacker, on the same images and targets as the strong protocol."""
    x, y = test_split
    proto = Protocol.paper(num_images=6, trials=1, budgets=(1.0,), seed=4)  # the examples hold all 6 images
    report = robustness.evaluate_robustness(model, x, y, proto, progress=False)
    assert report["protocol"]["name"] == "paper"
    assert report["protocol"]["decode_noise_std"] == {"latent": 0.4, "max_damage": 0.004}
    assert report["protocol"]["attack"]["method"] == "paper"
    strong = Protocol(num_images=6, trials=1, budgets=(1.0,), seed=4, attack=FAST)
    _, sources, targets = robustness.select_trials(y, strong)
    xs, xt = x[sources.reshape(-1)], x[targets.reshape(-1)]
    encode, decode = _numpy_autoencoder(model)
    n, dim = xs.shape[0], 8
    for name, std in (("latent", 0.4), ("max_damage", 0.004)):
        ex = report["examples"][name]
        np.testing.assert_array_equal(ex["x"], xs)  # the strong protocol's images
        rec = decode(encode(xs) + std * _noise(4, name, 0, 0, (n, dim)))
        rec_t = decode(encode(xt) + std * _noise(4, name, 1, 0, (n, dim)))
        rec_a = decode(encode(ex["adversarial"]) + std * _noise(4, name, 2, 0, (n, dim)))
        np.testing.assert_allclose(ex["reconstruction"], rec, atol=5e-6)
        np.testing.assert_allclose(ex["adversarial_reconstruction"], rec_a, atol=5e-6)
        # The noise is really there: the noiseless reconstruction is farther away than rounding.
        plain = decode(encode(ex["adversarial"]))
        assert np.abs(plain - rec_a).max() > (1e-2 if std == 0.4 else 1e-4)
        reference = xt if name == "latent" else rec
        main = "msssim_target_adv_rec" if name == "latent" else "msssim_rec_adv_rec"
        got = report[name]["1.0"][main]["mean"]
        want = _per_trial_mean(ms_ssim_paper(reference.astype(np.float32), rec_a.astype(np.float32)), 1)
        assert got == pytest.approx(want, abs=1e-4)
        level = report["success_levels"][name][main]["mean"]
        compared = xt if name == "latent" else rec
        want_level = _per_trial_mean(ms_ssim_paper(compared.astype(np.float32), rec_t.astype(np.float32)), 1)
        assert level == pytest.approx(want_level, abs=1e-4)
    # success_levels() alone follows the protocol's decoding too.
    assert robustness.success_levels(model, x, y, proto) == report["success_levels"]


def test_protocol_names_are_checked():
    with pytest.raises(ConfigError, match="protocol name='weak' is unknown; choose one of strong, paper"):
        Protocol(name="weak")
    with pytest.raises(ConfigError, match="the paper protocol attacks with method 'paper'"):
        Protocol(name="paper", attack=FAST)
    with pytest.raises(ConfigError, match="finite number > 0"):
        Protocol.paper(budgets=(1.0, 0.0))

    class Toy(attacks.MaximumDamageAttack):
        name = "toy_without_decode_noise"
        paper_decode_noise_std = None

    with pytest.raises(ConfigError, match="no decode noise for the attack"):
        Protocol.paper(objectives=(Toy(),))
    assert Protocol().name == "strong" and Protocol().decode_noise_std("latent") == 0.0


# --------------------------------------------------------------------------
# Resuming from the run cache

RESUME_PROTOCOL = Protocol(num_images=6, trials=2, budgets=(1.0, 2.0), seed=3, attack=FAST)  # the `report` fixture's


def _assert_same_report(ours, theirs):
    """Every number of two reports is equal, timing aside; the example images too."""
    assert {k: v for k, v in ours.items() if k not in ("timing", "examples")} == \
        {k: v for k, v in theirs.items() if k not in ("timing", "examples")}
    assert set(ours["examples"]) == set(theirs["examples"])
    for kind, entry in theirs["examples"].items():
        assert set(ours["examples"][kind]) == set(entry)
        for key, value in entry.items():
            np.testing.assert_array_equal(ours["examples"][kind][key], value)


def test_a_killed_evaluation_resumes_at_the_run_it_was_in(model, test_split, report, tmp_path, monkeypatch):
    """Killed in the 4th of 4 runs: the rerun with the same cache attacks only that run and
    gives the uninterrupted report (all but timing); the cache's files hold x_a and the loss."""
    x, y = test_split
    cache = str(tmp_path / "runs")
    calls = count_attack_runs(monkeypatch, fail_after=3)
    with pytest.raises(Killed):
        robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    assert calls == [("latent", 1.0), ("max_damage", 1.0), ("latent", 2.0)]
    assert sorted(os.listdir(cache)) == ["latent_1.0.npz", "latent_2.0.npz", "max_damage_1.0.npz"]
    with np.load(os.path.join(cache, "latent_2.0.npz")) as npz:
        assert npz["x_a"].dtype == np.float32 and npz["x_a"].shape == (12, 32, 32, 1) and npz["loss"].shape == (12,)
        np.testing.assert_array_equal(npz["x_a"][:6], report["examples"]["latent"]["adversarial"])
    calls = count_attack_runs(monkeypatch)
    resumed = robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=True, run_cache_dir=cache)
    assert calls == [("max_damage", 2.0)]
    assert resumed["timing"]["resumed_runs"] == 3
    _assert_same_report(resumed, report)
    # All runs are cached now: a third call attacks nothing.
    calls = count_attack_runs(monkeypatch)
    again = robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    assert calls == [] and again["timing"]["resumed_runs"] == 4
    _assert_same_report(again, report)
    assert "resumed_runs" not in report["timing"]  # an evaluation without cached runs has no such key


@pytest.mark.parametrize("change", ["seed", "images", "model", "attack"])
def test_cached_runs_of_other_settings_model_or_images_are_not_reused(model, test_split, report, tmp_path,
                                                                      monkeypatch, change):
    """A cache written for another protocol seed, other images, another model or other
    attack settings is attacked again and overwritten, never reused."""
    x, y = test_split
    cache = str(tmp_path / "runs")
    robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    other_model, other_x, protocol = model, x, RESUME_PROTOCOL
    if change == "seed":
        protocol = dataclasses.replace(RESUME_PROTOCOL, seed=4)
    elif change == "images":
        other_x = x.copy()
        other_x[:, 0, 0, 0] = 1.0 - other_x[:, 0, 0, 0]  # one pixel of every image
    elif change == "model":
        other_model = TinyAutoencoder(seed=1)
    else:
        protocol = dataclasses.replace(RESUME_PROTOCOL, attack=dataclasses.replace(FAST, steps=5))
    calls = count_attack_runs(monkeypatch)
    fresh = robustness.evaluate_robustness(other_model, other_x, y, protocol, progress=False, run_cache_dir=cache)
    assert len(calls) == 4 and "resumed_runs" not in fresh["timing"]
    _assert_same_report(fresh, robustness.evaluate_robustness(other_model, other_x, y, protocol, progress=False))
    calls = count_attack_runs(monkeypatch)  # the files were overwritten for the new settings
    robustness.evaluate_robustness(other_model, other_x, y, protocol, progress=False, run_cache_dir=cache)
    assert calls == []


def test_pgd_runs_cached_before_run_logs_existed_are_reused(model, test_split, report, tmp_path, monkeypatch):
    """A cache file without the run log (written before issue 23, whose fingerprint did not
    have the new AttackConfig fields: they enter it only when set) of a PGD run is reused;
    its `attack_runs` entry is PGD's cost from the config, as the attack records it."""
    x, y = test_split
    cache = str(tmp_path / "runs")
    robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    path = os.path.join(cache, "latent_1.0.npz")
    with np.load(path) as npz:
        old = {key: npz[key] for key in ("fingerprint", "x_a", "loss")}
    stored = json.loads(str(old["fingerprint"][()]))
    assert "gradient_evaluations" not in stored["attack"] and "ensemble_members" not in stored["attack"]
    np.savez(path, **old)
    calls = count_attack_runs(monkeypatch)
    resumed = robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    assert calls == [] and resumed["timing"]["resumed_runs"] == 4
    _assert_same_report(resumed, report)


def test_damaged_cache_files_are_attacked_again(model, test_split, report, tmp_path, monkeypatch, caplog):
    """A truncated or garbage cache file is ignored (with a warning), not a crash."""
    x, y = test_split
    cache = str(tmp_path / "runs")
    robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    truncated = os.path.join(cache, "latent_1.0.npz")
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(cache, "max_damage_2.0.npz"), "wb") as f:
        f.write(b"not a zip file")
    calls = count_attack_runs(monkeypatch)
    resumed = robustness.evaluate_robustness(model, x, y, RESUME_PROTOCOL, progress=False, run_cache_dir=cache)
    assert calls == [("latent", 1.0), ("max_damage", 2.0)] and resumed["timing"]["resumed_runs"] == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("unreadable" in w and "attacking again" in w for w in warnings)
    _assert_same_report(resumed, report)


def test_a_saved_model_is_identified_by_its_files(tmp_path):
    """The cache's model identity of a SavedModel: a model re-exported at the same path
    with other weights is another model."""
    from tests.helpers import export_tiny_autoencoder

    path = export_tiny_autoencoder(str(tmp_path / "model"), seed=0)
    first = robustness._model_identity(types.SimpleNamespace(path=path), {})
    assert first == robustness._model_identity(types.SimpleNamespace(path=path), {})
    assert first["saved_model"] == os.path.abspath(path) and "variables/variables.index" in first
    shutil.rmtree(path)
    export_tiny_autoencoder(path, seed=1)
    assert robustness._model_identity(types.SimpleNamespace(path=path), {}) != first


def test_local_gain_is_measured_at_each_attacked_image_in_order(model, test_split):
    from robust_dae_tf.evaluation import sensitivity

    x, y = test_split
    protocol = Protocol(num_images=3, trials=2, budgets=(1.0,), seed=5, attack=FAST)
    values = {}
    report = robustness.evaluate_robustness(model, x, y, protocol, progress=False, per_image_out=values,
                                            local_gain=True)
    _, sources, _ = robustness.select_trials(y, protocol)
    for objective in protocol.objectives:
        expected = sensitivity.local_gain(model, objective, x[sources.reshape(-1)], seed=5)
        assert len(set(np.round(expected, 4))) > 1  # the gain differs between images: the order is checked
        np.testing.assert_allclose(values[objective.name]["1.0"]["local_gain"], expected, rtol=1e-5)
        summary = report["local_gain"][objective.name]
        assert summary == pytest.approx({"mean": expected.mean(), "median": np.median(expected), "std": expected.std(),
                                         "images": 6, "non_finite_images": 0, "gradient_evaluations_per_image": 8})
