"""SVHN (cropped digits, 32x32x3) with the base model's settings.

Convolutional nets (4 x Conv 4x4/2 with 128-1024 filters + BN + ReLU), latent 100,
K = 10 modes at 10 * e_k, Adam 2e-3 (base GMM-DAE setting), batch 100.
Not stated by the paper or reference, our choices: 100 epochs; FGSM eps = 8/255 with
step 1.25 * eps (the usual L-inf budget for colour images), also the smooth-encoder
baseline's selection radius (`se.epsilon`).
"""

from robust_dae_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.dataset = "svhn_cropped"
    config.model.architecture = "conv"
    config.model.latent_dim = 100
    config.prior.num_modes = 10
    config.train.learning_rate = 2e-3
    config.train.epochs = 100
    config.adversarial.epsilon = 8 / 255
    config.adversarial.step_size = 1.25 * 8 / 255
    # Baselines: the smooth encoder's selection ball uses the same L-inf budget (our choice).
    config.se.epsilon = 8 / 255
    return config
