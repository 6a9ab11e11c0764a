"""Convolutional nets of robust_dae_tf (SVHN 32x32x3, CelebA 64x64x3) in PyTorch (benchmark only).

NOT part of the `robust_dae_tf` package: neither the package nor its tests import it.
`benchmarks/torch_reference.py` builds its eager PyTorch training steps (gmm_dae and
robust: reconstruction, FGSM adversarial example, KS + covariance + coupled terms, Adam)
on these nets when `bin/benchmark.py --dataset=svhn_cropped|celeb_a` asks for the conv
architecture, so the PyTorch step does the same work per step as ours.

The nets mirror `robust_dae_tf.networks.build_conv_encoder` / `build_conv_decoder`
layer for layer (NCHW instead of Keras' NHWC):

* encoder: four Conv(4x4, stride 2, "same" padding = 1 on each side for even sides)
  + BatchNorm + ReLU with `filters` (128/256/512/1024) channels, flatten, Dense -> D;
* decoder: Dense D -> (H/16 * W/16 * 1024) + ReLU, reshape, three ConvTranspose(4x4,
  stride 2, padding 1: doubles the side like Keras' "same") + BatchNorm + ReLU with
  512/256/128 channels, a last ConvTranspose to C channels and a sigmoid;
* BatchNorm with Keras' defaults (epsilon 1e-3, moving averages with momentum 0.99 =
  PyTorch momentum 0.01); Glorot-uniform weights and zero biases as Keras.

    python benchmarks/torch_conv_step.py --image_shape=3,32,32 --steps=3   # time the robust step alone
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch
from torch import nn

FILTERS = (128, 256, 512, 1024)


def _init_like_keras(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def _batch_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


def _check(image_shape, filters):
    channels, height, width = image_shape
    factor = 2 ** len(filters)
    if height % factor or width % factor:
        raise ValueError(f"conv nets need image sides divisible by {factor}; got {height}x{width}")
    return channels, height // factor, width // factor


def build_conv_encoder(image_shape=(3, 32, 32), latent_dim: int = 100, filters=FILTERS) -> nn.Module:
    channels, top_h, top_w = _check(image_shape, filters)
    layers: list[nn.Module] = []
    width = channels
    for num_filters in filters:
        layers += [nn.Conv2d(width, num_filters, 4, stride=2, padding=1), _batch_norm(num_filters), nn.ReLU()]
        width = num_filters
    layers += [nn.Flatten(), nn.Linear(top_h * top_w * width, latent_dim)]
    encoder = nn.Sequential(*layers)
    encoder.apply(_init_like_keras)
    return encoder


def build_conv_decoder(image_shape=(3, 32, 32), latent_dim: int = 100, filters=FILTERS) -> nn.Module:
    channels, top_h, top_w = _check(image_shape, filters)
    top = tuple(filters)[-1]
    layers: list[nn.Module] = [nn.Linear(latent_dim, top_h * top_w * top), nn.ReLU(), nn.Unflatten(1, (top, top_h, top_w))]
    width = top
    for num_filters in reversed(tuple(filters)[:-1]):
        layers += [nn.ConvTranspose2d(width, num_filters, 4, stride=2, padding=1), _batch_norm(num_filters), nn.ReLU()]
        width = num_filters
    layers += [nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid()]
    decoder = nn.Sequential(*layers)
    decoder.apply(_init_like_keras)
    return decoder


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_reference

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image_shape", default="3,32,32", help="C,H,W (3,32,32: SVHN; 3,64,64: CelebA)")
    parser.add_argument("--latent_dim", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--variant", default="robust", choices=torch_reference.VARIANTS)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.image_shape.split(","))
    workload = torch_reference.Workload(
        [args.variant], args.batch_size, image_shape=shape, num_examples=4 * args.batch_size,
        trainer_options={"architecture": "conv", "latent_dim": args.latent_dim},
    )
    workload.run(args.variant, 1)
    start = time.perf_counter()
    workload.run(args.variant, args.steps)
    seconds = (time.perf_counter() - start) / args.steps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: {args.variant} conv step "
          f"{math.prod(shape)} px, batch {args.batch_size}: {seconds:.3f} s/step, {args.batch_size / seconds:.1f} images/s")


if __name__ == "__main__":
    main()
