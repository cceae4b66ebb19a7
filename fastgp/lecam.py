"""LeCam regularization of the discriminator (Tseng, Jiang, Liu, Yang & Yang, "Regularizing
Generative Adversarial Networks under Limited Data", CVPR 2021).

D's outputs on real samples are pulled towards a moving average of its outputs on fakes, and its
outputs on fakes towards a moving average of its outputs on reals:

    R_LC = E_x ReLU(D(x) − α_F)² + E_z ReLU(α_R − D(G(z)))²

where α_R, α_F are exponential moving averages (decay 0.9 by default, the authors' PyTorch code)
of the batch means of D(x) and D(G(z)). The paper writes the un-rectified ‖D(x) − α_F‖² + ‖D(G(z)) − α_R‖²; the authors' code
(google/lecam-gan: ``lecam_reg`` in biggan_cifar/losses.py, the ``ema_losses`` class in
third_party/utils.py, the TensorFlow ``lecamreg`` of stylegan2/lecam_loss.py) rectifies both terms,
so only a real output above the fake anchor and a fake output below the real anchor are
penalized. That is the default here; ``rectified=False`` gives the paper's form.

Timing, as in the authors' BigGAN code (google/lecam-gan at f9af948: ``third_party/train_fns.py``,
``third_party/run_train.py``): the anchors are updated from the current batch BEFORE the penalty
is computed (the hinge loss updates ``ema_losses`` first); before iteration ``start`` the update
has decay 0 (each anchor is the last batch mean), from ``start`` on it has ``decay``; the penalty
is applied only when the iteration is greater than ``start`` (``itr > start_itr``). The authors
pass ``start_itr=1000`` and count iterations from 0: ``state_dict['itr']`` starts at 0, is shared
by the D steps of one training step and is incremented after it. Pass the same 0-based count as
``step`` (with ``start=1000``: decay 0 in iterations 0–999, the penalty from iteration 1001, the
1,002nd training step); counting from 1 would start both one iteration early.

Decay: 0.9 is the default of the authors' PyTorch ``ema_losses`` (third_party/utils.py), which
their BigGAN scripts use (``ema_losses(start_itr=1000)``, biggan_cifar/train.py). Their TensorFlow
StyleGAN2 code (stylegan2/lecam_loss.py) uses 0.99 through ``assign_moving_average`` with
zero-debiasing, a differently started average that this class does not reproduce; pass
``decay=0.99`` for its long-run smoothing.

No kernel: the penalty is two ReLUs, two squares and two means over [B] logits, which a fused
kernel would not speed up measurably next to D's forward and backward.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from . import _checks

__all__ = ["LeCam", "lecam_penalty"]


def _logits(value, name: str) -> torch.Tensor:
    _checks.floating(value, name)
    if value.numel() == 0:
        raise ValueError(f"{name} must hold at least one discriminator output, got shape {list(value.shape)}")
    if value.dim() > 1 and value.shape[1:].numel() != 1:
        raise ValueError(f"{name} must have shape [B] or [B, 1] (one output per sample), got {list(value.shape)}")
    return value


def lecam_penalty(real_logits: torch.Tensor, fake_logits: torch.Tensor, anchor_real: float | torch.Tensor,
                  anchor_fake: float | torch.Tensor, *, rectified: bool = True) -> torch.Tensor:
    """The LeCam penalty for given anchors (a scalar; no weight applied).

    ``rectified=True`` (the authors' code): mean(ReLU(D(x) − α_F)²) + mean(ReLU(α_R − D(G(z)))²);
    ``rectified=False`` (the paper's formula): mean((D(x) − α_F)²) + mean((α_R − D(G(z)))²).

    Args:
        real_logits: D's outputs on real samples, [B] or [B, 1] (differentiable).
        fake_logits: D's outputs on fakes, [B'] or [B', 1], same dtype and device.
        anchor_real: α_R, a Python number or a 0-dim tensor (not differentiated).
        anchor_fake: α_F, a Python number or a 0-dim tensor (not differentiated).
        rectified: the ReLU of the authors' code (default) or the paper's plain square.
    """
    _logits(real_logits, "real_logits")
    _logits(fake_logits, "fake_logits")
    if real_logits.dtype != fake_logits.dtype or real_logits.device != fake_logits.device:
        raise TypeError(
            "real_logits and fake_logits must have the same dtype and device, got "
            f"{real_logits.dtype} on {real_logits.device} and {fake_logits.dtype} on {fake_logits.device}"
        )
    _checks.boolean(rectified, "rectified")
    anchors = []
    for value, name in ((anchor_real, "anchor_real"), (anchor_fake, "anchor_fake")):
        if isinstance(value, torch.Tensor):
            # A real anchor only: a bool or complex one would reach torch's NotImplementedError
            # (or a complex penalty) inside the arithmetic below.
            if value.dtype == torch.bool or value.dtype.is_complex:
                raise TypeError(f"{name} must be a real number or a real (floating or integer) tensor, got {value.dtype}")
            if value.numel() != 1:
                raise ValueError(f"{name} must be a number or a one-element tensor, got shape {list(value.shape)}")
            if value.device not in (real_logits.device, torch.device("cpu")):
                raise ValueError(f"{name} must be on the logits' device ({real_logits.device}) or the CPU, got {value.device}")
            value = value.detach().reshape(())
        else:
            value = _checks.real_number(value, name)
        anchors.append(value)
    anchor_real, anchor_fake = anchors
    real_term, fake_term = real_logits - anchor_fake, anchor_real - fake_logits
    if rectified:
        real_term, fake_term = torch.relu(real_term), torch.relu(fake_term)
    return real_term.pow(2).mean() + fake_term.pow(2).mean()


class LeCam:
    """Stateful LeCam regularizer: keeps the anchors α_R, α_F and returns ``weight · R_LC``.

    Call it once per discriminator step with D's outputs on that step's reals and fakes and the
    training iteration (counted from 0, the same for the D steps of one G step): it updates the anchors from the batch means (detached), then returns the
    weighted penalty, or a zero tensor while ``step <= start``.

    Example::

        lecam = fastgp.LeCam(weight=0.3, start=1000)
        for it in range(iterations):             # the authors count iterations from 0
            real_logits, fake_logits = D(real), D(G(z).detach())
            d_loss = hinge_d(real_logits, fake_logits) + lecam(real_logits, fake_logits, it)

    Args:
        weight: λ, the penalty's coefficient (``--LC 0.3`` in the authors' BigGAN CIFAR scripts).
        decay: the anchors' EMA decay (0.9: the authors' PyTorch ``ema_losses``; see above for
            their TensorFlow code's 0.99).
        start: the iteration (counted from 0) from which the anchors average (before it each
            anchor is the last batch mean) and after which the penalty applies (the authors'
            ``start_itr``, 1000).
        init: the anchors before the first update. ``None`` (default): the first update sets them
            to the batch means. The authors start from 1000.0, which only matters when the first
            update already averages (``step >= start`` at the first call): pass ``init=1000.0``
            to reproduce that too.
        rectified: the authors' ReLU (default) or the paper's un-rectified squares
            (:func:`lecam_penalty`).
        group: under torch.distributed, the process group over which the batch means are
            averaged (all_reduce of the per-rank means divided by the world size, i.e. the global
            mean for equal per-rank batches), so every rank holds the same anchors; ``None``: the
            default group when one is initialized. Collective then: every rank must call it.

    Anchors are kept in float64 on the logits' device (the authors keep Python floats); the
    penalty is computed in the logits' dtype. ``state_dict()`` / ``load_state_dict()`` carry the
    anchors for checkpoints.
    """

    def __init__(self, weight: float = 1.0, decay: float = 0.9, start: int = 1000, *, init: float | None = None,
                 rectified: bool = True, group: dist.ProcessGroup | None = None):
        self.weight = _checks.real_number(weight, "weight", minimum=0.0)
        self.decay = _checks.real_number(decay, "decay", minimum=0.0)
        if self.decay >= 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.start = _checks.integer(start, "start", minimum=0)
        self.init = None if init is None else _checks.real_number(init, "init")
        _checks.boolean(rectified, "rectified")
        self.rectified, self.group = rectified, group
        self.anchor_real: torch.Tensor | None = None
        self.anchor_fake: torch.Tensor | None = None
        if self.init is not None:
            self.anchor_real = torch.tensor(self.init, dtype=torch.float64)
            self.anchor_fake = torch.tensor(self.init, dtype=torch.float64)

    def active(self, step: int) -> bool:
        """Whether the penalty applies at iteration ``step`` (``step > start``)."""
        return step > self.start

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int) -> None:
        """Move the anchors towards this batch's mean outputs (decay 0 before ``start``)."""
        _logits(real_logits, "real_logits")
        _logits(fake_logits, "fake_logits")
        step = _checks.integer(step, "step", minimum=0)
        device = real_logits.device
        # float64 as the authors' Python floats (MPS has no float64: float32 there).
        dtype = torch.float32 if device.type == "mps" else torch.float64
        means = torch.stack([real_logits.detach().mean(), fake_logits.detach().mean()]).to(dtype)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(means, group=self.group)
            means /= dist.get_world_size(self.group)
        decay = 0.0 if step < self.start else self.decay
        if self.anchor_real is None:
            self.anchor_real, self.anchor_fake = means[0].clone(), means[1].clone()
            return
        old = torch.stack([self.anchor_real, self.anchor_fake]).to(device=device, dtype=dtype)
        new = old * decay + means * (1 - decay)
        self.anchor_real, self.anchor_fake = new[0], new[1]

    def __call__(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, step: int) -> torch.Tensor:
        """Update the anchors, then ``weight · R_LC`` (a zero tensor while ``step <= start``)."""
        self.update(real_logits, fake_logits, step)
        if not self.active(step) or self.weight == 0:
            return real_logits.new_zeros(())
        reg = lecam_penalty(real_logits, fake_logits, self.anchor_real, self.anchor_fake, rectified=self.rectified)
        return reg * self.weight

    def state_dict(self) -> dict:
        """The anchors (Python floats, or None before the first update) and the settings."""
        anchors = (None, None) if self.anchor_real is None else (float(self.anchor_real), float(self.anchor_fake))
        return {"anchor_real": anchors[0], "anchor_fake": anchors[1], "decay": self.decay, "start": self.start}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or not {"anchor_real", "anchor_fake"} <= state.keys():
            raise ValueError("state must be a dict from LeCam.state_dict() with keys 'anchor_real' and 'anchor_fake'")
        real, fake = state["anchor_real"], state["anchor_fake"]
        if (real is None) != (fake is None):
            raise ValueError("state holds one anchor without the other")
        if real is None:
            self.anchor_real = self.anchor_fake = None
            return
        # float64 tensors of the saved Python floats: bit-identical anchors after a resume.
        self.anchor_real = torch.tensor(float(real), dtype=torch.float64)
        self.anchor_fake = torch.tensor(float(fake), dtype=torch.float64)
