"""Numerical building blocks of the VAE-family baselines.

The baselines compared against Saseendran et al. (NeurIPS 2022) are assembled from
the pure functions and Keras layers of this package:

* `vae_losses`: Gaussian KL (Kingma & Welling 2014, appendix B), Gaussian log
  density, stateless reparameterisation, the reconstruction likelihood shared by all
  VAE baselines, and the beta-TCVAE decomposition of Chen et al. (NeurIPS 2018).
* `lipschitz`: Bjorck-orthonormalised dense layers and GroupSort activations of Anil
  et al. (ICML 2019), used by the Lipschitz-constrained VAE of Barrett et al.
  (AISTATS 2022, arXiv:2102.07559), with their certified reconstruction margin.
* `wasserstein`: closed-form 2-Wasserstein distance between diagonal Gaussians and a
  log-domain Sinkhorn distance, the regulariser of the smooth encoders of Cemgil et
  al. (ICLR 2020).

Nothing here is a model; the keras.Model subclasses are built on top of these.
"""
