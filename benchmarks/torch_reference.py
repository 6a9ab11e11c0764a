#!/usr/bin/env python
"""Eager PyTorch re-implementation of robust_dae_tf's training steps (benchmark only).

This file is NOT part of the `robust_dae_tf` package: neither the package nor its
tests import it. `bin/benchmark.py` starts it as a subprocess (`--serve`) to time
the same training step in eager PyTorch -- the stack of the paper's reference code --
on the same CPU, interleaved with the TensorFlow measurements. It needs
`pip install torch==2.13.0` (the CPU build).

The steps mirror the `robust_dae_tf.models` training step (`Autoencoder.train_step` around
`RegularizedAutoencoder.compute_terms`) op for op
(same networks, same losses, same number of encoder/decoder passes), written in
idiomatic eager PyTorch (no torch.compile):

* networks (MNIST, fully connected): encoder 1024 -> 200 x4 (ReLU) -> D, decoder
  D -> 200 x4 (ReLU) -> 1024 (sigmoid); Glorot-uniform weights and zero biases as
  in Keras' Dense; or (``architecture="conv"``, SVHN / CelebA) the convolutional nets
  of benchmarks/torch_conv_step.py;
* ``gmm_dae``: z = g(x); x_rec = f(z + 0.1 n); 500 * MSE + w_KS * KS(z) + w_CV * CV(z);
* ``robust``: in addition an FGSM step with random start on ||g(x + d) - g(x)||^2
  (eps 0.3, step 0.375, pixels clipped to [0, 1]), z_adv = g(x_adv), KS term
  2/3 (KS(z)/2 + KS(z_adv)/2) + 1/3 (w_2S / w_KS) * two-sample KS, and the coupled
  covariance loss of [z, z_adv] (alpha 0.5);
* KS losses sort each latent dimension over the batch and evaluate the GMM marginal
  CDF as the mixture of normal CDFs, 0.5 * (1 + erf((z - mu_k) / (sqrt(2) s)));
  the helper functions are called exactly as `robust_dae_tf.losses` calls its own
  (so z is sorted and its CDF evaluated twice per step in both implementations);
* Adam(lr 2e-4, eps 1e-7 = Keras' default) with PyTorch's default implementation;
* the loss terms are accumulated as detached running sums, like Keras' metrics.

Usage:
    python benchmarks/torch_reference.py --steps=200 --repeats=3   # standalone timing
    python benchmarks/torch_reference.py --serve                   # JSON-lines worker
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch
from torch import nn

VARIANTS = ("gmm_dae", "robust")


# -- networks --------------------------------------------------------------------


def _init_like_keras(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def build_encoder(num_pixels: int = 1024, latent_dim: int = 10, hidden=(200, 200, 200, 200)) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = num_pixels
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    layers.append(nn.Linear(width, latent_dim))
    encoder = nn.Sequential(*layers)
    encoder.apply(_init_like_keras)
    return encoder


def build_decoder(image_shape=(1, 32, 32), latent_dim: int = 10, hidden=(200, 200, 200, 200)) -> nn.Module:
    num_pixels = math.prod(image_shape)
    layers: list[nn.Module] = []
    width = latent_dim
    for units in reversed(tuple(hidden)):
        layers += [nn.Linear(width, units), nn.ReLU()]
        width = units
    layers += [nn.Linear(width, num_pixels), nn.Sigmoid(), nn.Unflatten(1, tuple(image_shape))]
    decoder = nn.Sequential(*layers)
    decoder.apply(_init_like_keras)
    return decoder


# -- prior and losses (mirror robust_dae_tf.priors / robust_dae_tf.losses) -------------


class GMMPrior:
    """K equally weighted isotropic modes; one-hot centers scale * e_k (K <= D here)."""

    def __init__(self, num_modes: int = 10, latent_dim: int = 10, scale: float = 10.0, std: float = 1.0):
        centers = torch.zeros(num_modes, latent_dim)
        for k in range(num_modes):
            centers[k, k % latent_dim] = scale if k < latent_dim else -scale
        self.centers = centers
        self.centers_t = centers.t().contiguous()  # [D, K]
        self.std = std
        centered = centers - centers.mean(0, keepdim=True)
        self.cov = std**2 * torch.eye(latent_dim) + centered.t() @ centered / num_modes

    def marginal_cdf(self, z: torch.Tensor) -> torch.Tensor:
        """F_GMM,d(z[n, d]), [N, D]: mean over modes of the normal CDFs."""
        u = (z.unsqueeze(-1) - self.centers_t) / (self.std * math.sqrt(2.0))
        return (0.5 * (1.0 + torch.erf(u))).mean(-1)

    def sample(self, n: int, generator=None) -> torch.Tensor:
        modes = torch.randint(len(self.centers), (n,), generator=generator)
        return self.centers[modes] + self.std * torch.randn(n, self.centers.shape[1], generator=generator)


def _sorted_prior_cdf(z, prior):
    return prior.marginal_cdf(torch.sort(z, dim=0).values)


def ks_loss(z, prior):
    prior_cdf = _sorted_prior_cdf(z, prior)
    n = z.shape[0]
    levels = (torch.arange(1, n + 1, dtype=z.dtype) / n)[:, None]
    return torch.mean((prior_cdf - levels) ** 2)


def _covariance(z):
    centered = z - z.mean(0, keepdim=True)
    return centered.t() @ centered / z.shape[0]


def covariance_loss(z, prior):
    return torch.mean((_covariance(z) - prior.cov) ** 2)


def augmented_ks_loss(z, z_adv, prior):
    return 0.5 * ks_loss(z, prior) + 0.5 * ks_loss(z_adv, prior)


def two_sample_ks_loss(z, z_adv, prior):
    return torch.mean((_sorted_prior_cdf(z, prior) - _sorted_prior_cdf(z_adv, prior)) ** 2)


def coupled_covariance_loss(z, z_adv, prior, coupling):
    s = prior.cov
    target = torch.cat([torch.cat([s, coupling * s], 1), torch.cat([coupling * s, s], 1)], 0)
    return torch.mean((_covariance(torch.cat([z, z_adv], 1)) - target) ** 2)


def estimate_loss_weights(prior, batch_size: int, num_batches: int = 100, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    total = {"ks": 0.0, "covariance": 0.0, "two_sample_ks": 0.0}
    with torch.no_grad():
        for _ in range(num_batches):
            z, z_other = prior.sample(batch_size, gen), prior.sample(batch_size, gen)
            total["ks"] += float(ks_loss(z, prior))
            total["covariance"] += float(covariance_loss(z, prior))
            total["two_sample_ks"] += float(two_sample_ks_loss(z, z_other, prior))
    return {k: num_batches / v for k, v in total.items()}


# -- training step ---------------------------------------------------------------------


class Trainer:
    """One model + Adam; `step(x)` is one training step of `variant` on a batch."""

    def __init__(
        self,
        variant: str,
        *,
        loss_weights: dict | None = None,
        batch_size: int = 100,
        image_shape=(1, 32, 32),
        latent_dim: int = 10,
        num_modes: int = 10,
        reconstruction_weight: float = 500.0,
        latent_noise_std: float = 0.1,
        coupling: float = 0.5,
        epsilon: float = 0.3,
        step_size: float = 0.375,
        learning_rate: float = 2e-4,
        seed: int = 0,
        architecture: str = "fc",
        conv_filters=(128, 256, 512, 1024),
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
        torch.manual_seed(seed)
        self.variant = variant
        if architecture == "conv":
            from torch_conv_step import build_conv_decoder, build_conv_encoder

            self.encoder = build_conv_encoder(tuple(image_shape), latent_dim, tuple(conv_filters))
            self.decoder = build_conv_decoder(tuple(image_shape), latent_dim, tuple(conv_filters))
        elif architecture == "fc":
            self.encoder = build_encoder(math.prod(image_shape), latent_dim)
            self.decoder = build_decoder(image_shape, latent_dim)
        else:
            raise ValueError(f"unknown architecture {architecture!r}; choose fc or conv")
        self.prior = GMMPrior(num_modes, latent_dim)
        self.weights = loss_weights or estimate_loss_weights(self.prior, batch_size)
        self.rec_weight = reconstruction_weight
        self.noise_std = latent_noise_std
        self.coupling = coupling
        self.eps = epsilon
        self.step_size = step_size
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=learning_rate, eps=1e-7)
        self.metrics: dict[str, torch.Tensor] = {}
        self.encoder.train()
        self.decoder.train()

    def _fgsm(self, x, z):
        """x_adv: one FGSM step with random start on ||g(x + d) - g(x)||^2 (eq. 6)."""
        z = z.detach()
        delta = (self.eps * (2.0 * torch.rand_like(x) - 1.0)).clamp(-x, 1.0 - x)
        delta.requires_grad_(True)
        objective = ((self.encoder(x + delta) - z) ** 2).sum()
        (grad,) = torch.autograd.grad(objective, delta)
        delta = (delta.detach() + self.step_size * grad.sign()).clamp(-self.eps, self.eps)
        return (x + delta).clamp(0.0, 1.0)

    def _track(self, values: dict) -> None:
        for name, value in values.items():
            value = value.detach()
            self.metrics[name] = self.metrics[name] + value if name in self.metrics else value

    def step(self, x: torch.Tensor) -> None:
        prior, w = self.prior, self.weights
        z = self.encoder(x)
        z_adv = None
        if self.variant == "robust":
            x_adv = self._fgsm(x, z)
            z_adv = self.encoder(x_adv)
        z_dec = z + self.noise_std * torch.randn_like(z)
        x_rec = self.decoder(z_dec)
        reconstruction = torch.mean((x - x_rec) ** 2)
        if z_adv is None:
            ks, cov, extra = ks_loss(z, prior), covariance_loss(z, prior), {}
        else:
            two_sample = two_sample_ks_loss(z, z_adv, prior)
            extra = {"two_sample_ks": two_sample, "latent_shift": torch.linalg.vector_norm(z_adv - z, dim=1).mean()}
            ratio = w["two_sample_ks"] / w["ks"]
            ks = (2.0 / 3.0) * augmented_ks_loss(z, z_adv, prior) + (1.0 / 3.0) * ratio * two_sample
            cov = coupled_covariance_loss(z, z_adv, prior, self.coupling)
        regularizer = w["ks"] * ks + w["covariance"] * cov
        loss = self.rec_weight * reconstruction + regularizer
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._track({"loss": loss, "reconstruction": reconstruction, "ks": ks, "covariance": cov, **extra})


class Workload:
    """Trainers for several variants over one synthetic data set (random uniform images).

    `image_shape` is (C, H, W); `trainer_options` go to every `Trainer` (architecture,
    latent_dim, num_modes, epsilon, step_size, ...)."""

    def __init__(self, variants, batch_size: int, loss_weights: dict | None = None, num_examples: int = 10000,
                 seed: int = 0, image_shape=(1, 32, 32), trainer_options: dict | None = None):
        gen = torch.Generator().manual_seed(seed)
        # Stored as uint8 like a real image set, converted to float per batch as our tf.data pipeline does.
        self.images = torch.randint(0, 256, (num_examples, *image_shape), dtype=torch.uint8, generator=gen)
        self.batch_size = batch_size
        self.num_batches = num_examples // batch_size
        self.gen = gen
        self.trainer_options = {"image_shape": tuple(image_shape), **(trainer_options or {})}
        self.trainers = {
            v: Trainer(v, loss_weights=loss_weights, batch_size=batch_size, seed=seed, **self.trainer_options)
            for v in variants
        }
        self.order = torch.randperm(num_examples, generator=gen)
        self.position = 0

    def _batch(self) -> torch.Tensor:
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.order), generator=self.gen)
            self.position = 0
        idx = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.images[idx].float() / 255.0

    def run(self, variant: str, steps: int) -> float:
        """Seconds for `steps` training steps (data fetch included)."""
        trainer = self.trainers[variant]
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step(self._batch())
        return time.perf_counter() - start


def parts(workload: Workload) -> dict:
    """name -> callable: the parts of the robust step that bin/benchmark.py --breakdown times."""
    trainer = workload.trainers.get("robust") or Trainer(
        "robust", batch_size=workload.batch_size, **workload.trainer_options
    )
    enc, dec, prior = trainer.encoder, trainer.decoder, trainer.prior
    x = workload._batch()
    with torch.no_grad():
        z0 = enc(x)
    z_adv0 = z0 + 0.1
    w = trainer.weights

    def regularizer():
        z, z_adv = z0.clone().requires_grad_(True), z_adv0.clone().requires_grad_(True)
        ratio = w["two_sample_ks"] / w["ks"]
        ks = (2.0 / 3.0) * augmented_ks_loss(z, z_adv, prior) + (1.0 / 3.0) * ratio * two_sample_ks_loss(z, z_adv, prior)
        value = w["ks"] * ks + w["covariance"] * coupled_covariance_loss(z, z_adv, prior, trainer.coupling)
        return torch.autograd.grad(value, [z, z_adv])

    def dec_rec():
        z = z0.clone().requires_grad_(True)
        value = trainer.rec_weight * torch.mean((x - dec(z)) ** 2)
        return torch.autograd.grad(value, [z] + list(dec.parameters()))

    def fwd_bwd():
        # Trainer.step without the optimizer: the same graph, gradients into .grad.
        trainer.optimizer.zero_grad(set_to_none=True)
        z = enc(x)
        x_adv = trainer._fgsm(x, z)
        z_adv = enc(x_adv)
        x_rec = dec(z + trainer.noise_std * torch.randn_like(z))
        ratio = w["two_sample_ks"] / w["ks"]
        two_sample = two_sample_ks_loss(z, z_adv, prior)
        ks = (2.0 / 3.0) * augmented_ks_loss(z, z_adv, prior) + (1.0 / 3.0) * ratio * two_sample
        cov = coupled_covariance_loss(z, z_adv, prior, trainer.coupling)
        loss = trainer.rec_weight * torch.mean((x - x_rec) ** 2) + w["ks"] * ks + w["covariance"] * cov
        loss.backward()

    fwd_bwd()  # leaves gradients in .grad for "adam"

    def adam():
        trainer.optimizer.step()

    def enc_fwd():
        with torch.enable_grad():
            return enc(x)

    return {
        "enc_fwd": enc_fwd,
        "enc_fwd_2n": lambda: enc(torch.cat([x, x])),
        "fgsm": lambda: trainer._fgsm(x, z0),
        "reg_closed_form_cdf": regularizer,
        "dec_rec": dec_rec,
        "fwd_bwd": fwd_bwd,
        "adam": adam,
        "train_function": lambda: trainer.step(x),
    }


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # already set (interop threads can be set only once)
            pass


def serve() -> None:
    """JSON-lines worker: {"cmd": "setup"|"run"|"quit", ...} -> one JSON reply per line."""
    workload = None
    part_fns = None
    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        try:
            if cmd == "setup":
                set_threads(int(request.get("threads", 0)))
                workload = Workload(
                    request["variants"], int(request["batch_size"]), request.get("loss_weights"),
                    num_examples=int(request.get("num_examples", 10000)),
                    image_shape=tuple(request.get("image_shape", (1, 32, 32))),
                    trainer_options=request.get("trainer_options"),
                )
                reply = {
                    "ok": True,
                    "torch_version": torch.__version__,
                    "intra_op_threads": torch.get_num_threads(),
                    "inter_op_threads": torch.get_num_interop_threads(),
                }
            elif cmd == "run":
                cpu = time.process_time()
                seconds = workload.run(request["variant"], int(request["steps"]))
                reply = {"ok": True, "seconds": seconds, "cpu_seconds": time.process_time() - cpu}
            elif cmd in ("parts", "part"):
                part_fns = part_fns or parts(workload)
                if cmd == "parts":
                    reply = {"ok": True, "parts": list(part_fns)}
                else:
                    fn = part_fns[request["part"]]
                    start, cpu = time.perf_counter(), time.process_time()
                    for _ in range(int(request["steps"])):
                        fn()
                    reply = {"ok": True, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}
            elif cmd == "quit":
                print(json.dumps({"ok": True}), flush=True)
                return
            else:
                reply = {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception as err:  # noqa: BLE001 - any failure is reported to the parent, which prints it
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(reply), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help="run as a JSON-lines worker for bin/benchmark.py")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    set_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    workload = Workload(variants, args.batch_size)
    for v in variants:
        workload.run(v, args.warmup)
    times = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            times[v].append(workload.run(v, args.steps))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for v in variants:
        rates = [args.steps * args.batch_size / t for t in times[v]]
        print(f"{v:10s} {statistics.median(rates):9.0f} images/s  (min {min(rates):.0f}, max {max(rates):.0f})")


if __name__ == "__main__":
    main()
