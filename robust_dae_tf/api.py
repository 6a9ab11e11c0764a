"""The Python API: evaluate any autoencoder in one call, attack it, train ours with `fit`.

    import robust_dae_tf
    result = robust_dae_tf.evaluate((encoder, decoder), images=x_test, labels=y_test)
    print(result.table)                       # Table 1 row (Markdown)
    result.per_image["max_damage"]["3.0"]["msssim_rec_adv_rec"]   # one value per image-trial

* `evaluate(model, images, labels, protocol, budgets, ...)` runs the robustness protocol
  (`robustness.evaluate_robustness`, the function bin/evaluate.py's RobustnessEvaluator
  calls) on arrays in memory and returns an `EvaluationResult`; with `output=` it also
  writes the report files the CLI writes (table1.md/.csv, report.md, figures,
  summary.json, per_image.npz).
* `attack(model, images, budget, kind)` runs one attack (`attacks.run`).
* `build_model(variant, image_shape, overrides)` builds and compiles one of the project's
  models (`training.compile_model`, as bin/train.py does) for `model.fit` on your arrays or
  `tf.data`; `model.save("x.keras")` and `keras.models.load_model("x.keras")` round-trip it
  (weights and optimizer state; the model is rebuilt from its run config).

`model` may be anything `adapters.from_object` accepts: a Keras autoencoder with `encoder`
/ `decoder` attributes or layers, an (encoder, decoder) pair of Keras models or callables,
the project's models, or a loaded model (`adapters.open_model`, `export.load_saved_model`).

Conventions: images NHWC float in `pixel_range` (default [0, 1]); they are scaled to [0, 1]
for the protocol, so budgets are L2 norms of perturbations of [0, 1] pixels for every model,
and adversarial images are returned in the model's range. MS-SSIM follows the paper's
convention (`metrics.msssim.ms_ssim_paper`). Labels: integer class ids (targets of the
latent attack are of another class), or None: targets are random other images.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from robust_dae_tf import adapters
from robust_dae_tf.reporting import per_image
from robust_dae_tf.errors import ConfigError

DEFAULT_NUM_IMAGES = 100


@dataclasses.dataclass
class EvaluationResult:
    """What `evaluate` returns.

    table: Table 1 of this model (Markdown; mean ± std over trials of per-trial means).
    report: the robustness report, as `robustness.json` of the CLI (protocol, budgets,
      {attack: {budget key: {metric: {"mean", "std"}}}}, success levels, timing).
    per_image: {attack: {budget key ("1.0"): {metric: float64 [trials * num_images]}}},
      trial-major: the values behind each cell.
    examples: the image grids' arrays at the largest budget ({attack: {"x", ...}}).
    row: the summary row (as summary.json; "model_source" names the form and prior).
    figures: {name: matplotlib Figure} of the per-image distributions (`figures=True`).
    output: the directory the report files were written to (`output=`), else None.
    """

    table: str
    report: dict
    per_image: dict
    examples: dict
    row: dict
    figures: dict = dataclasses.field(default_factory=dict)
    output: str | None = None

    def mean(self, attack: str, budget: float, metric: str) -> float:
        """The table cell (mean over trials) of `metric` of `attack` at `budget`."""
        from robust_dae_tf.attacks import budget_key  # pylint: disable=import-outside-toplevel

        return float(self.report[attack][budget_key(budget)][metric]["mean"])

    def _repr_markdown_(self) -> str:
        return self.table

    def __str__(self) -> str:
        return self.table


def _protocol(name: str, num_images: int, trials: int, budgets, seed: int, attack_config):
    from robust_dae_tf.evaluation import robustness  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.attacks import AttackConfig  # pylint: disable=import-outside-toplevel

    robustness.check_protocol_name(name, "protocol")
    if name == "paper":
        return robustness.Protocol.paper(num_images=num_images, trials=trials, budgets=budgets, seed=seed)
    return robustness.Protocol(num_images=num_images, trials=trials, budgets=budgets, seed=seed,
                               attack=attack_config or AttackConfig(), name=name)


def evaluate(model, images, labels=None, *, protocol: str = "strong", budgets=(1.0, 3.0, 5.0),
             num_images: int | None = None, trials: int = 1, seed: int = 0, attack_steps: int | None = None,
             attack_restarts: int | None = None, attack_exploration_starts: int | None = None,
             attack_precision: str = "float32", local_gain: bool = False, pixel_range=(0.0, 1.0), prior=None,
             name: str | None = None, output: str | None = None, figures: bool = False,
             progress: bool = False) -> EvaluationResult:
    """Evaluates `model` under the robustness protocol on `images` (module docstring).

    Args:
      model: an autoencoder in any form `adapters.from_object` accepts.
      images: [M, H, W, C] floats in `pixel_range`; the protocol draws `num_images`
        (default min(100, M)) images per trial and, for each, a target among them.
      labels: [M] integer classes (a target has another class), or None.
      protocol: "strong" (the project's PGD attack) or "paper" (the paper's attacker and
        decode noise), as --protocol.
      budgets: L2 budgets lambda (in [0, 1] pixel units).
      trials, seed: as --trials, --seed. attack_steps / attack_restarts /
        attack_exploration_starts: as --attack_* (None: the defaults; "strong" only).
      attack_precision: as --attack_precision: "float32", "bfloat16" (the latent attack
        searches on a bfloat16 twin of a Keras or bin/train.py model, scored in float32) or
        "auto" (bfloat16 where measured faster here); `attacks.precision`.
      local_gain: as --local_gain: also each attack's local gain at the attacked images
        (report["local_gain"], per-image metric "local_gain"; `evaluation.sensitivity`).
      pixel_range: (lo, hi) of the model's pixels (module docstring).
      prior: None, "standard_normal" or a GMM JSON path / dict: checked against the
        latents and recorded (row["model_source"]["prior"]).
      output: a directory to write the CLI's report files into (None: nothing written).
      figures: also return the per-image box plots as matplotlib Figures.

    Every check (images, labels, the encode/decode contract, the prior) runs before any
    attack; each failure is one UserError.

    Example (an identity "autoencoder": max damage moves the reconstruction by the budget):

    >>> import numpy as np, keras, robust_dae_tf
    >>> encoder = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten()])
    >>> decoder = keras.Sequential([keras.Input((256,)), keras.layers.Reshape((16, 16, 1))])
    >>> x = np.random.default_rng(0).uniform(0.2, 0.8, (6, 16, 16, 1)).astype("float32")
    >>> result = robust_dae_tf.evaluate((encoder, decoder), images=x, budgets=(0.5,), num_images=2,
    ...                                 attack_steps=20, attack_restarts=1, attack_exploration_starts=1)
    >>> round(result.mean("max_damage", 0.5, "attack_loss"), 3)
    0.5
    """
    from robust_dae_tf import attacks, reporting  # pylint: disable=import-outside-toplevel
    from robust_dae_tf.evaluation import robustness  # pylint: disable=import-outside-toplevel

    adapted = adapters.from_object(model, pixel_range=pixel_range, name=name)
    x = adapters.check_images(images, pixel_range, "images")
    if labels is None:
        labels = np.full(x.shape[0], -1, np.int64)
    num_images = min(DEFAULT_NUM_IMAGES, x.shape[0]) if num_images is None else num_images
    config = attacks.AttackConfig(steps=attack_steps, restarts=attack_restarts if attack_restarts is not None
                                  else attacks.AttackConfig().restarts, exploration_starts=attack_exploration_starts,
                                  precision=attack_precision)
    attacks.validate_config(config)
    proto = _protocol(protocol, num_images, trials, budgets, seed, config)
    latent_dim = adapters.probe(adapted, x, adapted.describe())
    adapters.set_prior(adapted, prior, latent_dim)
    if output:
        from robust_dae_tf import fileio  # pylint: disable=import-outside-toplevel

        fileio.check_writable(output, "output", directory=True)
    values: dict = {}
    report = robustness.evaluate_robustness(adapted, x, labels, proto, progress=progress, per_image_out=values,
                                            local_gain=local_gain)
    examples = report.pop("examples", None) or {}
    row = reporting.make_row(adapted.describe(), robustness=report, protocol=proto.name)
    row["model_source"] = adapters.report_fields(adapted, prior)
    result = EvaluationResult(table=reporting.table1_markdown([row]), report=report, per_image=values,
                              examples=examples, row=row)
    if figures:
        result.figures = {f"per_image_{attack}": per_image.distribution_figure(attack, budgets_, adapted.describe())
                          for attack, budgets_ in values.items()}
    if output:
        per_image.save(os.path.join(output, per_image.FILE), values, proto.trials)
        extra = per_image.plot_distributions(values, os.path.join(output, reporting.FIGURES_DIR), adapted.describe())
        reporting.write_report(output, row, examples, tensorboard=False, extra_figures=extra)
        result.output = os.path.abspath(output)
    return result


def attack(model, images, budget: float = 1.0, kind: str = "max_damage", targets=None, *, steps: int | None = None,
           restarts: int | None = None, exploration_starts: int | None = None, method: str = "pgd", seed: int = 0,
           pixel_range=(0.0, 1.0), precision: str = "float32"):
    """One attack (`attacks.run`): the perturbation d with ||d||_2 <= `budget` ([0, 1]
    pixel units) and x + d in the pixel box that maximises the damage ("max_damage",
    eq. 13: ||f(g(x + d)) - f(g(x))||) or moves the latents to the targets' ("latent",
    eq. 12: ||g(x + d) - g(x_t)||, needs `targets`). Returns an `attacks.AttackResult`
    whose `adversarial` images are in `pixel_range` and `loss` [N] is the objective.
    `precision`: the search's arithmetic, "float32", "bfloat16" or "auto"
    (`AttackConfig.precision`; the loss is always measured in float32).

    >>> import numpy as np, keras, robust_dae_tf
    >>> encoder = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten()])
    >>> decoder = keras.Sequential([keras.Input((256,)), keras.layers.Reshape((16, 16, 1))])
    >>> x = np.full((2, 16, 16, 1), 0.5, "float32")
    >>> result = robust_dae_tf.attack((encoder, decoder), x, budget=1.0, steps=20, restarts=1, exploration_starts=1)
    >>> np.round(result.loss, 3).tolist()
    [1.0, 1.0]
    """
    from robust_dae_tf import attacks  # pylint: disable=import-outside-toplevel

    adapted = adapters.from_object(model, pixel_range=pixel_range)
    x = adapters.check_images(images, pixel_range, "images")
    objective = attacks.objective(kind)
    t = None
    if objective.needs_targets:
        if targets is None:
            raise ConfigError(f"the {objective.name} attack needs targets= (one target image per image).")
        t = adapters.check_images(targets, pixel_range, "targets")
    adapters.probe(adapted, x, adapted.describe())
    config = attacks.AttackConfig(steps=steps, restarts=restarts if restarts is not None else
                                  attacks.AttackConfig().restarts, exploration_starts=exploration_starts, method=method,
                                  precision=precision)
    result = attacks.run(objective, adapted, x, budget, config, targets=t, seed=seed)
    lo, hi = adapted.pixel_range
    if (lo, hi) != (0.0, 1.0):
        result.adversarial = (lo + (hi - lo) * np.asarray(result.adversarial)).astype(np.float32)
    return result


def local_gain(model, images, kind: str = "max_damage", *, steps: int = 8, seed: int = 0, pixel_range=(0.0, 1.0)):
    """[N] local gain of `model` at each image, an attack-free robustness score
    (`evaluation.sensitivity.local_gain`): the operator norm of the Jacobian of what the
    attack `kind` compares, at the clean image: "max_damage" the reconstruction f(g(x))
    (reconstruction L2 change per unit of input L2 change, to first order), "latent" the
    latent code g(x). Input changes are measured in [0, 1] pixel units whatever
    `pixel_range` is. `steps` gradient evaluations per image; a lower gain = less sensitive.

    >>> import numpy as np, keras, robust_dae_tf
    >>> encoder = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten()])
    >>> decoder = keras.Sequential([keras.Input((256,)), keras.layers.Rescaling(3.0, offset=-1.0),
    ...                             keras.layers.Reshape((16, 16, 1))])  # f(z) = 3 z - 1: gain 3
    >>> x = np.full((2, 16, 16, 1), 0.5, "float32")
    >>> np.round(robust_dae_tf.local_gain((encoder, decoder), x), 3).tolist()
    [3.0, 3.0]
    """
    from robust_dae_tf.evaluation import sensitivity  # pylint: disable=import-outside-toplevel

    adapted = adapters.from_object(model, pixel_range=pixel_range)
    x = adapters.check_images(images, pixel_range, "images")
    adapters.probe(adapted, x, adapted.describe())
    return sensitivity.local_gain(adapted, kind, x, steps=steps, seed=seed)


def build_model(variant: str = "robust", image_shape=(32, 32, 1), overrides: dict | None = None, config=None,
                num_train_examples: int | None = None):
    """One of the project's models (`models.registry` names: gmm_dae, augmented, robust,
    vae, ...), built from a run config and compiled as bin/train.py compiles it (Adam at
    `train.learning_rate`, XLA per architecture), ready for `model.fit(x)` on float32
    images [N, H, W, C] in [0, 1] (arrays, or a `tf.data.Dataset` of image batches).

    config: a run config (default `config_lib.base_config()`, the MNIST reference
    settings); overrides: {"section.field": value}, e.g. {"model.latent_dim": 8}.
    num_train_examples: the training set size for models that need it (beta_tcvae).
    `model.save("x.keras")` / `keras.models.load_model("x.keras")` round-trip the model.

    >>> import numpy as np, robust_dae_tf
    >>> model = robust_dae_tf.build_model("gmm_dae", (32, 32, 1), {"model.hidden_units": (32,),
    ...                                   "loss.weight_estimation_batches": 2, "train.jit_compile": False})
    >>> x = np.random.default_rng(0).uniform(size=(200, 32, 32, 1)).astype("float32")
    >>> history = model.fit(x, batch_size=100, epochs=1, verbose=0)
    >>> "loss" in history.history
    True
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from robust_dae_tf import config_lib  # pylint: disable=import-outside-toplevel
    from robust_dae_tf import fit as training  # pylint: disable=import-outside-toplevel

    config = config_lib.from_dict(config.to_dict()) if config is not None else config_lib.base_config()
    config.model.variant = variant
    for dotted, value in (overrides or {}).items():
        section, _, field = dotted.rpartition(".")
        node = config
        for part in filter(None, section.split(".")):
            if part not in node:
                raise ConfigError(f"overrides: {dotted!r}: the config has no section {part!r}.")
            node = node[part]
        if field not in node:
            raise ConfigError(f"overrides: {dotted!r}: unknown field; {section or 'the config'} has "
                              f"{', '.join(sorted(node.keys()))}.")
        node[field] = tuple(value) if isinstance(value, list) else value
    config_lib.resolve_defaults(config)
    config_lib.validate(config)
    model = training.compile_model(config, tuple(int(d) for d in image_shape), tf.distribute.get_strategy())
    if num_train_examples is not None:
        model.prepare(int(num_train_examples))
    return model
