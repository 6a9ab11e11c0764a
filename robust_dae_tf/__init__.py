"""robust_dae_tf: adversarially robust GMM-regularized deterministic autoencoders.

Implements Saseendran et al., "Trading off Image Quality for Robustness is not
Necessary with Regularized Deterministic Autoencoders" (NeurIPS 2022) in Keras 3 /
TensorFlow: the GMM prior (`priors`), the regularization losses (`losses`), the
three model variants (`models`), data sources and pipelines (`data`), the fit loop
(`fit`), export, the evaluation's measurements (`evaluation`) and reports (`reporting`),
and the TFX-style components that chain them (`pipeline`).
"""

import os

# TensorFlow's oneDNN kernels (convolutions, matmuls outside XLA) are on by default only on
# CPUs with AVX-512 VNNI / AMX-class features; elsewhere (e.g. AMD EPYC) TensorFlow 2.21
# leaves them off, and our conv training steps then run ~4.5x slower (benchmarks/README.md).
# TensorFlow reads the variable once, when it is imported, so it is set here, before any
# module of the package imports TensorFlow; a value the user set (TF_ENABLE_ONEDNN_OPTS=0
# to switch them off) is kept, and it has no effect if TensorFlow was imported first.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
os.environ.setdefault(ONEDNN_ENV, "1")

__version__ = "0.1.0"

# TensorFlow's C++ libraries print start-up lines while `import tensorflow` runs ("WARNING: All
# log messages before absl::InitializeLog() is called ...", oneDNN / cudart "I0000" notes), before
# TF_CPP_MIN_LOG_LEVEL is read, so that variable cannot hide them. `tf_startup` captures the
# file descriptor 2 around the first import of TensorFlow and passes on every other line;
# ROBUST_DAE_TF_VERBOSE_TF=1 shows them (and TensorFlow's C++ INFO log).
from robust_dae_tf import tf_startup as _tf_startup  # noqa: E402

_tf_startup.install()

# The Python API (robust_dae_tf.api), imported on first use so `import robust_dae_tf` stays free
# of TensorFlow (the scripts' cheap flag checks run before it is imported).
from robust_dae_tf.lazy import lazy_exports  # noqa: E402

__getattr__, __dir__, _API = lazy_exports(
    __name__, {"api": ("evaluate", "attack", "local_gain", "build_model", "EvaluationResult")})


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter (CUDA probes on CPU machines, oneDNN notes):
    `tf_startup.install()`, which importing the package already did; ROBUST_DAE_TF_VERBOSE_TF=1
    shows it. Here, not in `cli`, so that a sweep's workers (`pipeline.experiments`) call it
    without importing the command line module (`cli.quiet_tensorflow` is this function)."""
    _tf_startup.install()
