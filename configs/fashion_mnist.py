"""Fashion-MNIST (32x32x1, zero-padded) with the reference's hyperparameters.

As MNIST but 100 epochs. The reference's config.ini lists image_loss_weight = 5e-4 for
Fashion-MNIST, which would switch off reconstruction next to the ~1-weighted
regularizers; we read it as a typo of MNIST's 500 and use 500.
"""

from robust_dae_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.dataset = "fashion_mnist"
    config.train.epochs = 100
    return config
