"""Frechet distance between Gaussians fitted to feature sets (the FID formula).

This is the Frechet distance of Heusel et al. 2017 ("GANs trained by a two time-scale
update rule converge to a local Nash equilibrium"):

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)),

computed in-project in float64 with NumPy / SciPy because tensorflow-gan (the usual
TensorFlow implementation) does not import on TensorFlow >= 2.16. It follows
pytorch-fid's ``calculate_frechet_distance``: the matrix square root is
``scipy.linalg.sqrtm``; if ``sigma1 @ sigma2`` is singular or the square root is not
finite or not accurate, ``eps * I`` is added to both covariances and the square root is
retried (a ``RuntimeWarning`` says so); a negligible imaginary part (max |imag| of
the diagonal <= 1e-3) is dropped, a larger one raises ``DataError``.

Which features (Inception pool3, a classifier's penultimate layer, ...) and how many
samples are used is the caller's choice; the distance is only comparable between runs
that use the same feature extractor and sample sizes.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from robust_dae_tf.errors import ConfigError, DataError

# Relative residual ||S @ S - A|| / ||A|| above which sqrtm is considered to have failed.
_SQRTM_RTOL = 1e-6
_IMAG_ATOL = 1e-3


def _as_float64(value, name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"Frechet distance: {name} must be a real numeric array ({exc}).") from exc
    if ndim == 1:
        arr = np.atleast_1d(arr)
    else:
        arr = np.atleast_2d(arr)
    if arr.ndim != ndim:
        kind = "a vector [F]" if ndim == 1 else "a matrix [F, F]"
        raise DataError(f"Frechet distance: {name} must be {kind}; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise DataError(
            f"Frechet distance: {name} contains NaN or Inf; check the features it was "
            f"computed from (a diverged model or an empty / corrupt batch)."
        )
    return arr


def _checked_sqrtm(matrix: np.ndarray) -> tuple[np.ndarray, bool]:
    """``scipy.linalg.sqrtm`` plus whether it succeeded (non-singular, finite, accurate)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        root = linalg.sqrtm(matrix)
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    root = np.asarray(root)
    if singular or not np.all(np.isfinite(root)):
        return root, False
    scale = max(np.linalg.norm(matrix), np.finfo(np.float64).tiny)
    residual = np.linalg.norm(root @ root - matrix) / scale
    return root, bool(residual <= _SQRTM_RTOL)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), as a Python float.

    ``mu*`` are ``[F]`` means, ``sigma*`` ``[F, F]`` covariances (symmetric PSD).
    All arithmetic is float64. Raises ``DataError`` on shape mismatch, non-square
    covariances, NaN / Inf inputs, or a significant imaginary part of the matrix
    square root, and ``ConfigError`` for a non-positive ``eps``.
    """
    try:
        eps_value = float(eps)
    except (TypeError, ValueError):
        eps_value = float("nan")
    if not (np.isfinite(eps_value) and eps_value > 0):
        raise ConfigError(
            f"Frechet distance: eps is the diagonal offset for singular covariances and "
            f"must be a positive number such as 1e-6; got {eps!r}."
        )
    eps = eps_value
    mu1 = _as_float64(mu1, "mu1", 1)
    mu2 = _as_float64(mu2, "mu2", 1)
    sigma1 = _as_float64(sigma1, "sigma1", 2)
    sigma2 = _as_float64(sigma2, "sigma2", 2)
    if mu1.shape != mu2.shape:
        raise DataError(
            f"Frechet distance: mu1 and mu2 must have the same length (same feature "
            f"extractor); got {mu1.shape} and {mu2.shape}."
        )
    dim = mu1.shape[0]
    for name, sigma in (("sigma1", sigma1), ("sigma2", sigma2)):
        if sigma.shape != (dim, dim):
            raise DataError(
                f"Frechet distance: {name} must be the [{dim}, {dim}] covariance matching "
                f"the means; got shape {sigma.shape}."
            )

    diff = mu1 - mu2
    covmean, ok = _checked_sqrtm(sigma1 @ sigma2)
    if not ok:
        warnings.warn(
            f"Frechet distance: sigma1 @ sigma2 is singular (or its square root is "
            f"inaccurate); adding {eps:g} * I to both covariances. Use more samples than "
            f"feature dimensions to avoid this.",
            RuntimeWarning,
            stacklevel=2,
        )
        offset = np.eye(dim) * eps
        covmean, ok = _checked_sqrtm((sigma1 + offset) @ (sigma2 + offset))
        if not np.all(np.isfinite(covmean)):
            raise DataError(
                "Frechet distance: the matrix square root of the covariance product is "
                "not finite even after adding eps * I; the covariances are degenerate. "
                "Use more samples or a larger eps."
            )
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag)
        if not np.allclose(imag, 0.0, atol=_IMAG_ATOL):
            raise DataError(
                f"Frechet distance: the matrix square root has an imaginary component of "
                f"{np.max(np.abs(covmean.imag)):.3g}; the covariances are probably not "
                f"symmetric positive semi-definite (compute them with feature_statistics)."
            )
        covmean = covmean.real
    distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(distance)


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[F]`` and covariance ``[F, F]`` (divided by N - 1) of ``[N, F]`` features.

    Both are float64. Needs N >= 2 samples; raises ``DataError`` otherwise and for
    non-2-D or non-finite input.
    """
    try:
        feats = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"Frechet distance: features must be a numeric [N, F] array ({exc})."
        ) from exc
    if feats.ndim != 2:
        raise DataError(
            f"Frechet distance: features must be a 2-D array [N samples, F features]; "
            f"got shape {feats.shape}. Flatten or pool the feature maps first."
        )
    if feats.shape[0] < 2:
        raise DataError(
            f"Frechet distance: need at least 2 feature vectors to estimate a covariance; "
            f"got {feats.shape[0]}."
        )
    if feats.shape[1] < 1:
        raise DataError(f"Frechet distance: features have zero columns (shape {feats.shape}).")
    if not np.all(np.isfinite(feats)):
        raise DataError(
            "Frechet distance: features contain NaN or Inf; check the model that produced them."
        )
    mu = feats.mean(axis=0)
    sigma = np.atleast_2d(np.cov(feats, rowvar=False))
    return mu, sigma


def frechet_distance_from_features(features1, features2, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two ``[N, F]`` feature sets."""
    mu1, sigma1 = feature_statistics(features1)
    mu2, sigma2 = feature_statistics(features2)
    if mu1.shape != mu2.shape:
        raise DataError(
            f"Frechet distance: both feature sets must have the same number of features "
            f"(same extractor); got {mu1.shape[0]} and {mu2.shape[0]}."
        )
    return frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)
