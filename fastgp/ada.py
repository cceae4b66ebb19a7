"""Adaptive discriminator augmentation (ADA): the augmentation probability p steered by D's
overfitting heuristic (Karras, Aittala, Hellsten, Laine, Lehtinen, Aila, "Training Generative
Adversarial Networks with Limited Data", NeurIPS 2020).

The heuristic r_t = E[sign(D(x_real))] is accumulated over ``interval`` training steps; then

    p ← max(p + sign(r_t − target) · (batch · interval) / (kimg · 1000), 0)

so p can go from 0 to 1 in ``kimg`` thousand images. Facts from the original, NVlabs'
stylegan2-ada-pytorch (``training/training_loop.py``, ``training/loss.py``,
``torch_utils/training_stats.py``):

- defaults target 0.6, interval 4, kimg 500; p starts at 0 (``augment_p``);
- ``batch`` is the global batch size (every rank's images of one step);
- r_t is the mean of every sign reported since the last update, summed over the ranks
  (``training_stats`` reduces the count and the sum across processes; in float64);
- np.sign(0) = 0: r_t equal to the target leaves p unchanged;
- an interval without reports reuses the previous interval's r_t (``Collector(keep_previous=True)``);
  before any report the original's r_t is NaN and so is its p — fastgp raises there instead, and
  keeps the last r_t in its state_dict, so a resumed run reuses it where the original, whose
  collector restarts empty, would again have no r_t;
- p is clamped below at 0 only: it is never clamped above 1 (a p above 1 augments every sample,
  as p = 1 does, since each sample is augmented where U(0, 1) < p);
- p lives in a float32 tensor (``augment_pipe.p``), so each update is rounded to float32.

(PyTorch-StudioGAN's re-implementation differs on two points: it clamps p to [0, 1] and steps by
the number of signs counted instead of batch · interval. fastgp follows the original.)

The original's pipeline applies each of its transforms to each sample independently with
probability p; :func:`random_apply` does the same with fastgp's augmentations (each DiffAugment
word gated on its own, or one user callable gated once).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from . import _checks, augment as _augment


def _check_policy(policy: str, name: str) -> list[str]:
    words = policy.split(",") if policy else []
    if not words:
        raise ValueError(f"{name} must not be empty: give DiffAugment words or a callable")
    for word in words:
        if word not in _augment.POLICY_WORDS:
            raise ValueError(f"{name} has an unknown word {word!r}; known words: {', '.join(_augment.POLICY_WORDS)}")
    return words


def _check_augmented(out, x: torch.Tensor, augment) -> torch.Tensor:
    """What a user's callable returned: x's dtype, device and per-sample shape, K·B rows (K >= 1).
    torch.where below would broadcast a [1, ...] or [K·B, C', 1, 1] output and keep an empty one,
    so a wrong shape must be refused here, not left to the gate."""
    name = f"augment ({getattr(augment, '__qualname__', type(augment).__name__)})"
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    if out.dtype != x.dtype:
        raise TypeError(f"{name} must return x's dtype {x.dtype}, got {out.dtype}")
    if out.device != x.device:
        raise ValueError(f"{name} must return a tensor on x's device {x.device}, got {out.device}")
    batch = x.shape[0]
    if out.dim() != x.dim() or out.shape[1:] != x.shape[1:] or out.shape[0] == 0 or out.shape[0] % batch:
        raise ValueError(
            f"{name} must return K·B rows of x's per-sample shape, i.e. [K·{batch}, "
            f"{', '.join(str(n) for n in x.shape[1:])}] with K >= 1, got {list(out.shape)}"
        )
    return out


def _gate(x: torch.Tensor, augmented: torch.Tensor, p: float, generator) -> torch.Tensor:
    """Row i of ``augmented`` where U_i < p, else the original row (x repeated when ``augmented``
    holds K rows per sample, sample-major)."""
    rows = augmented.shape[0]
    original = x if rows == x.shape[0] else x.repeat_interleave(rows // x.shape[0], dim=0)
    source = generator.device if generator is not None else x.device
    drawn = torch.rand(rows, generator=generator, device=source) < p
    return torch.where(drawn.to(x.device).view(-1, *([1] * (x.dim() - 1))), augmented, original)


def random_apply(
    x: torch.Tensor,
    p: float,
    augment: str | Callable[[torch.Tensor], torch.Tensor] = "color,translation,cutout",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Augment each sample with probability p (ADA's per-sample gating), differentiably.

    A DiffAugment policy is applied word by word (``fastgp.augment.DiffAugment``): for each word
    every sample is augmented with probability p, independently of the other words — as the
    original pipeline gates each transform on its own. A callable is applied once and each output
    row kept with probability p. Where a sample is not drawn the output is the input row itself.

    Draws, per word (or once for a callable): the augmentation's own draws from ``generator``,
    then one U(0, 1) per output row; a row is augmented where U < p. Every draw happens whatever p
    is, so the random stream does not depend on p.

    Args:
        x: the batch [B, ...] (images [B, C, H, W] for a policy).
        p: the probability, a real number >= 0 (p >= 1 augments every sample; ADA never clamps
            it above).
        augment: a DiffAugment policy (words color, translation, cutout) or a callable x → its
            augmentation: B rows, or K·B rows sample-major (``fastgp.augment.translate`` with
            ``copies=K``; the originals are then repeated K times), each of x's per-sample shape,
            dtype and device — anything else (another size or channel count, an empty batch)
            raises a ValueError/TypeError naming the callable.
        generator: a ``torch.Generator`` for every draw (the callable uses its own).

    Returns:
        the batch, augmented where drawn; gradients flow to x through both branches.
    """
    _checks.batch(x, "x", min_rank=1)
    p = _checks.real_number(p, "p", minimum=0.0)
    _checks.generator(generator)
    if callable(augment):
        return _gate(x, _check_augmented(augment(x), x, augment), p, generator)
    if not isinstance(augment, str):
        raise TypeError(f"augment must be a DiffAugment policy string or a callable, got {type(augment).__name__}")
    words = _check_policy(augment, "augment")
    _augment._check_image(x, "x")
    for word in words:
        x = _gate(x, _augment.DiffAugment(x, word, generator=generator), p, generator)
    return x


class AdaptiveAugment:
    """ADA's controller of the augmentation probability p (Karras et al., NeurIPS 2020).

    Per training step call :meth:`accumulate` with D's logits on the (augmented) reals — as many
    times as D scores reals — then :meth:`step` once; every ``interval`` steps p moves by
    ``sign(r_t − target) · batch_size · interval / (kimg · 1000)`` and is clamped below at 0 (never
    above: see the module docstring). ``controller(x, generator=g)`` augments a batch with the
    current p (:func:`random_apply` with ``augment``).

    Under ``torch.distributed`` (initialized), the sign sum and count are all-reduced across ranks
    at each update, so every rank computes the same r_t and p; :meth:`state_dict` is then a
    collective (every rank must call it).

    Args:
        batch_size: images per step over all ranks (the original's global ``batch_size``).
        target: the r_t the controller aims at (0.6).
        interval: steps between updates (4).
        kimg: thousands of images for p to go from 0 to 1 (500).
        p: the initial probability (0).
        augment: what ``__call__`` applies: a DiffAugment policy or a callable (see random_apply).
    """

    def __init__(
        self,
        batch_size: int,
        *,
        target: float = 0.6,
        interval: int = 4,
        kimg: float = 500.0,
        p: float = 0.0,
        augment: str | Callable[[torch.Tensor], torch.Tensor] = "color,translation,cutout",
    ):
        self.batch_size = _checks.integer(batch_size, "batch_size", minimum=1)
        self.target = _checks.real_number(target, "target")
        if not -1.0 <= self.target <= 1.0:
            raise ValueError(f"target must lie in [-1, 1] (a mean of signs), got {self.target}")
        self.interval = _checks.integer(interval, "interval", minimum=1)
        self.kimg = _checks.real_number(kimg, "kimg")
        if self.kimg <= 0:
            raise ValueError(f"kimg must be > 0, got {self.kimg}")
        if not callable(augment):
            if not isinstance(augment, str):
                raise TypeError(f"augment must be a DiffAugment policy string or a callable, got {type(augment).__name__}")
            _check_policy(augment, "augment")
        self.augment = augment
        # float32 as the original's augment_pipe.p: each update rounds as it does.
        self._p = torch.tensor(_checks.real_number(p, "p", minimum=0.0), dtype=torch.float32)
        self._signs: torch.Tensor | None = None  # [sign sum, count] in float64, this rank's, since the update
        self.steps = 0
        self.rt: float | None = None  # the r_t of the last update

    @property
    def p(self) -> float:
        return float(self._p)

    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Add sign(D(real)) of every element of ``real_logits`` to the running r_t."""
        _checks.floating(real_logits, "real_logits")
        if real_logits.numel() == 0:
            raise ValueError("real_logits is empty; pass D's logits on a batch of reals")
        batch = torch.stack([real_logits.detach().sign().sum(dtype=torch.float64),
                             torch.tensor(real_logits.numel(), dtype=torch.float64, device=real_logits.device)])
        self._signs = batch if self._signs is None else self._signs + batch.to(self._signs.device)

    def _reduced(self) -> torch.Tensor:
        """[sign sum, count] of every rank since the last update (this rank's alone if not distributed)."""
        signs = self._signs
        if signs is None:
            signs = torch.zeros(2, dtype=torch.float64, device=self._collective_device())
        signs = signs.clone()
        if dist.is_available() and dist.is_initialized():
            signs = signs.to(self._collective_device())
            dist.all_reduce(signs, op=dist.ReduceOp.SUM)
        return signs

    @staticmethod
    def _collective_device() -> torch.device:
        if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def step(self) -> bool:
        """Count a training step; every ``interval`` steps update p. Returns whether p was updated.

        An interval in which no rank accumulated a logit reuses the previous r_t, as StyleGAN2-ADA
        does (its ``training_stats.Collector`` keeps a statistic's previous mean when a round
        received no reports, ``keep_previous=True``), so p moves again by the same step. With no
        previous r_t either (no logit accumulated since construction, and none restored by
        :meth:`load_state_dict`) r_t is undefined: the original's mean is then NaN and its p
        becomes NaN; this raises a RuntimeError instead.
        """
        self.steps += 1
        if self.steps % self.interval:
            return False
        total, count = (float(v) for v in self._reduced())
        if count:
            self.rt = total / count
        elif self.rt is None:
            raise RuntimeError(
                f"AdaptiveAugment.step: update at step {self.steps} has no r_t: no rank accumulated real "
                "logits in this interval and there is no earlier r_t to reuse (call accumulate(real_logits) "
                "before the first update; StyleGAN2-ADA's p would become NaN here)"
            )
        adjust = np.sign(self.rt - self.target) * (self.batch_size * self.interval) / (self.kimg * 1000)
        self._p = (self._p + adjust).clamp_min(0.0)
        self._signs = None
        return True

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``random_apply(x, self.p, self.augment, generator=generator)``."""
        return random_apply(x, self.p, self.augment, generator=generator)

    def state_dict(self) -> dict:
        """p, the step count, the last r_t and the signs accumulated since the last update, summed
        over the ranks (a collective under torch.distributed)."""
        total, count = (float(v) for v in self._reduced())
        return {"p": self.p, "steps": self.steps, "rt": self.rt, "sign_sum": total, "count": count}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; under torch.distributed rank 0 takes the accumulated signs
        and the other ranks start from zero, so their all-reduced sum is the saved one.

        Every field is checked before anything is changed (a TypeError/ValueError naming the key):
        p a finite real >= 0; steps an int >= 0; rt None or a real in [-1, 1]; count a whole
        number >= 0; sign_sum a real with |sign_sum| <= count (a sum of that many signs). Bools
        are refused where numbers are expected.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from AdaptiveAugment.state_dict(), got {type(state).__name__}")
        missing = {"p", "steps", "rt", "sign_sum", "count"} - set(state)
        if missing:
            raise ValueError(f"AdaptiveAugment state lacks {', '.join(sorted(missing))}")
        p = _checks.real_number(state["p"], "state['p']", minimum=0.0)
        steps = _checks.integer(state["steps"], "state['steps']", minimum=0)
        rt = None if state["rt"] is None else _checks.real_number(state["rt"], "state['rt']")
        if rt is not None and not -1.0 <= rt <= 1.0:
            raise ValueError(f"state['rt'] must be None or lie in [-1, 1] (a mean of signs), got {rt}")
        count = _checks.real_number(state["count"], "state['count']", minimum=0.0)
        if count != int(count):
            raise ValueError(f"state['count'] must be a whole number of signs, got {count}")
        sign_sum = _checks.real_number(state["sign_sum"], "state['sign_sum']")
        if abs(sign_sum) > count:
            raise ValueError(f"state['sign_sum'] must lie in [-count, count] = [{-count}, {count}], got {sign_sum}")
        self._p = torch.tensor(p, dtype=torch.float32)
        self.steps, self.rt = steps, rt
        rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        self._signs = torch.tensor([sign_sum, count], dtype=torch.float64) if count and rank0 else None
