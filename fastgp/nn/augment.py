"""``Augment``: random translation (or a DiffAugment policy) as a module, for discriminator wrappers."""

from __future__ import annotations

import torch
from torch import nn

from .. import augment as _augment
from .._checks import choice, integer, real_number
from ..reference.augment import PADDINGS


class Augment(nn.Module):
    """Augments images before a discriminator, in training mode only (identity in eval mode).

    ``Augment(copies=K, ratio=0.125, padding="zeros", include_original=False)`` returns the
    [B·K, C, H, W] output of ``fastgp.augment.translate``; ``Augment(policy="color,translation,cutout")``
    applies ``fastgp.augment.DiffAugment`` instead (one output per sample). ``generator`` makes the draws
    reproducible. In eval mode the input is returned unchanged (one copy), so evaluation sees clean images.
    """

    def __init__(
        self,
        copies: int = 1,
        ratio: float = 0.125,
        max_shift: int | tuple[int, int] | None = None,
        padding: str = "zeros",
        include_original: bool = False,
        policy: str | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.copies = integer(copies, "copies", minimum=1)
        self.ratio = real_number(ratio, "ratio")
        if not 0 <= self.ratio < 1:
            raise ValueError(f"ratio must lie in [0, 1), got {self.ratio}")
        self.max_shift = max_shift
        self.padding = choice(padding, "padding", PADDINGS)
        self.include_original = include_original
        if policy is not None:
            words = policy.split(",") if policy else []
            for word in words:
                choice(word, "policy word", _augment.POLICY_WORDS)
            if copies != 1:
                raise ValueError("copies applies to translation only; a policy returns one output per sample")
        self.policy = policy
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if self.policy is not None:
            return _augment.DiffAugment(x, self.policy, generator=self.generator)
        return _augment.translate(
            x,
            ratio=self.ratio,
            max_shift=self.max_shift,
            copies=self.copies,
            include_original=self.include_original,
            padding=self.padding,
            generator=self.generator,
        )

    def extra_repr(self) -> str:
        if self.policy is not None:
            return f"policy={self.policy!r}"
        return f"copies={self.copies}, ratio={self.ratio}, padding={self.padding!r}, include_original={self.include_original}"
