"""Attack settings and results, and the checks of an attack's inputs.

`AttackConfig` validates itself when it is built (a config that exists is usable), so
the attack entry points only check that they got one; `validate_budget` is the one check
of an L2 budget, run where a protocol or an attack call takes it. No TensorFlow here:
reports import this package without it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from robust_dae_tf.attacks import budgets
from robust_dae_tf.errors import ConfigError, DataError

METHODS = ("pgd", "lbfgsb", "paper", "apgd", "ensemble")
# The arithmetic of an attack's search (`AttackConfig.precision`, `precision.py`), and the methods
# that can search in bfloat16 (the L-BFGS-B attackers need float32 gradients for their line search).
PRECISIONS = ("float32", "bfloat16", "auto")
LOW_PRECISION_METHODS = ("pgd", "apgd", "ensemble")
# The attack of the strong protocol (AttackConfig's default method, and so --attack_method's):
# switching the strong protocol to the ensemble is this one line ("ensemble").
STRONG_PROTOCOL_METHOD = "pgd"


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Attack settings, validated when built (ConfigError).

    Attributes:
      steps: PGD refinement iterations per restart (the exploration phase adds
        ceil(steps / 8) iterations on exploration_starts * restarts starts); None = the
        objective's default (`DEFAULTS`: 400 latent, 200 maximum damage); for "lbfgsb" the
        maximum number of L-BFGS-B iterations per restart.
      restarts: runs per image that are refined to the end (PGD) or random starts
        (L-BFGS-B); the best result per image is kept.
      exploration_starts: PGD: random starts per restart in the exploration phase
        (1 = no exploration phase: plain PGD with `restarts` random starts); None = the
        objective's default (24 latent, 32 maximum damage).
      initial_step_fraction: first PGD step length of the exploration phase as a
        fraction of the budget lambda (the refinement starts at a quarter of it); the
        step decays to 0 with a cosine schedule.
      chunk_size: images per compiled call (one call holds at most chunk_size * restarts
        rows, and at least one image with all its starts); None = automatic,
        `default_chunk_size(image shape, restarts)`: a memory bound of about
        ATTACK_MEMORY_BYTES per call (1000 for 32x32x1 images, 145 at 64x64x3 with 2
        restarts). Results do not depend on it (starts are drawn image by image).
      method: "pgd" (batched, compiled), "ensemble" (`ensemble.py`: APGD members and a
        reduced PGD under one budget, per-image worst case), "apgd" (`apgd.py`, one start),
        "lbfgsb" (reference-style, per image) or
        "paper" (the exact attacker behind the paper's numbers, `paper.py`: one start,
        scipy's defaults and the objective's `paper_lbfgsb_*` settings; it ignores
        steps, restarts, exploration_starts, initial_step_fraction, chunk_size and
        jit_compile).
      jit_compile: PGD: XLA-compile the attack loop (falls back to plain graph mode
        with a warning when XLA fails on the model); None = automatic,
        `default_jit_compile(model)`: on for fully connected nets, off for the
        convolutional ones, where XLA was measured slower (3.5x at 64x64x3, 1.3x at
        32x32x3, and more memory).
      gradient_evaluations: "apgd" and "ensemble" only, their one setting: gradient
        evaluations per image (the ensemble's total over its members); None = the
        objective's default (`budgets.default_evaluations`: a quarter of PGD's default
        cost, 500 maximum damage, 800 latent). "apgd" runs one start from the objective's
        start direction (the latent attack: towards the target) or a random point.
      ensemble_members: "ensemble" only: names from `budgets.MEMBER_NAMES` (None = each
        attack's default members, `budgets.DEFAULT_MEMBERS`); their budget shares are
        renormalised over the selection, which replaces the defaults of every attack.
      towards_starts: "pgd" only: how many of the first phase's exploration_starts *
        restarts starts point towards other images of the batch
        (`starts.towards_other_images`, after the objective's own start direction, if
        any) instead of being random; 0 (default) = today's PGD. Same cost; stronger on
        maximum damage, whose strongest points are rare basins (docs/attacks.md,
        "Ensemble", round 2). At least one start stays the objective's own or random.
      precision: the arithmetic of the search (`precision.py`): "float32" (default);
        "bfloat16": the gradients are taken on a twin of the model whose hidden layers
        compute in bfloat16, for the attacks whose objective allows it (the latent attack;
        `Objective.low_precision_search`), and the images found are scored with the float32
        model, so every reported number is a float32 number; "auto": bfloat16 where it is
        allowed and measured faster on the CPU at hand, float32 elsewhere. Methods "pgd",
        "apgd" and "ensemble" only.
    """

    steps: int | None = None
    restarts: int = 2
    exploration_starts: int | None = None
    initial_step_fraction: float = 1.0
    chunk_size: int | None = None
    method: str = STRONG_PROTOCOL_METHOD  # "pgd" | "lbfgsb" | "paper" | "apgd" | "ensemble"
    jit_compile: bool | None = None
    gradient_evaluations: int | None = None
    ensemble_members: tuple | None = None
    towards_starts: int = 0
    precision: str = "float32"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"attack method {self.method!r} is unknown; choose one of {', '.join(METHODS)}.")
        for name in ("steps", "restarts", "exploration_starts", "chunk_size"):
            value = getattr(self, name)
            if value is None and name in ("steps", "exploration_starts", "chunk_size"):
                continue  # the objective's default (`Objective.resolve`) or automatic (`for_model`)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"attack {name} must be an integer >= 1, got {value!r}.")
        frac = self.initial_step_fraction
        if not (isinstance(frac, (int, float)) and math.isfinite(frac) and frac > 0):
            raise ConfigError(f"attack initial_step_fraction must be a finite number > 0, got {frac!r}.")
        if self.jit_compile is not None and not isinstance(self.jit_compile, (bool, np.bool_)):
            raise ConfigError(f"attack jit_compile must be True, False or None (automatic), got {self.jit_compile!r}.")
        evaluations = self.gradient_evaluations
        if evaluations is not None and (isinstance(evaluations, bool) or not isinstance(evaluations, (int, np.integer))
                                        or evaluations < 1):
            raise ConfigError(f"attack gradient_evaluations must be an integer >= 1, got {evaluations!r}.")
        if self.ensemble_members is not None:
            if isinstance(self.ensemble_members, str):
                raise ConfigError(f"attack ensemble_members must be a sequence of names, got {self.ensemble_members!r}.")
            object.__setattr__(self, "ensemble_members", tuple(self.ensemble_members))
        if self.method == "ensemble":
            budgets.check(evaluations, self.ensemble_members)
        elif self.ensemble_members is not None:
            raise ConfigError(f"attack ensemble_members applies to method 'ensemble' only, not {self.method!r}.")
        towards = self.towards_starts
        if isinstance(towards, bool) or not isinstance(towards, (int, np.integer)) or towards < 0:
            raise ConfigError(f"attack towards_starts must be an integer >= 0, got {towards!r}.")
        if towards and self.method != "pgd":
            raise ConfigError(f"attack towards_starts applies to method 'pgd' only, not {self.method!r}.")
        if towards and self.exploration_starts is not None and towards >= self.exploration_starts * self.restarts:
            raise ConfigError(f"attack towards_starts must be below the {self.exploration_starts * self.restarts} "
                              f"starts of PGD's first phase (exploration_starts x restarts), got {towards}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"attack precision {self.precision!r} is unknown; choose one of {', '.join(PRECISIONS)}.")
        if self.precision != "float32" and self.method not in LOW_PRECISION_METHODS:
            raise ConfigError(f"attack precision {self.precision!r} applies to the methods "
                              f"{', '.join(LOW_PRECISION_METHODS)}, not {self.method!r} (its L-BFGS-B search needs "
                              "float32 gradients); use precision 'float32'.")
        if self.method == "apgd" and evaluations is not None and evaluations < budgets.APGD_MIN_EVALUATIONS:
            raise ConfigError(f"APGD needs at least {budgets.APGD_MIN_EVALUATIONS} gradient evaluations per image, "
                              f"got {evaluations}.")


# Memory bound of one compiled attack call when chunk_size is None: ATTACK_MEMORY_BYTES over
# ROW_BYTES_PER_PIXEL bytes per row (one image x start) and input pixel. 300 B covers the
# conv nets (measured: ~280 B per pixel per row for the maximum-damage attack, encoder +
# decoder forward and backward, 64x64x3 CelebA net: ~3.4 MB per row); the FC nets need far
# less, and at 32x32x1 the rule gives MAX_CHUNK_SIZE, the old fixed default.
ATTACK_MEMORY_BYTES = 1 << 30
ROW_BYTES_PER_PIXEL = 300
MAX_CHUNK_SIZE = 1000


def default_chunk_size(image_shape, restarts: int) -> int:
    """Images per compiled call when `AttackConfig.chunk_size` is None: min(MAX_CHUNK_SIZE,
    ATTACK_MEMORY_BYTES // (ROW_BYTES_PER_PIXEL * pixels * restarts)), at least 1. E.g.
    with 2 restarts: 1000 at 32x32x1, 582 at 32x32x3, 145 at 64x64x3."""
    pixels = int(np.prod([int(d) for d in image_shape]))
    rows = ATTACK_MEMORY_BYTES // (ROW_BYTES_PER_PIXEL * max(pixels, 1))
    return int(max(1, min(MAX_CHUNK_SIZE, rows // max(int(restarts), 1))))


def model_architecture(model) -> str | None:
    """"fc" / "conv" from the run config in a model's metadata (`ExportedAutoencoder.metadata`
    of a model exported by bin/train.py), None when it is not recorded."""
    metadata = getattr(model, "metadata", None) or {}
    config = metadata.get("config") if isinstance(metadata, dict) else None
    model_config = config.get("model") if isinstance(config, dict) else None
    return model_config.get("architecture") if isinstance(model_config, dict) else None


def default_jit_compile(model) -> bool:
    """XLA for the attack loop when `AttackConfig.jit_compile` is None: off for convolutional
    nets (slower with XLA on this CPU, see `AttackConfig`), on otherwise."""
    return model_architecture(model) != "conv"


def for_model(config: AttackConfig, model, image_shape) -> AttackConfig:
    """`config` with the automatic fields (chunk_size, jit_compile left None) set for `model`
    and images of `image_shape` (`default_chunk_size`, `default_jit_compile`)."""
    return dataclasses.replace(
        config,
        chunk_size=default_chunk_size(image_shape, config.restarts) if config.chunk_size is None else config.chunk_size,
        jit_compile=default_jit_compile(model) if config.jit_compile is None else bool(config.jit_compile),
    )


@dataclasses.dataclass
class AttackResult:
    """Outcome of an attack.

    adversarial: x + d, [N, H, W, C] float32 in [0, 1].
    loss: [N] achieved objective at `adversarial` (not squared): e.g. latent attack
      ||g(x_adv) - g(x_t)||_2 (lower = better attack); maximum damage ||f(g(x_adv)) -
      f(g(x))||_2 (higher = better attack).
    loss_curve: [steps] mean over images of the best-so-far loss after each iteration
      (best over restarts), when requested; else None. For PGD these are the refinement
      iterations (their starting value is the exploration's result).
    exploration_curve: PGD only, when requested: the same for the ceil(steps / 8)
      exploration iterations (best over all exploration starts); else None.
    info: what the run recorded about itself, JSON-ready: always
      "gradient_evaluations_per_image" (spent, mean over images) when the runner
      returns the result; the ensemble adds "member_wins" and more (`ensemble.run`).
    """

    adversarial: np.ndarray
    loss: np.ndarray
    loss_curve: np.ndarray | None = None
    exploration_curve: np.ndarray | None = None
    info: dict = dataclasses.field(default_factory=dict)


# AttackConfig fields added after attack runs were first cached (`robustness` run cache,
# `check` cells), with their defaults: a fingerprint leaves such a field out at its default,
# so files written before it existed still resume.
ADDED_FIELDS = {"gradient_evaluations": None, "ensemble_members": None, "precision": "float32"}


def fingerprint_record(attack: dict, added=ADDED_FIELDS) -> dict:
    """`attack` (an AttackConfig as a dict) without the fields of `added` that hold their
    default (`ADDED_FIELDS`; a cache format that recorded some of them passes fewer)."""
    return {k: v for k, v in attack.items() if not (k in added and v == added[k])}


def config_record(config, added_since=("precision",)) -> dict | None:
    """`config` (an AttackConfig, or None) as a cache's fingerprint holds it: the fields named in
    `added_since` (of `ADDED_FIELDS`) left out at their defaults. Each cache names the fields
    added after its own files were first written: the evaluation components and the check
    cells `precision` only; the robustness run cache, older than all three, calls
    `fingerprint_record` with every added field."""
    if config is None:
        return None
    unknown = set(added_since) - set(ADDED_FIELDS)
    if unknown:
        raise ValueError(f"not fields added to AttackConfig since: {sorted(unknown)}")
    return fingerprint_record(dataclasses.asdict(config), {k: ADDED_FIELDS[k] for k in added_since})


def validate_config(config) -> None:
    """ConfigError unless `config` is an `AttackConfig` (whose values were checked when it was built)."""
    if not isinstance(config, AttackConfig):
        raise ConfigError(f"attack config must be an AttackConfig, got {type(config).__name__}.")


def validate_budget(budget, flag: str = "budget") -> float:
    """The L2 budget lambda as a float; ConfigError naming `flag` unless it is a finite number > 0."""
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ConfigError(f"attack {flag} must be a number > 0 (L2 norm of the perturbation), got {budget!r}.") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"attack {flag} must be a finite number > 0 (L2 norm of the perturbation), got {budget!r}.")
    return value


def budget_key(budget) -> str:
    """The key of a budget in robustness reports: str(float(b)), e.g. "1.0"."""
    return str(float(budget))


def validate_images(images, name: str = "images") -> np.ndarray:
    """float32 [N, H, W, C] in [0, 1], finite; raises DataError otherwise."""
    try:
        arr = np.asarray(images, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric array [N, H, W, C] in [0, 1]; could not convert it ({exc}).") from None
    if arr.ndim != 4:
        raise DataError(
            f"{name} must be a batch [N, H, W, C] of float images in [0, 1]; got shape {arr.shape}. "
            "Add a batch axis for one image and a channel axis for grey images."
        )
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape}); pass at least one image.")
    bad = ~np.isfinite(arr).all(axis=(1, 2, 3))
    if bad.any():
        raise DataError(f"{name} contain NaN or infinite pixels in {int(bad.sum())} of {arr.shape[0]} images.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{name} must be float pixels in [0, 1]; found values in [{lo:g}, {hi:g}] "
            "(divide uint8 images by 255, e.g. with robust_dae_tf.data.to_float)."
        )
    return arr


def check_finite_rows(values: np.ndarray, what: str, total: int) -> None:
    """DataError naming `what` when a row of model outputs holds NaN/Inf."""
    bad = ~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    if bad.any():
        raise DataError(
            f"the model produced NaN {what} for {int(bad.sum())} of {total} images; check the "
            "SavedModel (a diverged or corrupt checkpoint) before attacking it."
        )
