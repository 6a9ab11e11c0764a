"""The settings of an evaluation (`EvaluationSettings`: bin/evaluate.py's flags, with the
same names and defaults; `ClassifierConfig`, the Table 3 classifier's, re-exported by
`downstream`) and their checks, in one place: `check_request` (the flags' syntax and
combinations), `check_settings` (budgets, attack and classifier configs) and the checks
of single values the components share (`validate_budgets`, `check_attack_for`, re-exported
by `robustness`).
No TensorFlow: a wrong setting fails before the model or the data are loaded."""

from __future__ import annotations

import dataclasses

import numpy as np

from robust_dae_tf.attacks.config import AttackConfig, budget_key, validate_budget
from robust_dae_tf.attacks.objectives import PAPER_OBJECTIVES
from robust_dae_tf.attacks.objectives import objective as attack_objective
from robust_dae_tf.errors import ConfigError


_ATTACK_DEFAULTS = AttackConfig()


@dataclasses.dataclass
class EvaluationSettings:
    """What to evaluate and how: bin/evaluate.py's flags (same names, same defaults; see
    `bin/evaluate.py --help`). `budgets` and `classifier_hidden` may be numbers or the
    flags' strings ("1,3,5" or ["1", "3", "5"])."""

    examples: str | None = None
    dataset: str | None = None
    # Models the project did not train (robust_dae_tf.adapters): an encoder/decoder pair instead of
    # --model, the prior for the FD ("standard_normal" or a GMM JSON file) and the model's pixel range.
    encoder: str | None = None
    decoder: str | None = None
    prior: str | None = None
    pixel_range: tuple | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    trust_model: bool = False
    num_images: int = 100
    trials: int = 10
    budgets: tuple = (1.0, 3.0, 5.0)
    # The attack flags default to AttackConfig's values (one place for them).
    attack_steps: int | None = _ATTACK_DEFAULTS.steps
    attack_restarts: int = _ATTACK_DEFAULTS.restarts
    attack_exploration_starts: int | None = _ATTACK_DEFAULTS.exploration_starts
    attack_xla: bool | None = _ATTACK_DEFAULTS.jit_compile
    attack_method: str = _ATTACK_DEFAULTS.method
    attack_chunk_size: int | None = _ATTACK_DEFAULTS.chunk_size
    attack_towards_starts: int = _ATTACK_DEFAULTS.towards_starts
    attack_gradient_evaluations: int | None = _ATTACK_DEFAULTS.gradient_evaluations
    attack_ensemble_members: tuple | None = _ATTACK_DEFAULTS.ensemble_members
    attack_precision: str = _ATTACK_DEFAULTS.precision
    pool_size: int = 5000
    seed: int = 0
    protocol: str = "strong"
    split: str = "test"
    local_gain: bool = False
    skip_robustness: bool = False
    skip_classifier: bool = False
    skip_fid: bool = False
    fid_extractor: str | None = None
    inception_weights: str | None = None
    fid_samples: int = 10000
    feature_cache: str | None = None
    fd_classifier_epochs: int = 0
    classifier_hidden: tuple = (256, 256)
    classifier_dropout: float = 0.0
    classifier_epochs: int = 20
    classifier_attack_images: int = 1000
    classifier_attack_trials: int = 1
    classifier_budget: float = 1.0
    tensorboard: bool = True


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """MLP and Table 3 evaluation settings.

    attack_images: test images attacked (<= 0: all test images).
    attack_trials: independent attack trials (new targets and starts each).
    attack: an `attacks.AttackConfig` (None: its defaults).
    """

    hidden_units: tuple = (256, 256)
    dropout: float = 0.0
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    encode_batch_size: int = 500
    attack_images: int = 1000
    attack_budget: float = 1.0
    attack_trials: int = 1
    attack: object = None

    def validate(self) -> None:
        if not self.hidden_units or any(int(u) < 1 for u in self.hidden_units):
            raise ConfigError(f"classifier hidden units must be positive integers, got {self.hidden_units}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"classifier dropout must be in [0, 1), got {self.dropout}.")
        for name in ("epochs", "batch_size", "encode_batch_size", "attack_trials"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"classifier {name} must be >= 1, got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise ConfigError(f"classifier learning rate must be > 0, got {self.learning_rate}.")
        if not (np.isfinite(self.attack_budget) and self.attack_budget > 0):
            raise ConfigError(f"classifier attack budget must be > 0, got {self.attack_budget}.")

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["hidden_units"] = list(self.hidden_units)
        out["attack"] = dataclasses.asdict(self.attack) if dataclasses.is_dataclass(self.attack) else self.attack
        return out


def _numbers(values, flag: str, kind) -> tuple:
    if isinstance(values, str):
        values = values.split(",")
    try:
        return tuple(kind(v) for v in values)
    except (TypeError, ValueError):
        what = "numbers" if kind is float else "integers"
        raise ConfigError(f"--{flag} must be comma-separated {what}, got {','.join(map(str, values))}.") from None


def validate_budgets(budgets, flag: str = "--budgets") -> tuple[float, ...]:
    """The budgets (a number or a sequence) as a tuple of floats; ConfigError naming `flag`
    when there is none, one is not a finite number > 0, or one repeats."""
    budgets = tuple(budgets) if isinstance(budgets, (tuple, list)) else (budgets,)
    if not budgets:
        raise ConfigError(f"{flag} is empty; give at least one L2 budget > 0, e.g. {flag}=1,3,5.")
    budgets = tuple(validate_budget(b, f"budget ({flag})") for b in budgets)
    if len(set(budget_key(b) for b in budgets)) != len(budgets):
        raise ConfigError(f"{flag} has repeated values {list(budgets)}; give each budget once.")
    return budgets


def check_attack_for(attack: AttackConfig, objectives=PAPER_OBJECTIVES) -> None:
    """ConfigError naming the attack unless `attack` is valid once each objective's defaults
    are filled in (e.g. `towards_starts` below that attack's number of PGD starts)."""
    for objective in objectives:
        try:
            attack_objective(objective).resolve(attack)
        except ConfigError as error:
            raise ConfigError(f"the {attack_objective(objective).name} attack: {error}") from None


def check_budgets(budgets) -> tuple:
    """The budgets as floats; the one check of a budget list is `validate_budgets`."""
    return validate_budgets(budgets)


def _check_positive(value, flag: str) -> None:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ConfigError(f"{flag} must be an integer >= 1, got {value!r}.")


def check_pool_size(pool_size) -> None:
    if isinstance(pool_size, bool) or not isinstance(pool_size, (int, np.integer)) or pool_size < 2:
        raise ConfigError(f"--pool_size must be an integer >= 2 (the latent attack's targets are other test images "
                          f"of another class), got {pool_size!r}.")


SPLITS = {"test": "test images", "heldout_train": "held-out training images"}  # --split values


def check_split(split) -> str:
    if split not in SPLITS:
        raise ConfigError(f"--split={split!r} is unknown; choose one of {', '.join(SPLITS)}.")
    return split


PROTOCOL_CHOICES = ("strong", "paper", "both")  # --protocol; "both" = <output>/strong and <output>/paper


def evaluation_protocols(protocol) -> tuple:
    """The protocols (robustness.PROTOCOLS names) that --protocol=`protocol` runs."""
    if protocol not in PROTOCOL_CHOICES:
        raise ConfigError(f"--protocol={protocol!r} is unknown; choose one of {', '.join(PROTOCOL_CHOICES)}.")
    return ("strong", "paper") if protocol == "both" else (protocol,)


def check_request(settings: EvaluationSettings) -> tuple:
    """The protocols to run, after the checks of `settings` that need no TensorFlow (the
    flags' syntax and combinations): run by `run_evaluation_pipeline` before it locks the
    output, so a wrong flag fails within a second. `check_settings` does the rest."""
    _numbers(settings.budgets, "budgets", float)  # malformed --budgets fails before the output is locked
    if settings.skip_robustness and settings.skip_classifier and settings.skip_fid:
        raise ConfigError("all evaluations were skipped; drop one of --skip_robustness/--skip_classifier/--skip_fid.")
    protocols = evaluation_protocols(settings.protocol)
    if check_split(settings.split) != "test" and not (settings.skip_classifier and settings.skip_fid):
        raise ConfigError(f"--split={settings.split} draws the attacked images from held-out training images, but the "
                          "classifier and the FD use the test split; add --skip_classifier --skip_fid.")
    if settings.split != "test" and settings.skip_robustness:
        raise ConfigError(f"--split={settings.split} only changes the attacked images; drop --skip_robustness.")
    if settings.local_gain and settings.skip_robustness:
        raise ConfigError("--local_gain is measured at the attacked images; drop --skip_robustness or --local_gain.")
    return protocols


def check_settings(settings: EvaluationSettings) -> tuple:
    """(budgets, attacks.AttackConfig, ClassifierConfig) of `settings`, after every check
    that needs neither the model nor the data (one ConfigError naming the flag; no
    TensorFlow): run by the pipeline before it loads anything, and by a sweep
    (`pipeline.experiments`) before it trains any point."""
    from robust_dae_tf import attacks  # pylint: disable=import-outside-toplevel

    s = settings
    evaluation_protocols(s.protocol)
    check_split(s.split)
    budgets = check_budgets(_numbers(s.budgets, "budgets", float))
    attack = attacks.AttackConfig(steps=s.attack_steps, restarts=s.attack_restarts,
                                  exploration_starts=s.attack_exploration_starts,
                                  chunk_size=s.attack_chunk_size, method=s.attack_method,
                                  jit_compile=s.attack_xla, towards_starts=s.attack_towards_starts,
                                  gradient_evaluations=s.attack_gradient_evaluations,
                                  ensemble_members=s.attack_ensemble_members, precision=s.attack_precision)
    attacks.validate_config(attack)
    if not s.skip_robustness:
        check_attack_for(attack)
        check_pool_size(s.pool_size)
    config = ClassifierConfig(
        hidden_units=_numbers(s.classifier_hidden, "classifier_hidden", int), dropout=s.classifier_dropout,
        epochs=s.classifier_epochs, seed=s.seed, attack_images=s.classifier_attack_images,
        attack_budget=s.classifier_budget, attack_trials=s.classifier_attack_trials, attack=attack)
    if not s.skip_classifier:
        config.validate()
    return budgets, attack, config
