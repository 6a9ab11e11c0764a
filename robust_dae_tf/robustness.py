"""Deprecated: moved to `robust_dae_tf.evaluation.robustness` (the Table 1 robustness protocol).
This module re-exports its public names for one release."""

from robust_dae_tf.evaluation.speed import attack_one_at_a_time_speedup
from robust_dae_tf.evaluation.robustness import (attack_seed, check_protocol_name,
                                                 decode_noise_seed, DEFAULT_PROTOCOL, evaluate_robustness,
                                                 MSSSIM_CONVENTION, NOISE_ADVERSARIAL, NOISE_CLEAN, NOISE_TARGET,
                                                 NUM_EXAMPLES, Protocol, PROTOCOLS, RUN_CACHE_FORMAT, select_trials,
                                                 success_levels, trial_seeds, validate_budgets)

__all__ = ["attack_one_at_a_time_speedup", "attack_seed", "check_protocol_name", "decode_noise_seed",
           "DEFAULT_PROTOCOL", "evaluate_robustness", "MSSSIM_CONVENTION", "NOISE_ADVERSARIAL", "NOISE_CLEAN",
           "NOISE_TARGET", "NUM_EXAMPLES", "Protocol", "PROTOCOLS", "RUN_CACHE_FORMAT", "select_trials",
           "success_levels", "trial_seeds", "validate_budgets"]
