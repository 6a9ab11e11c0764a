#!/usr/bin/env python
"""Compare evaluations: one table (rows = models) over several bin/evaluate.py outputs.

    python bin/compare.py evaluations/mnist_gmm_dae evaluations/mnist_robust
    python bin/compare.py evaluations/* --output=comparison.md
    python bin/compare.py evaluations/mnist_* --paper=mnist

Prints the Markdown (Table 1 layout, then Table 3 when classifier reports exist).
With --output=<file>.md the Markdown is written there and the CSVs next to it
(<file>_table1.csv, <file>_table3.csv). Row names come from the models' metadata
("<variant> (<dataset>)"), else the directory name.

An evaluation bin/evaluate.py did not finish (no summary.json), or one whose
recorded parts are missing or damaged, stops the comparison with one error naming
the file; parts skipped on purpose (--skip_*) show as "—".

--over_seeds puts the evaluations of models that differ only in their training seed
into one row, mean ± std over seeds (e.g. runs/evaluations/mnist_robust_s{0,1,2}).

Each row is one model under one evaluation protocol (column "Protocol": strong or
paper); a directory written by `bin/evaluate.py --protocol=both` gives both rows, side
by side. --protocol=strong|paper keeps only that protocol's rows.

--paired A B compares two models attacked on the same images, image by image: per
attack and budget, the mean difference B - A of the reported MS-SSIM, its standard error
and the number of images on which B is the more robust (`robust_dae_tf.reporting.paired`);
evaluations made with --local_gain on both sides add the paired local gain per attack.
A and B are two bin/evaluate.py outputs (same --seed, --num_images, --trials and data) or
two bin/check_attacks.py outputs (same images and seed); with --output the Markdown is
written there and the CSV next to it (<file>_paired.csv).

    python bin/compare.py --paired runs/evaluations/celeb_a_gmm_dae_s0_e20 runs/evaluations/celeb_a_robust_s0_e20

--paper=<dataset> (mnist, fashion_mnist, svhn_cropped or celeb_a) appends tables in
which each evaluated model is preceded by the numbers published for it in the paper
(Tables 1, 2 and 3 of Saseendran et al., NeurIPS 2022; `robust_dae_tf.reporting.paper`).
"""

import os

from absl import flags

from robust_dae_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output", None, "Write the Markdown table to this file (and CSVs beside it).")
flags.DEFINE_integer("digits", 3, "Decimals of the MS-SSIM cells.")
flags.DEFINE_bool("over_seeds", False, "One row per model over its training seeds: evaluations of models that "
                  "differ only in train.seed (read from each SavedModel's robust_dae_tf.json) become one row whose "
                  "cells are mean ± std over seeds.")

flags.DEFINE_enum("protocol", None, ["strong", "paper"], "Show only the rows of this evaluation protocol "
                  "(default: all).")
flags.DEFINE_bool("paired", False, "Compare exactly two directories image by image (same attacked images): "
                  "mean difference B - A of the reported MS-SSIM per attack and budget, its standard error and the "
                  "images on which B is more robust. Two bin/evaluate.py outputs or two bin/check_attacks.py outputs.")
flags.DEFINE_string("paper", None, "Also print each model next to the paper's published numbers for this "
                    "dataset: mnist, fashion_mnist, svhn_cropped or celeb_a.")


def main(argv):
    from robust_dae_tf import fileio, reporting
    from robust_dae_tf.reporting import paper as paper_results
    from robust_dae_tf.errors import ConfigError

    if FLAGS.paired:
        return _paired(argv[1:])
    if FLAGS.paper is not None and FLAGS.paper not in paper_results.DATASETS:
        raise ConfigError(f"--paper must be one of {', '.join(paper_results.DATASETS)}, got {FLAGS.paper!r}.")
    if FLAGS.output:  # before reading anything: a bad path fails at once
        stem = os.path.splitext(FLAGS.output)[0]
        outputs = {"markdown": FLAGS.output, "table1_csv": f"{stem}_table1.csv", "table3_csv": f"{stem}_table3.csv"}
        for path in outputs.values():
            fileio.check_writable(path, "--output")
    result = reporting.compare(argv[1:], digits=FLAGS.digits, paper=FLAGS.paper, protocol=FLAGS.protocol,
                               over_seeds=FLAGS.over_seeds)
    print(result["markdown"])
    if FLAGS.output:
        for key, path in outputs.items():
            fileio.write_text_atomic(path, result[key])
        print(f"Written: {', '.join(outputs.values())}")


def _paired(directories):
    from robust_dae_tf import fileio, reporting
    from robust_dae_tf.errors import ConfigError

    if len(directories) != 2:
        raise ConfigError(f"--paired compares exactly two directories (A, then B), got {len(directories)}.")
    if FLAGS.paper or FLAGS.over_seeds or FLAGS.protocol:
        raise ConfigError("--paired cannot be combined with --paper, --over_seeds or --protocol.")
    outputs = {}
    if FLAGS.output:
        outputs = {"markdown": FLAGS.output, "csv": f"{os.path.splitext(FLAGS.output)[0]}_paired.csv"}
        for path in outputs.values():
            fileio.check_writable(path, "--output")
    rows = reporting.paired_comparison(*directories)
    names = [os.path.basename(os.path.normpath(d)) for d in directories]
    result = {"markdown": reporting.paired_markdown(rows, *names, digits=FLAGS.digits),
              "csv": reporting.paired_csv(rows)}
    print(result["markdown"])
    for key, path in outputs.items():
        fileio.write_text_atomic(path, result[key])
    if outputs:
        print(f"Written: {', '.join(outputs.values())}")


if __name__ == "__main__":
    cli.run_main(main, select_config=False)
