"""Attack objectives: what an attack optimises, and how reports name and show it.

An attack is a problem over the perturbation d of each image x,

    optimise  L(x + d)   subject to  ||d||_2 <= lambda,  0 <= x + d <= 1,

solved by the optimisers (`pgd`, `lbfgsb`), which know nothing about a particular L.
An `Objective` carries everything else:

* the math: `reference(model, x, x_t)` (computed once per image) and
  `loss_sq(model, x_adv, reference)`, the squared loss per image; whether it is
  minimised or maximised (`maximize`; "better", the worst value, the best over restarts,
  the PGD step sign and the ranking of starts all follow from it); its default PGD
  steps / exploration starts; optional `start_directions` (a first start that is not
  random);
* the protocol: whether it needs targets x_t (images of another class), the image its
  adversarial reconstruction is compared with (`compared_with`), its seed stream;
* the report: its key (`name`), metric names (`metrics`, built from `pair`), display
  labels of tables and figures, its success level and the sentence that states it.

The paper's two attacks (section 4):

* `LatentAttack` (eq. 12, targeted): minimise ||g(x + d) - g(x_t)||_2;
* `MaximumDamageAttack` (eq. 13): maximise ||f(g(x + d)) - f(g(x))||_2.

A new attack is one subclass of `Objective` (set the class attributes, implement
`reference` and `loss_sq`); pass an instance to `attacks.run`, put it in
`robustness.Protocol(objectives=...)`, and `register` it so reports find its labels
(tests/attacks/test_new_attack.py does all three with a toy attack). Objectives are
hashable (the compiled PGD loop is cached per objective).

This module does not import TensorFlow at import time (reports use the names and
labels without it); the methods that need it import it.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from robust_dae_tf.attacks.config import AttackConfig, check_finite_rows
from robust_dae_tf.errors import ConfigError

LATENT, MAX_DAMAGE = "latent", "max_damage"

# Metrics of every objective that compare the clean input x with the adversarial input x_a.
INPUT_MSSSIM, INPUT_L2 = "msssim_input_adv", "l2_input_adv"
ATTACK_LOSS = "attack_loss"


def flatten(t):
    """[N, ...] -> [N, prod(...)] (TensorFlow)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.reshape(t, [tf.shape(t)[0], -1])


