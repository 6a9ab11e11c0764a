"""Deprecated: moved to `robust_dae_tf.evaluation.downstream` (the Table 3 downstream classifier).
This module re-exports its public names for one release."""

from robust_dae_tf.evaluation.downstream import (accuracy, attacked_accuracy, build_mlp, choose_targets,
                                                 CLASSIFIER_METADATA_FILE, ClassifierConfig, encode_dataset,
                                                 encode_images, evaluate_downstream, export_classifier,
                                                 image_shape_of, load_classifier, LoadedClassifier, predict,
                                                 train_mlp)

__all__ = ["accuracy", "attacked_accuracy", "build_mlp", "choose_targets", "CLASSIFIER_METADATA_FILE",
           "ClassifierConfig", "encode_dataset", "encode_images", "evaluate_downstream", "export_classifier",
           "image_shape_of", "load_classifier", "LoadedClassifier", "predict", "train_mlp"]
