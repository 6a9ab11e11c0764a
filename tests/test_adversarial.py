import numpy as np
import tensorflow as tf

from robust_dae_tf import adversarial


class Linear:
    """g(x) = W vec(x): the FGSM gradient has the closed form 2 W^T W delta."""

    def __init__(self, w):
        self.w = tf.constant(w, tf.float32)

    def __call__(self, x, training=False):
        return tf.matmul(tf.reshape(x, [tf.shape(x)[0], -1]), self.w, transpose_b=True)


def test_fgsm_step_matches_closed_form_on_linear_encoder():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 16))
    x = rng.uniform(0.2, 0.8, size=(5, 4, 4, 1)).astype(np.float32)
    delta0 = rng.uniform(-0.1, 0.1, size=x.shape).astype(np.float32)
    encoder = Linear(w)
    z = encoder(tf.constant(x))
    x_adv = adversarial.fgsm_latent_adversarial(encoder, tf.constant(x), z, 0.3, 0.375, tf.constant(delta0)).numpy()
    grad = 2 * delta0.reshape(5, -1) @ w.T @ w  # d/d delta ||W delta||^2
    expected_delta = np.clip(delta0.reshape(5, -1) + 0.375 * np.sign(grad), -0.3, 0.3)
    expected = np.clip(x.reshape(5, -1) + expected_delta, 0, 1).reshape(x.shape)
    np.testing.assert_allclose(x_adv, expected, atol=1e-6)


def test_fgsm_without_random_start_on_linear_encoder_is_a_no_op():
    # At delta = 0 the gradient of ||W delta||^2 is 0 and sign(0) = 0: no move.
    x = np.random.default_rng(1).uniform(size=(2, 4, 4, 1)).astype(np.float32)
    encoder = Linear(np.random.default_rng(2).normal(size=(3, 16)))
    x_adv = adversarial.fgsm_latent_adversarial(encoder, tf.constant(x), encoder(x), 0.3, 0.375)
    np.testing.assert_array_equal(x_adv.numpy(), x)


def test_fgsm_output_stays_in_eps_ball_and_pixel_range():
    rng = np.random.default_rng(3)
    x = rng.choice([0.0, 1.0, 0.5], size=(8, 8, 8, 1)).astype(np.float32)  # saturated pixels
    mlp = tf.keras.Sequential([tf.keras.layers.Flatten(), tf.keras.layers.Dense(16, activation="tanh"), tf.keras.layers.Dense(4)])
    u = tf.random.stateless_uniform(x.shape, seed=[1, 2], minval=-1, maxval=1)
    start = adversarial.random_start(tf.constant(x), 0.3, u)
    assert np.all((x + start.numpy() >= 0) & (x + start.numpy() <= 1))
    x_adv = adversarial.fgsm_latent_adversarial(mlp, tf.constant(x), mlp(x), 0.3, 0.375, start).numpy()
    assert np.abs(x_adv - x).max() <= 0.3 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert np.abs(x_adv - x).max() > 0.29  # the step reaches the budget somewhere


def test_fgsm_increases_latent_displacement_over_its_random_start():
    rng = np.random.default_rng(4)
    x = rng.uniform(0.1, 0.9, size=(32, 8, 8, 1)).astype(np.float32)
    mlp = tf.keras.Sequential([tf.keras.layers.Flatten(), tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(4)])
    z = mlp(x)
    start = adversarial.random_start(tf.constant(x), 0.1, tf.random.stateless_uniform(x.shape, [3, 4], -1, 1))
    moved_start = np.sum((mlp(x + start) - z).numpy() ** 2)
    x_adv = adversarial.fgsm_latent_adversarial(mlp, tf.constant(x), z, 0.1, 0.125, start)
    assert np.sum((mlp(x_adv) - z).numpy() ** 2) > 2 * moved_start
