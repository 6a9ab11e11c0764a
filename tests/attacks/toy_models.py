"""Small models and helpers shared by the attack tests."""

import numpy as np
import tensorflow as tf
from scipy import optimize

SHAPE = (4, 4, 1)  # P = 16 pixels for the linear models
P = 16


class LinearModel:
    """g(x) = W x, f(z) = V z + b on flattened images."""

    def __init__(self, latent_dim=6, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(latent_dim, P)).astype(np.float32)
        self.V = rng.normal(size=(P, latent_dim)).astype(np.float32)
        self.b = rng.normal(size=P).astype(np.float32)

    def encode(self, images):
        flat = tf.reshape(tf.convert_to_tensor(images, tf.float32), [-1, P])
        return tf.matmul(flat, self.W, transpose_b=True)

    def decode(self, latents):
        out = tf.matmul(latents, self.V, transpose_b=True) + self.b
        return tf.reshape(out, [-1, *SHAPE])


class MLPModel:
    """A tiny random nonlinear autoencoder on 8x8x1 images."""

    def __init__(self, seed=0):
        tf.keras.utils.set_random_seed(seed)
        self.encoder = tf.keras.Sequential([
            tf.keras.Input((8, 8, 1)), tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(16, activation="tanh"), tf.keras.layers.Dense(4),
        ])
        self.decoder = tf.keras.Sequential([
            tf.keras.Input((4,)), tf.keras.layers.Dense(16, activation="tanh"),
            tf.keras.layers.Dense(64, activation="sigmoid"), tf.keras.layers.Reshape((8, 8, 1)),
        ])

    def encode(self, images):
        return self.encoder(images, training=False)

    def decode(self, latents):
        return self.decoder(latents, training=False)


class NaNModel(MLPModel):
    def encode(self, images):
        z = super().encode(images)
        return tf.where(tf.range(tf.shape(z)[0])[:, None] == 1, np.nan, z)


def make_mlp_images():
    """Six 8x8 images with some pixels on the box boundary, like MNIST background."""
    rng = np.random.default_rng(3)
    x = rng.random((6, 8, 8, 1)).astype(np.float32)
    x[:, :, :2] = 0.0  # some pixels on the box boundary, like MNIST background
    x[:, :, -1] = 1.0
    return x


def scipy_projection(v, x, lam):
    """The projection of v onto {||d|| <= lam} ∩ [-x, 1 - x] by SLSQP (independent of ours)."""
    res = optimize.minimize(
        lambda u: 0.5 * np.sum((u - v) ** 2), np.zeros_like(v), jac=lambda u: u - v, method="SLSQP",
        bounds=list(zip(-x, 1 - x)),
        constraints=[{"type": "ineq", "fun": lambda u: lam ** 2 - u @ u, "jac": lambda u: -2 * u}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return res.x


def random_cases(rng, count, p=8):
    for _ in range(count):
        x = rng.random(p)
        x[rng.random(p) < 0.3] = 0.0
        x[rng.random(p) < 0.2] = 1.0
        v = rng.normal(size=p) * rng.uniform(0.1, 3.0)
        yield x, v, rng.uniform(0.1, 2.0)
