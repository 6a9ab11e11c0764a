"""Deprecated: moved to `robust_dae_tf.fit` (the fit loop, strategies and checkpoints; renamed so
that it no longer collides with `robust_dae_tf.pipeline.training`).
This module re-exports its public names for one release."""

from robust_dae_tf.fit import (check_run_config, CHECKPOINT_NAME, checkpoint_steps, compile_model,
                               configure_cpu_devices, diverged_training, effective_steps_per_execution,
                               make_strategy, metric_state, MIXED_PRECISION_POLICY, open_checkpoints,
                               precision_policy, record_run_config, restore_latest, set_learning_rate, STATE_FILE,
                               stopped_training, train, use_xla)

__all__ = ["check_run_config", "CHECKPOINT_NAME", "checkpoint_steps", "compile_model", "configure_cpu_devices",
           "diverged_training", "effective_steps_per_execution", "make_strategy", "metric_state",
           "MIXED_PRECISION_POLICY", "open_checkpoints", "precision_policy", "record_run_config", "restore_latest",
           "set_learning_rate", "STATE_FILE", "stopped_training", "train", "use_xla"]
