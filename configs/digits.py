"""The embedded default: scikit-learn's bundled 8x8 digits brought to 32x32x1.

No download needed; the MNIST architecture and loss settings, sized to train a
robust model in about a minute on a laptop CPU (1500 training images).
"""

from robust_dae_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.dataset = "digits"
    config.train.epochs = 40
    config.train.learning_rate = 1e-3
    config.train.checkpoint_every_steps = 100
    config.train.log_every_steps = 15
    config.train.images_every_epochs = 5
    config.train.validation_examples = 0
    return config
