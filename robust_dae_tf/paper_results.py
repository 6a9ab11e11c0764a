"""Deprecated: moved to `robust_dae_tf.reporting.paper` (the published numbers and the
comparison with them). This module re-exports its names for one release."""

from robust_dae_tf.reporting.paper import (BUDGETS, COLUMNS, DATASET_TITLES, DATASETS, MODEL_ORDER, PAPER_NAMES, TABLE1,
                                           TABLE2, TABLE3, robustness_rows)

__all__ = ["BUDGETS", "COLUMNS", "DATASET_TITLES", "DATASETS", "MODEL_ORDER", "PAPER_NAMES", "TABLE1", "TABLE2", "TABLE3",
           "robustness_rows"]
