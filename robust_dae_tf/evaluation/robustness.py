"""The paper's robustness protocol (section 4, Table 1, Figs. 2-3).

Per trial t (of `trials`): a numpy generator seeded with `trial_seeds[t]` (derived from
`protocol.seed` and t, recorded in the report) picks `num_images` distinct test images
and, for each, a target image of a DIFFERENT class drawn uniformly from the whole split
(datasets without classes, labels < 0, e.g. CelebA: a different random image). For
each budget each attack of `protocol.objectives` (`robust_dae_tf.attacks`; by default the
paper's latent and maximum-damage attacks) runs on the images of ALL trials together
(num_images * trials images per call, chunked by `protocol.attack.chunk_size`).

Per image and attack (report key `objective.name`, metric names `objective.metrics`):
the attack loss; MS-SSIM (paper convention, and standard) and L2 of the image the
objective compares with (`objective.compared_with`) vs the adversarial reconstruction
f(g(x_a)); MS-SSIM(x, x_a) (paper) and L2(x, x_a). For the paper's attacks:

* latent attack (eq. 12): attack loss ||g(x_a) - g(x_t)||_2; MS-SSIM(x_t, f(g(x_a)))
  (paper convention, and standard); L2(x_t, f(g(x_a))); MS-SSIM(x, x_a) (paper); L2(x, x_a).
* maximum damage (eq. 13): attack loss ||f(g(x_a)) - f(g(x))||_2; MS-SSIM(f(g(x)),
  f(g(x_a))) (paper, and standard); L2 of the same pair; MS-SSIM(x, x_a); L2(x, x_a).

Success levels (`report["success_levels"]`, budget-free, same images and targets): the
value each attack's main MS-SSIM takes when the attacked image is reconstructed exactly
as the target is, f(g(x_a)) = f(g(x_t)), i.e. MS-SSIM(compared_with, f(g(x_t))):

* latent: MS-SSIM(x_t, f(g(x_t))), what a complete latent attack reaches (it cannot do
  better than the model reconstructs x_t itself, up to chance);
* maximum damage: MS-SSIM(f(g(x)), f(g(x_t))), the similarity of the reconstructions
  of two unrelated images (x_t of another class, or another image without classes). A
  maximum-damage value near it means the attack turned x into an unrelated image; it is not a bound (the attack may reach
  images less similar than a random other digit).

They say how close a model is to being broken at a budget, which the raw MS-SSIM of one
model does not.

MS-SSIM(a, b) is `metrics.msssim.ms_ssim_paper(a, b)` with the reference first (its
dynamic range comes from img1), one value per image pair as the paper's code computed
it. L2 is the Euclidean norm over all pixels of the pair. Values are averaged over the
images of a trial; the report gives the mean and the standard deviation (numpy std,
ddof=0) of these per-trial averages over the trials.

Seeds: trial t uses `trial_seeds[t] = SeedSequence([seed, t])`'s first 32-bit word; the
attack on budget number b uses seed `SeedSequence([seed, *objective.seed_entropy(b)])`:
[seed, 1_000_000 + 2 b + a] with a = 0 for the latent and 1 for the maximum-damage
attack. The same protocol therefore gives identical results.

Two named evaluation protocols (`Protocol.name`, recorded in every report as
report["protocol"]["name"]):

* "strong" (the default): the attack of `protocol.attack` (by default the batched PGD
  of `attacks.pgd`), reconstructions f(g(.)) deterministic, as described above.
* "paper": what the paper's numbers were measured with. Both attacks use the paper's
  attacker (method "paper", `attacks/paper.py`: one d-ball start, the budget enforced
  inside the objective, scipy's fmin_l_bfgs_b), and every reconstruction that enters an
  attack's reported metrics and success level is decoded with latent noise, as the
  reference code kept its latent noise on at evaluation: f(g(.) + s n), n ~ N(0, I),
  s = `objective.paper_decode_noise_std` (0.4 for the latent attack, 0.004 for maximum
  damage). That is x~_a of each budget, and the clean x~ (maximum damage's reference
  and both attacks' grids) and x~_t (the success levels) they are compared with; the
  same images, targets and attack seeds as "strong". The optimised objectives stay
  deterministic: the latent attack's compares encoder codes, which decode noise does not
  touch; the reference also decoded with noise std 0.004 INSIDE the maximum-damage
  objective, which we omit from the optimisation: it perturbs codes of scale ~10 by
  0.004 (a relative change of ~4e-4), negligible next to the attack's own change of the
  code, and a deterministic objective keeps L-BFGS-B's line searches well defined.
  Noise seeds: the noise of objective o (registered name) is drawn by
  `np.random.default_rng(SeedSequence([seed, 3_000_000, crc32(o.name), role, b]))
  .standard_normal((N, D), dtype=float32)` with N = num_images * trials rows in the
  trial-major order of the images and D the latent size; role 0 = clean x (b = 0),
  1 = targets x_t (b = 0), 2 = adversarial x_a of budget number b (`decode_noise_seed`).
  The clean and target draws are shared by all budgets of an attack.

Attack cost and the ensemble's log (`report["attack_runs"][attack][budget]`, every
method): "gradient_evaluations_per_image", what the attack actually spent per image
(mean over the images; PGD: its phases' starts x steps; L-BFGS-B and the paper's
attacker: objective + gradient evaluations counted); for method "ensemble" also
"member_wins" (member -> images won) and the rest of its log (`attacks.ensemble`).

Resuming: with `run_cache_dir`, `evaluate_robustness` stores each finished run (attack,
budget) as `<run_cache_dir>/<attack>_<budget>.npz` (written atomically: x_a, the per-image
attack loss, the run's log (`attack_runs`) and the run's fingerprint, `_run_fingerprint`), and a later call loads a run
whose file holds the same fingerprint instead of attacking again; everything else is
computed from x_a as for a fresh run, so a killed evaluation resumes at the run it was in
and ends with the same report (report["timing"]["resumed_runs"] counts the loaded runs
when there are any). A file with another fingerprint, or one that cannot be read, is
ignored and overwritten.

Local gain (opt-in, `local_gain=True`; bin/evaluate.py --local_gain): per attack the local
gain at each attacked (clean) image, seeded with the protocol's seed; `report["local_gain"]`
as `evaluation.sensitivity.local_gains` summarises it, the per-image values in
`per_image_out` under the metric "local_gain" of every budget (the gain has no budget).

A `Protocol` is validated when it is built (budgets, image counts, attack config,
objectives), once; the attacks it runs do not check them again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import zlib

import numpy as np
import tensorflow as tf

from robust_dae_tf import attacks, export, fileio
from robust_dae_tf.attacks import AttackConfig, budget_key
from robust_dae_tf.attacks import config as attack_config
from robust_dae_tf.attacks import progress as attack_progress
from robust_dae_tf.errors import ConfigError, DataError
from robust_dae_tf.evaluation.settings import check_attack_for, validate_budgets  # defined without TensorFlow
from robust_dae_tf.metrics.msssim import ms_ssim_paper, ms_ssim_standard

NUM_EXAMPLES = 8
MSSSIM_CONVENTION = "paper (see metrics.msssim.ms_ssim_paper)"
_METRIC_BATCH = 500
PROTOCOLS = ("strong", "paper")  # the named evaluation protocols (module docstring)
DEFAULT_PROTOCOL = "strong"
NOISE_CLEAN, NOISE_TARGET, NOISE_ADVERSARIAL = 0, 1, 2  # roles of the decode-noise streams
RUN_CACHE_FORMAT = 1  # version of the run cache files (part of their fingerprint)

logger = logging.getLogger(__name__)


def check_protocol_name(name, flag: str = "--protocol") -> str:
    """`name` if it is one of `PROTOCOLS`, else ConfigError naming `flag`."""
    if name not in PROTOCOLS:
        raise ConfigError(f"{flag}={name!r} is unknown; choose one of {', '.join(PROTOCOLS)}.")
    return name


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The evaluation protocol: `trials` x `num_images` random test images per budget,
    attacked by each of `objectives` (`attacks.Objective`s or registered names; default
    the paper's latent and maximum-damage attacks). Validated when built (ConfigError);
    `budgets` becomes a tuple of floats and `objectives` a tuple of objectives.

    name: "strong" (default) or "paper" (module docstring); "paper" needs
    `attack=AttackConfig(method="paper")` (`Protocol.paper(...)` builds one) and
    objectives with a `paper_decode_noise_std`."""

    num_images: int = 100
    trials: int = 10
    budgets: tuple = (1.0, 3.0, 5.0)
    seed: int = 0
    attack: AttackConfig = AttackConfig()
    objectives: tuple = attacks.PAPER_OBJECTIVES
    name: str = DEFAULT_PROTOCOL

    @classmethod
    def paper(cls, **fields) -> "Protocol":
        """The paper's protocol: name "paper" with the paper's attacker (method "paper")."""
        return cls(name="paper", attack=AttackConfig(method="paper"), **fields)

    def decode_noise_std(self, objective) -> float:
        """Std of the latent noise of the reconstructions `objective` reports (0 under "strong")."""
        if self.name != "paper":
            return 0.0
        return float(attacks.objective(objective).paper_decode_noise_std)

    def __post_init__(self):
        check_protocol_name(self.name, "protocol name")
        for name, flag in (("num_images", "--num_images"), ("trials", "--trials")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{flag} must be an integer >= 1, got {value!r}.")
        object.__setattr__(self, "budgets", validate_budgets(self.budgets))
        attacks.validate_config(self.attack)
        specs = tuple(self.objectives) if isinstance(self.objectives, (tuple, list)) else (self.objectives,)
        objectives = tuple(attacks.objective(spec) for spec in specs)
        names = [o.name for o in objectives]
        if not objectives or len(set(names)) != len(names):
            raise ConfigError(f"protocol objectives must be one or more attacks with distinct names, got {names}.")
        object.__setattr__(self, "objectives", objectives)
        check_attack_for(self.attack, objectives)
        if self.name == "paper":
            if self.attack.method != "paper":
                raise ConfigError(f"the paper protocol attacks with method 'paper', got an AttackConfig with method "
                                  f"{self.attack.method!r}; use robustness.Protocol.paper(...).")
            missing = [o.name for o in objectives if o.paper_decode_noise_std is None]
            if missing:
                raise ConfigError(f"the paper protocol has no decode noise for the attack(s) {', '.join(missing)} "
                                  "(set paper_decode_noise_std); evaluate them under the strong protocol.")


def trial_seeds(protocol: Protocol) -> list[int]:
    return [int(np.random.SeedSequence([int(protocol.seed), t]).generate_state(1)[0]) for t in range(protocol.trials)]


def decode_noise_seed(protocol: Protocol, objective, role: int, budget_index: int = 0) -> np.random.SeedSequence:
    """The SeedSequence of the decode noise of `objective` for `role` (NOISE_CLEAN,
    NOISE_TARGET or NOISE_ADVERSARIAL at budget number `budget_index`; module docstring)."""
    name = attacks.objective(objective).name
    return np.random.SeedSequence([int(protocol.seed), 3_000_000, zlib.crc32(name.encode()), int(role),
                                   int(budget_index)])


def attack_seed(protocol: Protocol, budget_index: int, objective) -> int:
    """Seed of attack `objective` (or its name) on budget number `budget_index` (module docstring)."""
    entropy = [int(protocol.seed), *attacks.objective(objective).seed_entropy(budget_index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# --------------------------------------------------------------------------
# Validation and image selection


def _check_protocol(protocol: Protocol) -> None:
    if not isinstance(protocol, Protocol):
        raise ConfigError(f"protocol must be a robustness.Protocol, got {type(protocol).__name__}.")


def _validate_labels(labels, num_images_total: int) -> tuple[np.ndarray, bool]:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != num_images_total:
        raise DataError(
            f"labels must be a vector [M] with one label per image; got shape {labels.shape} for "
            f"{num_images_total} images."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be integers (class ids, or -1 for no class); got dtype {labels.dtype}.")
    labels = labels.astype(np.int64)
    negative = labels < 0
    if negative.all():
        if num_images_total < 2:
            raise DataError("the test split has a single image; targets must be a different image.")
        return labels, False
    if negative.any():
        raise DataError(
            f"labels mix class ids and 'no class' values (< 0) ({int(negative.sum())} of {labels.size} are < 0); "
            "use labels >= 0 for every image, or < 0 for all (datasets without classes)."
        )
    if np.unique(labels).size < 2:
        raise DataError(
            f"all test labels are {int(labels[0])}: there is no second class for targets of the latent "
            "attack; use a test split with at least two classes (or labels -1 for datasets without classes)."
        )
    return labels, True


def select_trials(labels: np.ndarray, protocol: Protocol, has_classes: bool | None = None):
    """(trial_seeds, sources [T, n], targets [T, n]) indices into the test split.

    sources of a trial are distinct; each target has a different label from its source
    (or, without classes, is a different image).
    """
    labels = np.asarray(labels).astype(np.int64)
    if has_classes is None:
        has_classes = bool((labels >= 0).all())
    m = labels.shape[0]
    seeds = trial_seeds(protocol)
    n = protocol.num_images
    sources = np.empty((protocol.trials, n), np.int64)
    targets = np.empty((protocol.trials, n), np.int64)
    others = {}
    if has_classes:
        for c in np.unique(labels):
            others[int(c)] = np.flatnonzero(labels != c)
    for t, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        src = rng.choice(m, size=n, replace=False)
        sources[t] = src
        if has_classes:
            for i, s in enumerate(src):
                pool = others[int(labels[s])]
                targets[t, i] = pool[rng.integers(pool.size)]
        else:
            j = rng.integers(m - 1, size=n)
            targets[t] = np.where(j < src, j, j + 1)
    return seeds, sources, targets


# --------------------------------------------------------------------------
# Metrics


def _batched(fn, *arrays):
    outs = []
    for i in range(0, arrays[0].shape[0], _METRIC_BATCH):
        outs.append(np.asarray(fn(*[tf.constant(a[i:i + _METRIC_BATCH]) for a in arrays])))
    return np.concatenate(outs)


def _reconstruct(model, images: np.ndarray, noise_std: float = 0.0, noise_seed=None) -> np.ndarray:
    """f(g(images)), or with noise_std > 0 f(g(images) + noise_std * n), n drawn from
    `np.random.default_rng(noise_seed).standard_normal((N, D), dtype=np.float32)`."""
    if noise_std:
        latents = _batched(model.encode, images)
        if not np.issubdtype(latents.dtype, np.floating):
            raise DataError(f"the model's encode returns {latents.dtype} latents; the paper protocol's decode noise "
                            "(and the attacks' gradients) need float latents.")
        latents = latents.astype(np.float32).reshape(latents.shape[0], -1)
        noise = np.random.default_rng(noise_seed).standard_normal(latents.shape, dtype=np.float32)
        rec = _batched(model.decode, latents + np.float32(noise_std) * noise).astype(np.float32)
    else:
        rec = _batched(lambda x: model.decode(model.encode(x)), images).astype(np.float32)
    bad = ~np.isfinite(rec.reshape(rec.shape[0], -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"the model produced NaN latents/reconstructions for {int(bad.sum())} of {rec.shape[0]} images; "
            "check the SavedModel (a diverged or corrupt checkpoint)."
        )
    return rec


def _l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = (a.astype(np.float64) - b.astype(np.float64)).reshape(a.shape[0], -1)
    return np.sqrt(np.sum(diff * diff, axis=1))


def _msssim(a: np.ndarray, b: np.ndarray, standard: bool = False) -> np.ndarray:
    fn = ms_ssim_standard if standard else ms_ssim_paper
    return _batched(fn, a, b).astype(np.float64)


def _summary(values: np.ndarray, trials: int) -> dict:
    per_trial = np.asarray(values, np.float64).reshape(trials, -1).mean(axis=1)
    return {"mean": float(per_trial.mean()), "std": float(per_trial.std())}


def _success_levels(objectives, x, x_t, clean: dict, trials: int) -> dict:
    """`clean`: {objective name: (its x~, its x~_t)} (`_clean_reconstructions`)."""
    return {o.name: {o.main_metric: _summary(_msssim(o.compared_with(x, x_t, clean[o.name][0]), clean[o.name][1]),
                                             trials)}
            for o in objectives}


def _clean_reconstructions(model, x, x_t, protocol: Protocol) -> dict:
    """{objective name: (x~, x~_t)} as the protocol decodes them for that attack's report:
    f(g(.)) under "strong" (computed once, shared), with the attack's decode noise under "paper"."""
    plain = None
    out = {}
    for o in protocol.objectives:
        std = protocol.decode_noise_std(o)
        if std:
            out[o.name] = (_reconstruct(model, x, std, decode_noise_seed(protocol, o, NOISE_CLEAN)),
                           _reconstruct(model, x_t, std, decode_noise_seed(protocol, o, NOISE_TARGET)))
        else:
            plain = plain or (_reconstruct(model, x), _reconstruct(model, x_t))
            out[o.name] = plain
    return out


# --------------------------------------------------------------------------
# The run cache (resuming; module docstring)


def _model_identity(model, clean: dict) -> dict:
    """What identifies the model of a cached run: a SavedModel (`model.path`, e.g. an
    `export.ExportedAutoencoder`) by `export.saved_model_identity` (its absolute path and the
    SHA-256 of its saved_model.pb and variables index); any other model by its class and the
    hash of its clean reconstructions of the attacked images and targets. A model with an
    `identity()` method (`adapters.Adapter`: every file of an encoder/decoder pair, the pixel
    range) is identified by it."""
    identity = model.identity() if callable(getattr(model, "identity", None)) else None
    if identity is not None:
        return identity
    identity = export.saved_model_identity(getattr(model, "path", None))
    if identity is not None:
        return identity
    return {"class": f"{type(model).__module__}.{type(model).__qualname__}",
            "reconstructions": fileio.array_digest(*(a for pair in clean.values() for a in pair))}


def _run_fingerprint(base: dict, objective, budget: float, attack: dict, seed: int) -> str:
    """The canonical JSON of everything that determines one run: `base` (protocol, model,
    hashes of the images and targets; `evaluate_robustness`), the attack, its budget, its
    settings as resolved for the model and its seed. The AttackConfig fields added since
    (`attacks.config.ADDED_FIELDS`) enter only when they differ from their defaults, so runs
    cached before they existed resume."""
    attack = attack_config.fingerprint_record(attack)
    return json.dumps({**base, "objective": objective.name, "budget": float(budget), "attack": attack,
                       "attack_seed": int(seed)}, sort_keys=True)




def _run_cache_file(cache_dir: str, objective, budget: float) -> str:
    return os.path.join(cache_dir, f"{objective.name}_{budget_key(budget)}.npz")


def _load_run(path: str, fingerprint: str, shape: tuple):
    """(x_a, attack loss, run log or None for a file written before logs were stored) stored
    at `path` for `fingerprint`, or None (with a warning when a file is there but was written
    for another run or cannot be read)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            stored, x_a, loss = str(npz["fingerprint"][()]), npz["x_a"], npz["loss"]
            info = json.loads(str(npz["info"][()])) if "info" in npz.files else None
    except Exception as err:  # a damaged file: numpy and zipfile raise many types
        logger.warning("Ignoring the cached attack run %s (unreadable: %s); attacking again.", path, err)
        return None
    if stored != fingerprint:
        logger.warning("Ignoring the cached attack run %s (written for other settings, model or images); "
                       "attacking again.", path)
        return None
    if x_a.shape != shape or loss.shape != shape[:1] or not (np.isfinite(x_a).all() and np.isfinite(loss).all()):
        logger.warning("Ignoring the cached attack run %s (arrays of shape %s and %s); attacking again.", path,
                       x_a.shape, loss.shape)
        return None
    return x_a, loss, info


def _store_run(path: str, fingerprint: str, x_a: np.ndarray, loss: np.ndarray, info: dict) -> None:
    fileio.atomic_write(path, lambda f: np.savez(f, fingerprint=np.array(fingerprint), x_a=np.asarray(x_a),
                                                 loss=np.asarray(loss), info=np.array(json.dumps(info))))


def _run_log(result_info: dict, config: AttackConfig, objective) -> dict:
    """The report's `attack_runs` entry of one run: the optimiser's log (`AttackResult.info`);
    for PGD runs loaded from a cache written without one, its cost from the config; always
    with the search's "precision" (`attacks.precision`)."""
    if result_info is None:
        if config.method != "pgd":
            return None
        from robust_dae_tf.attacks import pgd  # pylint: disable=import-outside-toplevel

        result_info = {"gradient_evaluations_per_image": pgd.gradient_evaluations(config, objective)}
    # Runs cached before the search precision was recorded searched in float32 (their fingerprint says so).
    return {**dict(result_info), "precision": result_info.get("precision", "float32")}


# --------------------------------------------------------------------------
# Protocol


def _trial_images(images, labels, protocol: Protocol):
    """Validates the inputs; returns (trial seeds, x, x_t) of all trials, trial-major
    ([trials * num_images, H, W, C] each)."""
    _check_protocol(protocol)
    images = attacks.validate_images(images, "test images")
    labels, has_classes = _validate_labels(labels, images.shape[0])
    if protocol.num_images > images.shape[0]:
        raise DataError(
            f"--num_images={protocol.num_images} exceeds the test split size {images.shape[0]}; "
            f"use --num_images <= {images.shape[0]}."
        )
    seeds, sources, targets = select_trials(labels, protocol, has_classes)
    return seeds, images[sources.reshape(-1)], images[targets.reshape(-1)]


def success_levels(model, images: np.ndarray, labels: np.ndarray, protocol: Protocol = Protocol()) -> dict:
    """The report's "success_levels" (see the module docstring) for the protocol's images
    and targets, without running any attack (e.g. for reports written before they
    existed): {objective name: {objective.main_metric: {mean, std}}}, for the paper's attacks
    {"latent": {"msssim_target_adv_rec": ...}, "max_damage": {"msssim_rec_adv_rec": ...}}.
    Arguments as for `evaluate_robustness`."""
    _, x, x_t = _trial_images(images, labels, protocol)
    return _success_levels(protocol.objectives, x, x_t, _clean_reconstructions(model, x, x_t, protocol),
                           protocol.trials)


def evaluate_robustness(model, images: np.ndarray, labels: np.ndarray, protocol: Protocol,
                        progress: bool = True, run_cache_dir: str | None = None,
                        per_image_out: dict | None = None, local_gain: bool = False) -> dict:
    """Runs the protocol; returns the report dict (see the module docstring and README).

    Args:
      model: object with differentiable `encode(images)` / `decode(latents)`
        (`robust_dae_tf.export.ExportedAutoencoder`).
      images: float32 [M, H, W, C] test images in [0, 1].
      labels: int64 [M]; labels < 0 (all of them) = a dataset without classes.
      protocol: `Protocol` (validated when it was built).
      progress: show a tqdm progress bar over the attack runs, and one within each run
        (gradient evaluations done, `attacks.progress`; PGD, APGD and the ensemble).
      run_cache_dir: where each finished attack run is stored, and loaded from by a later
        call with the same protocol, model, images and targets (resuming; module docstring);
        None: no cache.
      per_image_out: a dict filled with the value of every image behind each cell,
        {attack: {budget key: {metric: float64 [trials * num_images], trial-major}}}
        (`robust_dae_tf.reporting.per_image`); None: not kept.
      local_gain: also measure each attack's local gain at the attacked images (module
        docstring, "Local gain"): report["local_gain"] and the per-image metric "local_gain".
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    seeds, x, x_t = _trial_images(images, labels, protocol)
    budgets = protocol.budgets
    objectives = protocol.objectives
    trials = protocol.trials
    n = protocol.num_images
    clean = _clean_reconstructions(model, x, x_t, protocol)

    report = {
        "protocol": {
            "name": protocol.name,
            # Std of the latent noise of each attack's reported reconstructions (0: none).
            "decode_noise_std": {o.name: protocol.decode_noise_std(o) for o in objectives},
            "num_images": int(n),
            "trials": int(trials),
            "budgets": [float(b) for b in budgets],
            "seed": int(protocol.seed),
            "trial_seeds": seeds,
            "attack": dataclasses.asdict(protocol.attack),
            # The settings each attack ran with (fields left None take per-attack and per-model defaults).
            "attack_by_kind": {o.name: dataclasses.asdict(attacks.for_model(o.resolve(protocol.attack), model,
                                                                            x.shape[1:])) for o in objectives},
            "msssim_convention": MSSSIM_CONVENTION,
        },
        **{o.name: {} for o in objectives},
        "attack_runs": {o.name: {} for o in objectives},
        "success_levels": _success_levels(objectives, x, x_t, clean, trials),
    }
    k = min(NUM_EXAMPLES, n)
    examples = {}
    max_budget = max(budgets)
    runs = [(b_index, budget, objective) for b_index, budget in enumerate(budgets) for objective in objectives]
    if run_cache_dir:
        cache_base = {"format": RUN_CACHE_FORMAT, "model": _model_identity(model, clean),
                      "images": fileio.array_digest(x), "targets": fileio.array_digest(x_t),
                      "protocol": {key: report["protocol"][key] for key in ("name", "seed", "trials", "num_images",
                                                                            "budgets", "decode_noise_std")}}
    resumed = 0
    bar = tqdm(runs, desc="attacks", unit="run", disable=not progress)
    for b_index, budget, objective in bar:
        bar.set_postfix_str(f"{objective.name} lambda={budget:g} ({x.shape[0]} images)")
        seed = attack_seed(protocol, b_index, objective)
        cached = None
        if run_cache_dir:
            cache_file = _run_cache_file(run_cache_dir, objective, budget)
            fingerprint = _run_fingerprint(cache_base, objective, budget,
                                           report["protocol"]["attack_by_kind"][objective.name], seed)
            cached = _load_run(cache_file, fingerprint, x.shape)
            if cached is not None and _run_log(cached[2], protocol.attack, objective) is None:
                cached = None  # a run stored without its log: attack again (the report needs it)
        if cached is not None:
            x_a, attack_loss, run_log = cached
            run_log = _run_log(run_log, objective.resolve(protocol.attack), objective)
            resumed += 1
            if progress:
                bar.write(f"[robustness] {objective.name} lambda={budget:g}: resumed from cache {cache_file}")
        else:
            with attack_progress.run_bar(objective, protocol.attack, x.shape[0], budget,
                                         enabled=progress):  # within the run: gradient evaluations done
                result = attacks.run_validated(objective, model, x, budget, protocol.attack, targets=x_t, seed=seed)
            x_a, attack_loss, run_log = result.adversarial, result.loss, dict(result.info)
            if run_cache_dir:
                _store_run(cache_file, fingerprint, x_a, attack_loss, run_log)
        report["attack_runs"][objective.name][budget_key(budget)] = run_log
        std = protocol.decode_noise_std(objective)
        rec_a = _reconstruct(model, x_a, std, decode_noise_seed(protocol, objective, NOISE_ADVERSARIAL, b_index))
        rec = clean[objective.name][0]
        reference = objective.compared_with(x, x_t, rec)
        loss, msssim, msssim_standard, l2, msssim_input, l2_input = objective.metrics
        per_image = {
            loss: attack_loss,
            msssim: _msssim(reference, rec_a),
            msssim_standard: _msssim(reference, rec_a, standard=True),
            l2: _l2(reference, rec_a),
            msssim_input: _msssim(x, x_a),
            l2_input: _l2(x, x_a),
        }
        report[objective.name][budget_key(budget)] = {key: _summary(v, trials) for key, v in per_image.items()}
        if per_image_out is not None:
            per_image_out.setdefault(objective.name, {})[budget_key(budget)] = {
                key: np.asarray(v, np.float64).reshape(-1) for key, v in per_image.items()}
        if budget == max_budget:
            ex = {
                "budget": float(budget),
                "x": x[:k].copy(),
                "reconstruction": rec[:k].copy(),
                "adversarial": x_a[:k].copy(),
                "adversarial_reconstruction": rec_a[:k].copy(),
            }
            if objective.needs_targets:
                ex["target"] = x_t[:k].copy()
            examples[objective.name] = ex
    if local_gain:
        from robust_dae_tf.evaluation import sensitivity  # pylint: disable=import-outside-toplevel

        report["local_gain"], gains = sensitivity.local_gains(model, objectives, x, protocol.seed)
        for name, gain in gains.items():
            for values in (per_image_out or {}).get(name, {}).values():
                values["local_gain"] = gain
    seconds = time.perf_counter() - start
    report["examples"] = examples
    report["timing"] = {"seconds": float(seconds), "images_x_trials_per_second": float(n * trials / seconds)}
    if resumed:
        report["timing"]["resumed_runs"] = resumed  # runs loaded from run_cache_dir, not attacked
    return report
