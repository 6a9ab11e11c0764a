"""Packaging for robust_dae_tf (adversarially robust regularized deterministic autoencoders)."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"', (HERE / "robust_dae_tf" / "__init__.py").read_text()
).group(1)

setup(
    name="robust_dae_tf",
    version=VERSION,
    description=(
        "Adversarially robust representation learning with GMM-regularized "
        "deterministic autoencoders (Keras 3 / TensorFlow)."
    ),
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["robust_dae_tf", "robust_dae_tf.*"]),
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3",
        "tf-keras>=2.16,<2.22",
        "tensorflow-probability>=0.24",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # needed by TFDS downloads
        "tensorboard>=2.16",
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.3",
        "threadpoolctl>=3.1",  # the paper attacker keeps BLAS single-threaded
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        # bin/sweep.py --engine=ray (each sweep point one Ray task, locally or on a cluster)
        "distributed": ["ray>=2.40"],
    },
)
