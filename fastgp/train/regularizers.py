"""The registry of regularizers the trainer can switch on: the keys of the config's
``regularizers`` section.

Only regularizers that work are registered; an unknown key fails validation naming it. Each
entry declares its options (defaults, types, help, value checks) and builds an object the
training loop calls. Spectral normalization, translation augmentation / DiffAugment,
Fake-As-Real, pixel-wise combinations and sample correction are added here when their fastgp
families land (each then needs its hook in ``loop.py``: model wrapping, D-input transform,
batch selection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import losses, penalty
from ..penalty import LazyRegularizer

# Not registered yet (their fastgp families are being built): named in the error for an unknown key.
PLANNED = ("spectral-norm", "augment", "fake-as-real", "combine", "correction")


@dataclass(frozen=True)
class Option:
    default: object
    help: str
    check: Callable[[object], str | None] | None = None  # returns an error message or None


def _choice(options):
    def check(value):
        if value not in options:
            return f"must be one of {', '.join(repr(o) for o in options)}; got {value!r}"
        return None

    return check


def _at_least(minimum):
    def check(value):
        return None if value >= minimum else f"must be >= {minimum}, got {value}"

    return check


class GradientPenalty:
    """``fastgp.gradient_penalty`` on D, every ``interval`` D steps with gain ``interval`` (lazy)."""

    KINDS = ("none",) + tuple(penalty.KINDS)
    OPTIONS = {
        "kind": Option("zero-gp", "penalty kind: " + ", ".join(KINDS), _choice(KINDS)),
        "weight": Option(1.0, "penalty weight λ (no hidden ½)", _at_least(0.0)),
        "interval": Option(1, "lazy regularization: apply every N discriminator steps with gain N", _at_least(1)),
    }

    def __init__(self, cfg: dict):
        self.kind = cfg["kind"]
        self.weight = cfg["weight"]
        self.lazy = LazyRegularizer(cfg["interval"])

    @property
    def enabled(self) -> bool:
        return self.kind != "none" and self.weight > 0

    def adjust_optimizer(self, d_opt: torch.optim.Optimizer) -> None:
        # StyleGAN2's lazy-regularization optimizer correction; a no-op ratio for interval 1.
        if self.enabled and self.lazy.interval > 1:
            self.lazy.adjust_optimizer(d_opt)

    def d_loss(self, D, real, fake, d_loss_fn, d_step: int, generator: torch.Generator):
        """D's main loss plus the penalty when due; returns (total, main loss, penalty or None)."""
        if not (self.enabled and self.lazy.due(d_step)):
            main = d_loss_fn(D(real), D(fake))
            return main, main, None
        if self.kind == "r1":
            # One D forward serves the main loss and R1 (the shared-forward pattern).
            real = real.detach().requires_grad_(True)
            real_logits = D(real)
            main = d_loss_fn(real_logits, D(fake))
            gp = penalty.r1_penalty(real_logits, real, self.weight)
        else:
            main = d_loss_fn(D(real), D(fake))
            gp = penalty.gradient_penalty(D, real, fake, kind=self.kind, weight=self.weight, generator=generator)
        return main + self.lazy.gain * gp, main, gp


@dataclass(frozen=True)
class Entry:
    options: dict
    build: Callable[[dict], object]


REGISTRY = {"penalty": Entry(GradientPenalty.OPTIONS, GradientPenalty)}

# Losses configurable by name: the custom "lgan" pair needs Python functions (phi, varphi).
LOSS_NAMES = tuple(n for n in losses.NAMES if n != "lgan")
