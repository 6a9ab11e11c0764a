#!/usr/bin/env python
"""Training throughput of our models and the baselines, with and without XLA, vs eager PyTorch.

    python bin/benchmark.py                        # ~2 min on an idle 2-core machine (more when busy)
    python bin/benchmark.py --steps=20 --repeats=3 --xla=off --torch=skip   # quick look
    python bin/benchmark.py --output=benchmarks/results.md                 # or .json
    python bin/benchmark.py --variants=gmm_dae,augmented,robust            # our three models only
    python bin/benchmark.py --breakdown            # + parts of the robust step and what-ifs (~5 min)

The harness (flags, workload, methodology) is benchmarks/training_benchmark.py; see
benchmarks/README.md.
"""

from __future__ import annotations

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (REPO, os.path.join(REPO, "benchmarks")):  # run from a checkout without installing
    if path not in sys.path:
        sys.path.insert(0, path)

from absl import app, flags  # noqa: E402 - after the sys.path fix above

import training_benchmark  # noqa: E402

flags.adopt_module_key_flags(training_benchmark)

if __name__ == "__main__":
    app.run(training_benchmark.main)
