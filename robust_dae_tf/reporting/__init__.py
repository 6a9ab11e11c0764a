"""Reports of an evaluation: JSON, CSV, Markdown tables (paper Tables 1 and 3), figures
(attack curves like Fig. 2, image grids like Fig. 3) and TensorBoard summaries.

Layout: `tables` (rows, Table 1 and 3 Markdown/CSV), `paper` (the published numbers and the
comparison with them), `figures`, `tensorboard`, `evaluations` (writing, reading and comparing
evaluation directories), `seeds` (rows over training seeds), `paired` (two models on the same attacked images,
image by image), `sweeps` (sweep tables, Pareto
fronts). The names below are the package's API (the API of the former reporting.py). No
module of this package imports TensorFlow at import time.

Layout of an evaluation directory (written by `bin/evaluate.py`; the three component
outputs are artifacts with `artifact.json` markers, see `robust_dae_tf.pipeline.evaluation`):

    <eval>/robustness/robustness.json   attacks: metrics per budget (+ examples.npz)
    <eval>/classifier/classifier.json   Table 3: clean / attacked accuracy
    <eval>/classifier_model/            classifier SavedModel (classify endpoint)
    <eval>/fid/fid.json                 Frechet distance of prior samples
    <eval>/summary.json                 everything above in one file (no arrays), written
                                          last by `write_report`, after all parts: an
                                          evaluation without it did not finish; a skipped
                                          part is null (see `load_evaluation`)
    <eval>/table1.md, table1.csv        Table 1 layout (one row: this model)
    <eval>/table3.md, table3.csv        Table 3 layout
    <eval>/report.md                    both tables + the figures
    <eval>/figures/attack_curves.png    Fig. 2-style curves (metric vs lambda, std bars)
    <eval>/figures/grid_latent.png      Fig. 3-style grids (rows: x, reconstruction,
    <eval>/figures/grid_max_damage.png    x_a, reconstruction of x_a, target)
    <eval>/tensorboard/                 scalars, figures and grids for TensorBoard

Every file is written to a temporary name and renamed into place.

Table 1 columns (paper convention): for each attack (`attacks.Objective.table_columns`;
the paper's two, then any other registered attack found in the reports) and budget lambda,
latent attack MS-SSIM(x_r, x~_a) with x_r = x_t (lower = more robust) and
MS-SSIM(x_r, x_a) which, as in the paper's text, compares the clean input x with the
adversarial input x_a; maximum damage MS-SSIM(x~_r, x~_a) with x~_r the clean
reconstruction (higher = more robust) and MS-SSIM(x, x_a); then the Frechet distance
with the name of its feature extractor (FID-keras-inception or FD-<dataset>-...,
see `robust_dae_tf.evaluation.fidelity`). Cells are "mean ± std" over trials (the mean alone for one
trial). MS-SSIM values are the paper convention (`metrics.msssim.ms_ssim_paper`); the
CSV also holds the standard convention, L2 distances and attack losses.

`paper_comparison_markdown` (bin/compare.py --paper=<dataset>) puts each evaluated model
under the numbers the paper published for it (`robust_dae_tf.reporting.paper`).

TensorBoard steps: `tf.summary` steps are integers, so the attack curves use
step = lambda when every budget is an integer (the paper's 1, 3, 5: the x axis then
reads lambda directly) and otherwise step = index of the budget in increasing order;
the text summary "attack_curves/step_to_lambda" records the mapping in both cases.
"""

from __future__ import annotations

from robust_dae_tf.reporting.tables import (budgets_of, DEFAULT_PROTOCOL, make_row, model_metadata, objectives_of,
                                            parse_markdown_table, PROTOCOL_TEXT, row_name, row_protocol, SPLIT_TEXT,
                                            success_levels_markdown, table1_columns, table1_csv, table1_header,
                                            table1_legend, TABLE1_LEGEND, table1_markdown, table3_csv,
                                            table3_markdown)
from robust_dae_tf.reporting.paper import (check_paper_dataset, paper_comparison_markdown, PAPER_LEGEND,
                                           PAPER_TABLE1_COLUMNS)
from robust_dae_tf.reporting.figures import (_pyplot, CHECK_DPI, CHECK_PANEL_IN, CURVES_DPI, CURVES_SIZE_IN, GRID_CELL_PX, GRID_DPI,
                                             grid_figure_size, GRID_ROW_LABELS, GRID_ROWS, GRID_TITLE_PX,
                                             image_grid_array, plot_attack_check, plot_attack_curves, plot_image_grid, save_figure)
from robust_dae_tf.reporting.tensorboard import (tensorboard_steps, write_tensorboard)
from robust_dae_tf.reporting.evaluations import (CLASSIFIER_DIR, CLASSIFIER_FILE, CLASSIFIER_MODEL_DIR, compare,
                                                 evaluation_finished, EXAMPLES_FILE, expand_evaluation_dirs, FID_DIR,
                                                 FID_FILE, FIGURES_DIR, is_finite_report, load_evaluation,
                                                 load_examples_npz, PARTS, ROBUSTNESS_DIR, ROBUSTNESS_FILE,
                                                 save_examples_npz, start_evaluation, SUMMARY_FILE, TENSORBOARD_DIR,
                                                 write_report)
from robust_dae_tf.reporting.paired import paired_comparison, paired_csv, paired_difference, paired_markdown
from robust_dae_tf.reporting.seeds import (aggregate_over_seeds, NOT_TRAINING_SETTINGS, training_seed_group)
from robust_dae_tf.reporting.sweeps import (FRONT_AXES, front_points, pareto_front, plot_sweep_front, sweep_table)

__all__ = [
    "aggregate_over_seeds", "budgets_of", "CHECK_DPI", "CHECK_PANEL_IN", "check_paper_dataset", "CLASSIFIER_DIR", "CLASSIFIER_FILE",
    "CLASSIFIER_MODEL_DIR", "compare", "CURVES_DPI", "CURVES_SIZE_IN", "DEFAULT_PROTOCOL", "evaluation_finished",
    "EXAMPLES_FILE", "expand_evaluation_dirs", "FID_DIR", "FID_FILE", "FIGURES_DIR", "FRONT_AXES", "front_points",
    "GRID_CELL_PX", "GRID_DPI", "grid_figure_size", "GRID_ROW_LABELS", "GRID_ROWS", "GRID_TITLE_PX",
    "image_grid_array", "is_finite_report", "load_evaluation", "load_examples_npz", "make_row", "model_metadata",
    "NOT_TRAINING_SETTINGS", "objectives_of", "paired_comparison", "paired_csv", "paired_difference",
    "paired_markdown", "paper_comparison_markdown", "PAPER_LEGEND", "PAPER_TABLE1_COLUMNS",
    "pareto_front", "parse_markdown_table", "PARTS", "plot_attack_check", "plot_attack_curves", "plot_image_grid", "plot_sweep_front",
    "PROTOCOL_TEXT", "ROBUSTNESS_DIR", "ROBUSTNESS_FILE", "row_name", "row_protocol", "save_examples_npz",
    "save_figure", "SPLIT_TEXT", "start_evaluation", "success_levels_markdown", "SUMMARY_FILE", "sweep_table",
    "table1_columns", "table1_csv", "table1_header", "table1_legend", "TABLE1_LEGEND", "table1_markdown",
    "table3_csv", "table3_markdown", "TENSORBOARD_DIR", "tensorboard_steps", "training_seed_group", "write_report",
    "write_tensorboard",
]
