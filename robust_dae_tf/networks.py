"""Encoder and decoder builders (paper section 4, reference architectures).

Images are float32 `[N, H, W, C]` in [0, 1]; decoders end in a sigmoid so their
outputs are in [0, 1] too. The latent layer and the decoder's output layers compute
in float32 whatever the Keras dtype policy (under `train.mixed_precision` the hidden
layers compute in float16), so latents, images and every loss are float32. Encoders are deterministic: they return the latent code
`[N, D]` directly (no variance head).

* Fully connected nets (MNIST, Fashion-MNIST): encoder H*W*C -> 200 x4 (ReLU) -> D,
  decoder D -> 200 x4 (ReLU) -> H*W*C (sigmoid), widths configurable.
* Convolutional nets (SVHN 32x32x3, CelebA 64x64x3): four Conv(4x4, stride 2, same
  padding) + BatchNorm + ReLU with 128/256/512/1024 filters, then a dense layer to D;
  the decoder maps D to a (H/16, W/16, 1024) tensor, then three ConvTranspose(4x4,
  stride 2) + BN + ReLU and a last ConvTranspose to C channels with a sigmoid.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from robust_dae_tf.errors import ConfigError

ARCHITECTURES = ("fc", "conv")


def build_fc_encoder(image_shape: Sequence[int], latent_dim: int, hidden_units: Sequence[int]) -> keras.Model:
    inputs = keras.Input(tuple(image_shape), name="images")
    x = layers.Flatten()(inputs)
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    z = layers.Dense(latent_dim, name="latent", dtype="float32")(x)
    return keras.Model(inputs, z, name="encoder")


def build_fc_decoder(image_shape: Sequence[int], latent_dim: int, hidden_units: Sequence[int]) -> keras.Model:
    inputs = keras.Input((latent_dim,), name="latents")
    x = inputs
    for i, units in enumerate(reversed(tuple(hidden_units))):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
    num_pixels = 1
    for size in image_shape:
        num_pixels *= size
    x = layers.Dense(num_pixels, activation="sigmoid", name="pixels", dtype="float32")(x)
    outputs = layers.Reshape(tuple(image_shape), name="images", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="decoder")


def _check_conv_shape(image_shape, num_blocks):
    height, width, _ = image_shape
    factor = 2**num_blocks
    if height % factor or width % factor:
        raise ConfigError(
            f"convolutional nets need image sides divisible by {factor}; got {height}x{width}. "
            "Use model.architecture='fc' or resize the data."
        )


def build_conv_encoder(image_shape: Sequence[int], latent_dim: int, filters: Sequence[int]) -> keras.Model:
    _check_conv_shape(image_shape, len(filters))
    inputs = keras.Input(tuple(image_shape), name="images")
    x = inputs
    for i, num_filters in enumerate(filters):
        x = layers.Conv2D(num_filters, 4, strides=2, padding="same", name=f"conv_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    x = layers.Flatten()(x)
    z = layers.Dense(latent_dim, name="latent", dtype="float32")(x)
    return keras.Model(inputs, z, name="encoder")


def build_conv_decoder(image_shape: Sequence[int], latent_dim: int, filters: Sequence[int]) -> keras.Model:
    _check_conv_shape(image_shape, len(filters))
    height, width, channels = image_shape
    factor = 2 ** len(filters)
    inputs = keras.Input((latent_dim,), name="latents")
    top = tuple(filters)[-1]
    x = layers.Dense((height // factor) * (width // factor) * top, activation="relu", name="dense")(inputs)
    x = layers.Reshape((height // factor, width // factor, top))(x)
    for i, num_filters in enumerate(reversed(tuple(filters)[:-1])):
        x = layers.Conv2DTranspose(num_filters, 4, strides=2, padding="same", name=f"deconv_{i}")(x)
        x = layers.BatchNormalization(name=f"bn_{i}")(x)
        x = layers.ReLU(name=f"relu_{i}")(x)
    outputs = layers.Conv2DTranspose(
        channels, 4, strides=2, padding="same", activation="sigmoid", name="images", dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="decoder")


def build_networks(model_config, image_shape: Sequence[int]) -> tuple[keras.Model, keras.Model]:
    """(encoder, decoder) for the `model` block of a run config."""
    latent_dim = model_config.latent_dim
    if model_config.architecture == "fc":
        units = tuple(model_config.hidden_units)
        return (
            build_fc_encoder(image_shape, latent_dim, units),
            build_fc_decoder(image_shape, latent_dim, units),
        )
    if model_config.architecture == "conv":
        filters = tuple(model_config.conv_filters)
        return (
            build_conv_encoder(image_shape, latent_dim, filters),
            build_conv_decoder(image_shape, latent_dim, filters),
        )
    raise ConfigError(
        f"model.architecture={model_config.architecture!r} is unknown; "
        f"choose one of {', '.join(ARCHITECTURES)}."
    )