def squared_distance(outputs, reference):
    """Per-row ||outputs - reference||^2 ([N, ...] vs [N, K]), the form of every objective here."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return tf.reduce_sum(tf.square(flatten(outputs) - reference), axis=1)


class Objective:
    """Base of the attack objectives (see the module docstring).

    Subclasses set the class attributes below and implement `reference` and `loss_sq`.
    """

    name: str = ""  # key in reports ("latent"); also `objective(name)`
    equation: str = ""  # where it is defined, e.g. "eq. 12"
    maximize: bool = False  # True: maximise the loss (higher = stronger attack)
    needs_targets: bool = False  # takes target images x_t (of another class)
    default_steps: int = 200  # AttackConfig.steps left None
    default_exploration_starts: int = 32  # AttackConfig.exploration_starts left None
    model_outputs: str = "latents"  # what the loss evaluates, named in NaN errors
    # May the search run in bfloat16 (`AttackConfig.precision`, `precision.py`)? True only
    # where bfloat16 was measured to keep the attack loss within 0.5 % of float32 (docs/attacks.md,
    # "Cost of one gradient evaluation"): the latent attack; not maximum damage.
    low_precision_search: bool = False
    # Report: metrics "msssim_<pair>", "msssim_<pair>_standard", "l2_<pair>" compare the
    # adversarial reconstruction f(g(x_a)) with `compared_with(...)`.
    pair: str = ""
    # Display labels: Table 1 header prefix ("Latent"), legend prefix in figures
    # ("latent"), image-grid title, loss-panel title and y label, the main MS-SSIM in
    # tables (x_r notation) and in figures, the legend of Table 1, the success level.
    title: str = ""
    short_label: str = ""
    grid_title: str = ""
    loss_title: str = ""
    loss_label: str = ""
    table_label: str = ""
    curve_label: str = ""
    legend: str = ""
    success_level_label: str = ""  # dashed line in the curves
    success_level_text: str = ""  # clause of the report's sentence, with "{value}"
    # The paper's attacker (`paper.py`, method "paper"): its scipy fmin_l_bfgs_b settings
    # m / factr / pgtol for this attack; None = the attack is not part of the paper
    # (method "paper" refuses it).
    paper_lbfgsb_memory: int | None = None
    paper_lbfgsb_factr: float | None = None
    paper_lbfgsb_pgtol: float | None = None
    # The paper's evaluation protocol (`robustness.Protocol(name="paper")`): std of the
    # N(0, I) latent noise added before decoding every reconstruction this attack reports,
    # f(g(.) + std * n); None = the attack is not part of the paper.
    paper_decode_noise_std: float | None = None

    # ---------------------------------------------------------------- math

    def reference(self, model, images: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
        """[N, K] float32 per-image data of the loss (e.g. g(x_t)); DataError on NaN outputs."""
        raise NotImplementedError

    def loss_sq(self, model, x_adv, reference):
        """[N] squared loss at the adversarial images x_adv [N, H, W, C] (a TensorFlow function)."""
        raise NotImplementedError

    def start_directions(self, images: np.ndarray, targets: np.ndarray | None) -> np.ndarray | None:
        """[N, H, W, C] directions whose projection replaces the first random start, or None."""
        return None

    def compared_with(self, images: np.ndarray, targets: np.ndarray | None, reconstructions: np.ndarray) -> np.ndarray:
        """The images the report compares the adversarial reconstructions with (`pair` metrics)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- direction

    @property
    def sign(self) -> float:
        """PGD step direction: +1 ascent (maximise), -1 descent (minimise)."""
        return 1.0 if self.maximize else -1.0

    @property
    def worst(self) -> float:
        """The value every loss beats: -inf when maximising, +inf when minimising."""
        return -np.inf if self.maximize else np.inf

    def better(self, new, old):
        """Elementwise `new` is a stronger attack than `old` (numpy or TensorFlow)."""
        return new > old if self.maximize else new < old

    def best_np(self, values, axis: int = 0):
        """Best values along `axis` (numpy)."""
        return np.max(values, axis) if self.maximize else np.min(values, axis)

    def best_tf(self, values, axis: int = 0):
        """Best values along `axis` (TensorFlow)."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return tf.reduce_max(values, axis) if self.maximize else tf.reduce_min(values, axis)

    def ranking_key(self, loss: np.ndarray) -> np.ndarray:
        """Sort key that puts the strongest attack first (ascending argsort)."""
        return -loss if self.maximize else loss

    def shortfall(self, value, other):
        """How much weaker `value` is than `other`, relative to `other` (negative: stronger)."""
        return (other - value) / abs(other) if self.maximize else (value - other) / abs(other)

    @property
    def stronger(self) -> str:
        """Which loss values are the stronger attacks: "higher" or "lower"."""
        return "higher" if self.maximize else "lower"

    @property
    def arrow(self) -> str:
        """Direction of robustness of the main MS-SSIM: the attack drives it down when it
        maximises its loss (so a robust model keeps it high, "↑") and up when it minimises."""
        return "↑" if self.maximize else "↓"

    # ---------------------------------------------------------------- protocol

    def resolve(self, config: AttackConfig) -> AttackConfig:
        """`config` with `steps` / `exploration_starts` left None set to this objective's defaults,
        and for methods "apgd" / "ensemble" `gradient_evaluations` (`budgets.default_evaluations`)."""
        evaluations = config.gradient_evaluations
        if evaluations is None and config.method in ("apgd", "ensemble"):
            from robust_dae_tf.attacks import budgets  # pylint: disable=import-outside-toplevel

            evaluations = budgets.default_evaluations(self.resolve(AttackConfig()))
        return dataclasses.replace(
            config,
            steps=self.default_steps if config.steps is None else config.steps,
            exploration_starts=(self.default_exploration_starts if config.exploration_starts is None
                                else config.exploration_starts),
            gradient_evaluations=evaluations,
        )

    def seed_entropy(self, budget_index: int) -> tuple[int, ...]:
        """SeedSequence entropy (after the protocol seed) of this attack at budget number b."""
        return (2_000_000 + int(budget_index), zlib.crc32(self.name.encode()))

    # ---------------------------------------------------------------- report

    @property
    def main_metric(self) -> str:
        return f"msssim_{self.pair}"

    @property
    def metrics(self) -> tuple[str, ...]:
        """Per-budget metrics of this attack in robustness reports, in report order."""
        main = self.main_metric
        return (ATTACK_LOSS, main, f"{main}_standard", f"l2_{self.pair}", INPUT_MSSSIM, INPUT_L2)

    @property
    def table_columns(self) -> tuple[tuple[str, str, str], ...]:
        """(metric, header, direction) of this attack's Table 1 columns."""
        return ((self.main_metric, f"{self.title}: {self.table_label}", self.arrow),
                (INPUT_MSSSIM, f"{self.title}: MS-SSIM(x_r, x_a)", "↓"))

    @property
    def curve_lines(self) -> tuple[tuple[str, str], ...]:
        """(metric, legend label) of this attack's lines in the MS-SSIM panel of the curves."""
        return ((self.main_metric, f"{self.short_label}: {self.curve_label}"),
                (INPUT_MSSSIM, f"{self.short_label}: MS-SSIM(x, x_a)"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class _PaperObjective(Objective):
    """The paper's attacks keep their seed streams: [seed, 1_000_000 + 2 b + offset]."""

    seed_offset: int = 0

    def seed_entropy(self, budget_index: int) -> tuple[int, ...]:
        return (1_000_000 + 2 * int(budget_index) + self.seed_offset,)


class LatentAttack(_PaperObjective):
    """Targeted latent-space attack (eq. 12): min ||g(x + d) - g(x_t)||_2.

    The first start points at the target image (the projection of x_t - x); the report
    compares the adversarial reconstruction with x_t; success level MS-SSIM(x_t, f(g(x_t))).
    """

    name = LATENT
    equation = "eq. 12"
    maximize = False
    needs_targets = True
    default_steps, default_exploration_starts = 400, 24
    model_outputs = "latents"
    low_precision_search = True
    seed_offset = 0
    paper_lbfgsb_memory, paper_lbfgsb_factr, paper_lbfgsb_pgtol = 25, 10.0, 1e-5  # pgtol: scipy's default
    paper_decode_noise_std = 0.4
    pair = "target_adv_rec"
    title, short_label = "Latent", "latent"
    grid_title = "latent-space attack"
    loss_title = "latent attack loss (eq. 12)"
    loss_label = "||g(x_a) - g(x_t)||_2"
    table_label, curve_label = "MS-SSIM(x_r, x~_a)", "MS-SSIM(x_t, x~_a)"
    legend = "latent attack: x_r = target image x_t"
    success_level_label = "complete success, x~_a = x~_t"
    success_level_text = "a latent attack that made x~_a = x~_t would reach MS-SSIM(x_t, x~_a) = {value}"

    def reference(self, model, images, targets):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        n = images.shape[0]
        z = np.asarray(model.encode(tf.constant(targets)), np.float32)
        check_finite_rows(z, "latents (of the target images)", n)
        z_src = np.asarray(model.encode(tf.constant(images)), np.float32)
        check_finite_rows(z_src, "latents", n)
        return z.reshape(n, -1)

    def loss_sq(self, model, x_adv, reference):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        return squared_distance(tf.cast(model.encode(x_adv), tf.float32), reference)

    def start_directions(self, images, targets):
        return targets - images

    def compared_with(self, images, targets, reconstructions):
        return targets


class MaximumDamageAttack(_PaperObjective):
    """Maximum-damage attack (eq. 13): max ||f(g(x + d)) - f(g(x))||_2.

    The report compares the adversarial reconstruction with the clean one; success level
    MS-SSIM(f(g(x)), f(g(x_t))), the similarity of the reconstructions of unrelated images.
    """

    name = MAX_DAMAGE
    equation = "eq. 13"
    maximize = True
    needs_targets = False
    default_steps, default_exploration_starts = 200, 32
    model_outputs = "latents/reconstructions"
    seed_offset = 1
    paper_lbfgsb_memory, paper_lbfgsb_factr, paper_lbfgsb_pgtol = 100, 10.0, 1e-20
    paper_decode_noise_std = 0.004
    pair = "rec_adv_rec"
    title, short_label = "Max damage", "max damage"
    grid_title = "maximum damage attack"
    loss_title = "max damage loss (eq. 13)"
    loss_label = "||f(g(x_a)) - f(g(x))||_2"
    table_label, curve_label = "MS-SSIM(x~_r, x~_a)", "MS-SSIM(x~, x~_a)"
    legend = "maximum damage: x~_r = reconstruction of x"
    success_level_label = "unrelated image, x~_a = x~_t"
    success_level_text = ("reconstructions of unrelated images (x_t of another class, or any other image where the "
                          "data have no classes) have MS-SSIM(x~, x~_t) = {value}, the maximum-damage value of an "
                          "attack that turns x into another image")

    def reference(self, model, images, targets):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        n = images.shape[0]
        z = np.asarray(model.encode(tf.constant(images)), np.float32)
        check_finite_rows(z, "latents", n)
        rec = np.asarray(model.decode(tf.constant(z)), np.float32)
        check_finite_rows(rec, "reconstructions", n)
        return rec.reshape(n, -1)

    def loss_sq(self, model, x_adv, reference):
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        z = tf.cast(model.encode(x_adv), tf.float32)
        return squared_distance(tf.cast(model.decode(z), tf.float32), reference)

    def compared_with(self, images, targets, reconstructions):
        return reconstructions


# ---------------------------------------------------------------- registry

OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Adds `objective` to `OBJECTIVES` under its name (reports look labels up there);
    ConfigError if another objective has that name."""
    if not isinstance(objective, Objective):
        raise ConfigError(f"an attack objective must be an attacks.Objective, got {type(objective).__name__}.")
    if not objective.name:
        raise ConfigError(f"{type(objective).__name__} has no name; set the class attribute `name`.")
    existing = OBJECTIVES.get(objective.name)
    if existing is not None and existing != objective:
        raise ConfigError(f"an attack objective named {objective.name!r} is already registered ({existing!r}).")
    OBJECTIVES[objective.name] = objective
    return objective


def objective(spec) -> Objective:
    """The objective `spec` (an `Objective`, or the name of a registered one)."""
    if isinstance(spec, Objective):
        return spec
    try:
        return OBJECTIVES[spec]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown attack {spec!r}; choose one of {', '.join(OBJECTIVES)} "
                          "(or pass an attacks.Objective).") from None


def resolve(config: AttackConfig, spec) -> AttackConfig:
    """`config` with the fields left None set to the defaults of objective `spec`."""
    return objective(spec).resolve(config)


LATENT_OBJECTIVE = register(LatentAttack())
MAX_DAMAGE_OBJECTIVE = register(MaximumDamageAttack())
# The attacks of the paper's protocol (Table 1), in report order.
PAPER_OBJECTIVES = (LATENT_OBJECTIVE, MAX_DAMAGE_OBJECTIVE)
# (steps, exploration_starts) each paper attack uses for the AttackConfig fields left None.
DEFAULTS = {o.name: (o.default_steps, o.default_exploration_starts) for o in PAPER_OBJECTIVES}
