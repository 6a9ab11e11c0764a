"""MNIST (32x32x1, zero-padded from 28x28) with the reference's hyperparameters.

Fully connected nets 1024 -> 200 x4 -> 10, K = 10 modes at 10 * e_k, std 1, batch 100,
Adam 2e-4, 500 epochs, lambda_REC = 500, latent noise 0.1, FGSM eps 0.3 / step 0.375.
Override any field on the command line, e.g. --config.train.epochs=50.
"""

from robust_dae_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.dataset = "mnist"
    config.train.epochs = 500
    return config
