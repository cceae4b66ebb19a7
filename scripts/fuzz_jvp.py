"""Fuzz ``method="jvp"`` against double backward: exact, or a named refusal, never a silent wrong answer.

Builds random image discriminators from a menu of layers (the allow-listed ones, the problem
operators in their other spellings, and operators outside the allow-list), runs
``fastgp.gradient_penalty`` with both methods in float64 on the same inputs and generator state,
and sorts each D into one of:

    exact      penalty, D's parameter gradients and the inputs' gradients agree to 1e-8
    refused    ``method="jvp"`` raised fastgp.forward_mode.UnsupportedOperator (or a ValueError /
               TypeError naming an argument) while double backward ran
    MISMATCH   both ran and the results differ            -> a silent wrong result: exit 1
    ERROR      jvp raised anything else (a raw torch error)  -> exit 1

    python scripts/fuzz_jvp.py --count 200 --seed 0

tests/test_forward_mode.py runs a small seeded fuzz through ``fuzz()``.
"""

from __future__ import annotations

import argparse
import random
import sys

import torch
import torch.nn.functional as F
from torch import nn

import fastgp
import fastgp.augment
from fastgp.forward_mode import UnsupportedOperator

CHANNELS, SIZE = 4, 6


class Fn(nn.Module):
    """A layer that calls ``fn`` (torch functions reached directly, the way the issue's D's do)."""

    def __init__(self, name, fn):
        super().__init__()
        self.name, self.fn = name, fn

    def forward(self, x):
        return self.fn(x)

    def extra_repr(self):
        return self.name


def _norm_shape(x):
    return list(x.shape[1:])


# Layers mapping [B, CHANNELS, SIZE, SIZE] -> the same shape.
MENU = {
    "conv": lambda: nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1),
    "conv-sn": lambda: fastgp.nn.spectral_norm(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)),
    "conv-legacy-sn": lambda: fastgp.nn.utils.spectral_norm(nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)),
    "conv-transpose": lambda: nn.ConvTranspose2d(CHANNELS, CHANNELS, 3, padding=1),
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": lambda: nn.ReLU(),
    "gelu": lambda: nn.GELU(),
    "silu": lambda: nn.SiLU(),
    "softplus": lambda: nn.Softplus(),
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "elu": lambda: nn.ELU(),
    "mish": lambda: nn.Mish(),
    "batchnorm-train": lambda: nn.BatchNorm2d(CHANNELS),
    "instancenorm": lambda: nn.InstanceNorm2d(CHANNELS, affine=True),
    "groupnorm": lambda: nn.GroupNorm(2, CHANNELS),
    "layernorm": lambda: nn.LayerNorm([CHANNELS, SIZE, SIZE]),
    "dropout": lambda: nn.Dropout(0.2),
    "avgpool": lambda: nn.AvgPool2d(3, stride=1, padding=1),
    "maxpool": lambda: nn.MaxPool2d(3, stride=1, padding=1),
    "torch.layer_norm": lambda: Fn("torch.layer_norm", lambda x: torch.layer_norm(x, _norm_shape(x))),
    "torch.batch_norm": lambda: Fn("torch.batch_norm", lambda x: torch.batch_norm(
        x, None, None, None, None, True, 0.1, 1e-5, False)),
    "torch.instance_norm": lambda: Fn("torch.instance_norm", lambda x: torch.instance_norm(
        x, None, None, None, None, True, 0.1, 1e-5, False)),
    "torch.native_layer_norm": lambda: Fn("torch.native_layer_norm", lambda x: torch.native_layer_norm(
        x, _norm_shape(x), None, None, 1e-5)[0]),
    "softmax-channels": lambda: Fn("softmax", lambda x: x.softmax(1) * CHANNELS),
    "special.softmax": lambda: Fn("special.softmax", lambda x: torch.special.softmax(x, 1) * CHANNELS),
    "softmin": lambda: Fn("softmin", lambda x: F.softmin(x, 1) * CHANNELS),
    "log_softmax": lambda: Fn("log_softmax", lambda x: F.log_softmax(x, 1)),
    "logsumexp": lambda: Fn("logsumexp", lambda x: x - torch.logsumexp(x, 1, keepdim=True)),
    "glu": lambda: Fn("glu", lambda x: torch.cat([F.glu(x, 1)] * 2, 1)),
    "logcumsumexp": lambda: Fn("logcumsumexp", lambda x: torch.logcumsumexp(x, 1)),
    "norm-p1": lambda: Fn("norm p=1", lambda x: x / (1 + torch.norm(x, p=1, dim=1, keepdim=True))),
    "norm-p2": lambda: Fn("norm p=2", lambda x: x / (1 + torch.norm(x, dim=1, keepdim=True))),
    "upsample-down": lambda: Fn("interpolate", lambda x: F.interpolate(
        F.avg_pool2d(x, 2), size=(SIZE, SIZE), mode="bilinear", align_corners=False)),
    "grid_sample": lambda: Fn("grid_sample", lambda x: F.grid_sample(
        x, torch.zeros(x.shape[0], SIZE, SIZE, 2, dtype=x.dtype), align_corners=False)),
    "translate": lambda: Fn("fastgp.augment.translate", lambda x: fastgp.augment.translate(x, ratio=0.2)),
}


