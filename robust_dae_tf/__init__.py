"""robust_dae_tf: adversarially robust GMM-regularized deterministic autoencoders.

Implements Saseendran et al., "Trading off Image Quality for Robustness is not
Necessary with Regularized Deterministic Autoencoders" (NeurIPS 2022) in Keras 3 /
TensorFlow: the GMM prior (`priors`), the regularization losses (`losses`), the
three model variants (`models`), data pipelines (`data`), training, export and the
TFX-style components that chain them and the evaluation (`pipeline`).
"""

__version__ = "0.1.0"
