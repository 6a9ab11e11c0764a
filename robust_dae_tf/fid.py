"""Deprecated: moved to `robust_dae_tf.evaluation.fidelity` (the Frechet distance).
This module re-exports its public names for one release."""

from robust_dae_tf.evaluation.fidelity import (AUTO_MAX_EPOCHS, AUTO_MIN_EPOCHS, AUTO_MIN_STEPS,
                                               DatasetClassifierFeatures, default_feature_cache, feature_task,
                                               feature_training_data, FeatureExtractor, frechet_score, FrechetResult,
                                               INCEPTION_SIZE, InceptionFeatures, prior_moments, sample_prior,
                                               train_feature_classifier)

__all__ = ["AUTO_MAX_EPOCHS", "AUTO_MIN_EPOCHS", "AUTO_MIN_STEPS", "DatasetClassifierFeatures",
           "default_feature_cache", "feature_task", "feature_training_data", "FeatureExtractor", "frechet_score",
           "FrechetResult", "INCEPTION_SIZE", "InceptionFeatures", "prior_moments", "sample_prior",
           "train_feature_classifier"]
