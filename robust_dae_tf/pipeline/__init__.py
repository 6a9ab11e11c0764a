"""The pipeline layer: TFX-style components that read and write typed artifacts on disk,
and the two functions that run them (what `bin/train.py` and `bin/evaluate.py` call).

    artifacts   Artifact, the artifact.json marker, Component (the base of every stage),
                write_artifact, reading an Examples artifact (load_examples)
    training    ExampleGen -> Trainer -> Exporter, run_training_pipeline
    evaluation_inputs  the SavedModel artifact, loading and validating the model
    evaluators  RobustnessEvaluator, ClassifierEvaluator, FidEvaluator
    evaluation  run_evaluation_pipeline (re-exports the components and the settings)
    grid        what a sweep runs: Point, parse_grid, make_points, parse_settings
    experiments sweeps: run_point (train -> export -> evaluate one point, resumable),
                run_sweep (local or Ray engine), the sweep's report

The layers below (data, models, the fit loop, attacks, metrics, `evaluation`) take arrays, datasets and
configs and return results; reading and writing artifacts happens here.

The names below are re-exported lazily (`from robust_dae_tf import pipeline;
pipeline.run_training_pipeline(...)`): importing this package does not import
TensorFlow, so a script can check its flags first.
"""

from __future__ import annotations

from robust_dae_tf.lazy import lazy_exports

_EXPORTS = {
    "artifacts": ("Artifact", "MARKER", "Component", "DamagedMarkerError", "read_artifact", "write_marker",
                  "write_artifact", "examples_damage", "load_examples"),
    "training": ("ExampleGen", "Trainer", "Exporter", "run_training_pipeline", "summary", "canonical_dataset"),
    "evaluation": ("RobustnessEvaluator", "ClassifierEvaluator", "FidEvaluator", "EvaluationSettings",
                   "run_evaluation_pipeline", "saved_model_artifact", "load_model", "robustness_pool",
                   "check_settings"),
    "experiments": ("Point", "parse_grid", "make_points", "parse_settings", "run_point", "run_sweep"),
}
__getattr__, __dir__, _LAZY_NAMES = lazy_exports(__name__, _EXPORTS)
__all__ = list(_LAZY_NAMES)