def random_discriminator(rng: random.Random) -> nn.Module:
    names = [rng.choice(sorted(MENU)) for _ in range(rng.randint(1, 4))]
    layers = [nn.Conv2d(3, CHANNELS, 3, padding=1)]
    for name in names:
        layers.append(MENU[name]())
    layers += [nn.Flatten(), nn.Linear(CHANNELS * SIZE * SIZE, 1)]
    return nn.Sequential(*layers).double()


def _run(D, state, real, fake, kind, method, seed):
    D.load_state_dict(state)
    D.zero_grad(set_to_none=True)
    real, fake = real.detach().clone().requires_grad_(), fake.detach().clone().requires_grad_()
    torch.manual_seed(seed)  # dropout draws the same masks under both methods
    penalty = fastgp.gradient_penalty(D, real, fake, kind=kind, method=method,
                                      generator=torch.Generator().manual_seed(seed))
    penalty.backward()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in D.parameters()]
    return penalty.detach(), grads, real.grad, fake.grad


def _close(a, b):
    if a is None or b is None:
        return (a is None or not a.abs().any()) and (b is None or not b.abs().any())
    return torch.allclose(a, b, rtol=1e-8, atol=1e-10, equal_nan=True)


def fuzz(count: int, seed: int, verbose: bool = False) -> dict:
    """Fuzz ``count`` random D's; returns {"exact": n, "refused": n, "mismatch": [...], "error": [...]}."""
    rng = random.Random(seed)
    result = {"exact": 0, "refused": 0, "mismatch": [], "error": []}
    for case in range(count):
        torch.manual_seed(seed * 100_003 + case)
        D = random_discriminator(rng)
        kind = rng.choice(["wgan-gp", "zero-gp", "r1", "r2", "lp"])
        real = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64)
        fake = torch.randn(3, 3, SIZE, SIZE, dtype=torch.float64)
        if rng.random() < 0.2:
            real = real[:1].expand(3, -1, -1, -1)  # zero-stride input, as in the issue
        state = {k: v.clone() for k, v in D.state_dict().items()}
        described = " -> ".join(repr(m) for m in D) + f" [{kind}]"
        expected = _run(D, state, real, fake, kind, "double-backward", case)
        try:
            got = _run(D, state, real, fake, kind, "jvp", case)
        except UnsupportedOperator as error:
            result["refused"] += 1
            if verbose:
                print(f"refused  {described}: {str(error).splitlines()[0]}")
            continue
        except Exception as error:  # noqa: BLE001 - every other error is a finding
            result["error"].append(f"{described}: {type(error).__name__}: {str(error).splitlines()[0]}")
            continue
        penalty_ok = _close(got[0], expected[0])
        grads_ok = all(_close(a, b) for a, b in zip(got[1], expected[1]))
        inputs_ok = _close(got[2], expected[2]) and _close(got[3], expected[3])
        if penalty_ok and grads_ok and inputs_ok:
            result["exact"] += 1
            if verbose:
                print(f"exact    {described}")
        else:
            worst = max((a - b).abs().max().item() for a, b in zip(got[1], expected[1]))
            result["mismatch"].append(f"{described}: penalty {penalty_ok}, parameter grads {grads_ok} "
                                      f"(max |diff| {worst:.3g}), input grads {inputs_ok}")
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    result = fuzz(args.count, args.seed, args.verbose)
    for line in result["mismatch"]:
        print("MISMATCH", line)
    for line in result["error"]:
        print("ERROR   ", line)
    print(f"{args.count} random discriminators: {result['exact']} exact, {result['refused']} refused by name, "
          f"{len(result['mismatch'])} silent mismatches, {len(result['error'])} raw errors")
    return 1 if result["mismatch"] or result["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
