"""CelebA (centre crop 140, resized to 64x64x3) with the base model's settings.

Convolutional nets, latent 64, K = 20 modes at 10 * e_k, Adam 2e-3 (base GMM-DAE
setting), batch 100. Not stated by the paper or reference, our choices: 50 epochs;
FGSM eps = 8/255 with step 1.25 * eps.
"""

from robust_dae_tf import config_lib


def get_config():
    config = config_lib.base_config()
    config.dataset = "celeb_a"
    config.model.architecture = "conv"
    config.model.latent_dim = 64
    config.prior.num_modes = 20
    config.train.learning_rate = 2e-3
    config.train.epochs = 50
    config.train.checkpoint_every_steps = 200
    config.adversarial.epsilon = 8 / 255
    config.adversarial.step_size = 1.25 * 8 / 255
    # Baselines: the smooth encoder's selection ball uses the same L-inf budget (our choice).
    config.se.epsilon = 8 / 255
    return config
