"""A prior declared by the user (`--prior`, `robust_dae_tf.evaluate(prior=...)`), for models
whose SavedModel metadata names none: read, validated and described, without TensorFlow
(the evaluation's cheap flag checks run it before TensorFlow is imported).

Forms: "standard_normal" (N(0, I) of the model's latent size), or a JSON file (or dict)
describing a Gaussian mixture whose modes share one std,

    {"type": "gmm", "weights": [K numbers >= 0, sum 1], "means": [K lists of D numbers],
     "stds": [K equal numbers > 0]}

returned in the form of the project's metadata prior ({"type": "gmm", "centers", "std",
"weights", ...}) so `priors.GMMPrior` samples it. The dimension D must equal the model's
latent size (`resolve_prior`). Every problem is one ConfigError naming --prior and the file.
"""

from __future__ import annotations

import json
import os

import numpy as np

from robust_dae_tf.errors import ConfigError, first_line

STANDARD_NORMAL = "standard_normal"
PRIOR_JSON_EXAMPLE = {"type": "gmm", "weights": [0.5, 0.5], "means": [[-2.0, 0.0], [2.0, 0.0]], "stds": [1.0, 1.0]}


def read_prior_spec(spec) -> dict | None:
    """The prior `spec` names, as a description with "latent_dim" still to be checked:
    None -> None; "standard_normal" -> {"type": "normal"}; a JSON file path (or a dict) ->
    the GMM, validated (module docstring) -> {"type": "gmm", "centers", "std", "weights"}.
    One ConfigError naming --prior and the file for anything else."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str) and spec.strip().lower() in (STANDARD_NORMAL, "normal"):
        return {"type": "normal"}
    source = "the prior"
    if isinstance(spec, str):
        source = f"--prior={spec}"
        if not os.path.isfile(spec):
            raise ConfigError(f"{source}: no such file; pass --prior=standard_normal or a JSON file like "
                              f"{json.dumps(PRIOR_JSON_EXAMPLE)}.")
        try:
            with open(spec) as f:
                spec = json.load(f)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{source} is not readable JSON ({first_line(err)}).") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{source} must be a JSON object like {json.dumps(PRIOR_JSON_EXAMPLE)}, got a "
                          f"{type(spec).__name__}.")
    kind = str(spec.get("type", "gmm")).lower()
    if kind in (STANDARD_NORMAL, "normal"):
        return {"type": "normal"}
    if kind != "gmm":
        raise ConfigError(f"{source}: type {spec.get('type')!r} is unknown; use \"gmm\" (weights, means, stds) or "
                          "--prior=standard_normal.")
    missing = [key for key in ("weights", "means", "stds") if key not in spec]
    if missing:
        raise ConfigError(f"{source} lacks {', '.join(missing)}; a GMM prior is "
                          f"{json.dumps(PRIOR_JSON_EXAMPLE)} (K weights, K x D means, K stds).")
    try:
        weights = np.asarray(spec["weights"], np.float64)
        means = np.asarray(spec["means"], np.float64)
        stds = np.asarray(spec["stds"], np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: weights, means and stds must be numbers (lists of numbers).") from None
    if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
        raise ConfigError(f"{source}: means must be a K x D list of lists, got shape {means.shape}.")
    k = means.shape[0]
    if weights.shape != (k,) or stds.reshape(-1).shape not in ((k,), (1,)):
        raise ConfigError(f"{source}: {k} means need {k} weights and {k} stds, got {weights.size} weights and "
                          f"{stds.size} stds.")
    if not (np.isfinite(weights).all() and np.isfinite(means).all() and np.isfinite(stds).all()):
        raise ConfigError(f"{source}: weights, means and stds must be finite numbers.")
    if (weights < 0).any() or not np.isclose(weights.sum(), 1.0, atol=1e-6):
        raise ConfigError(f"{source}: weights must be >= 0 and sum to 1, got {weights.tolist()} (sum "
                          f"{weights.sum():.6g}).")
    stds = stds.reshape(-1)
    if (stds <= 0).any():
        raise ConfigError(f"{source}: stds must be > 0, got {stds.tolist()}.")
    if not np.allclose(stds, stds[0]):
        raise ConfigError(f"{source}: stds differ between modes ({stds.tolist()}); this version samples mixtures "
                          "whose modes share one std (priors.GMMPrior), give the same std for every mode.")
    return {"type": "gmm", "centers": means.tolist(), "std": float(stds[0]), "weights": weights.tolist(),
            "num_modes": int(k), "latent_dim": int(means.shape[1])}


def resolve_prior(spec, latent_dim: int, source: str = "--prior") -> dict | None:
    """`read_prior_spec(spec)` with its dimension set or checked against the model's
    `latent_dim` (ConfigError when a GMM's means have another dimension)."""
    prior = read_prior_spec(spec)
    if prior is None:
        return None
    if prior["type"] == "normal":
        return {"type": "normal", "latent_dim": int(latent_dim)}
    if prior["latent_dim"] != int(latent_dim):
        raise ConfigError(f"{source}: the prior's means are {prior['latent_dim']}-dimensional but the model's latents "
                          f"have {int(latent_dim)} dimensions; give means of length {int(latent_dim)}.")
    return prior


def describe_prior(prior: dict | None) -> str | None:
    """A short text for reports: "standard_normal (D=8)", "gmm (K=10, D=8)", or None."""
    if not prior:
        return None
    if str(prior.get("type")).lower() == "normal":
        return f"standard_normal (D={prior.get('latent_dim')})"
    centers = prior.get("centers") or []
    return f"gmm (K={len(centers)}, D={len(centers[0]) if centers else '?'})"
