"""The VAE-family baselines compared against Saseendran et al. (NeurIPS 2022).

Models (each registered in `robust_dae_tf.models.registry`, each module with its
`config_sections()` (defined in `models.sections`) and `build(config, image_shape)`),
all subclasses of `vae.VariationalAutoencoder`, itself a
`robust_dae_tf.models.base.Autoencoder`, that implement only their `compute_terms`:

* `vae`: VAE and beta-VAE (Kingma & Welling 2014; Higgins et al. 2017), the base class;
* `beta_tcvae`: beta-TCVAE (Chen et al. 2018);
* `lipschitz_vae`: the Lipschitz-constrained VAE of Barrett et al. (AISTATS 2022);
* `smooth_encoder`: smooth encoders, `se` (Cemgil et al., ICLR 2020);
* `avae`: the autoencoding VAE (Cemgil et al., NeurIPS 2020).

Numerical building blocks (pure functions and Keras layers):

* `vae_losses`: Gaussian KL (Kingma & Welling 2014, appendix B), Gaussian log
  density, stateless reparameterisation, the reconstruction likelihood shared by all
  VAE baselines, and the beta-TCVAE decomposition of Chen et al. (NeurIPS 2018).
* `lipschitz`: Bjorck-orthonormalised dense layers and GroupSort activations of Anil
  et al. (ICML 2019), used by the Lipschitz-constrained VAE, with their certified
  reconstruction margin.
* `wasserstein`: closed-form 2-Wasserstein distance between diagonal Gaussians and a
  log-domain Sinkhorn distance, the regulariser of the smooth encoders.
"""
