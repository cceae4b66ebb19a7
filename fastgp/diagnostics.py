"""Jacobian and Lipschitz measurements for judging regularization settings during training.

* :func:`jacobian_norm` — the per-sample Frobenius norm ‖∂f/∂x‖_F of a batched function: of a
  discriminator (x → logit, where it is the input-gradient norm ‖∇ₓD‖ the penalties act on) or of a
  generator (z → image). Exact through ``torch.func`` for small dimensions, or Hutchinson's
  unbiased estimator of ‖J‖²_F for large ones.
* :func:`loss_lipschitz` — per noise vector, ‖∂V_g/∂z‖ with V_g(z) = the generator's loss of the
  single sample G(z), and its maximum over a noise set: the estimate L of the Lipschitz constant of
  the generator's objective in z.
* :func:`gradient_direction` — per fake sample, the cosine between ∇D(fake) and the direction to its
  nearest real sample: Lipschitz constraints are meant to make D's gradient point at real data.

Every function here is a measurement: results are detached (no graph is kept), parameters' ``.grad``
are never touched, and the models are called as given — put them in ``eval()`` mode, since a
function whose output for one sample depends on other samples of the batch (BatchNorm in training
mode) has no per-sample Jacobian and is rejected with a ValueError. float16/bfloat16 inputs give
float32 results; float32 and float64 inputs give results of their own dtype.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Callable

import torch

from . import _checks
from ._layout import accumulation_dtype

__all__ = ["DISTRIBUTIONS", "METHODS", "SIDES", "gradient_direction", "jacobian_norm", "loss_lipschitz"]

METHODS = ("exact", "hutchinson")
DISTRIBUTIONS = ("rademacher", "gaussian")
SIDES = ("auto", "output", "input")
DEFAULT_N_SAMPLES = 16
# Bound on the elements of the per-chunk Jacobian the exact method materializes (2**22 elements is
# 32 MiB in float64), and on the [fake chunk, real] distance matrix of gradient_direction.
JACOBIAN_BUDGET = 2**22
DISTANCE_BUDGET = 2**22
LIPSCHITZ_CHUNK = 512

_NOT_CONNECTED = "does not depend on its input (it was computed without autograd, or from a detached copy)"


@contextlib.contextmanager
def _forward_mode():
    """Silence the warning torch emits (about its own use of torch.jit.script: a FutureWarning on
    torch 2.14+, a DeprecationWarning on 2.11) the first time forward-mode AD decompositions load;
    it concerns torch's internals, not the caller."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script(_method)?` is deprecated", category=Warning)
        yield


def _acc(t: torch.Tensor) -> torch.Tensor:
    """``t`` in the accumulation dtype (float32 for reduced precision, else unchanged)."""
    return t.to(accumulation_dtype(t.dtype))


def _callable(value, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable (a module or function), got {type(value).__name__}")


def _chunk_size(value, name: str = "chunk_size") -> int | None:
    return None if value is None else _checks.integer(value, name, minimum=1)


def _per_sample_output(fn, x: torch.Tensor, name: str) -> torch.Tensor:
    """``fn(x)`` for an ``x`` that requires grad, checked to be a per-sample output [B, ...].

    Raises ValueError if the output is not a [B, ...] batch of the input's size, does not depend
    on x, or if its first row depends on other rows of x (the samples are not independent).
    """
    batch = x.shape[0]
    out = fn(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(out).__name__}")
    if out.dtype not in _checks.FLOATING_DTYPES:
        raise TypeError(f"{name} must return a floating tensor, got {out.dtype}")
    if out.dim() == 0:
        raise ValueError(
            f"{name} must return a per-sample output of shape [B, ...] with B = {batch}, got a scalar "
            f"(shape []): do not reduce over the batch"
        )
    if out.shape[0] != batch:
        raise ValueError(
            f"batch sizes do not match: {name} returned {out.shape[0]} rows (shape {list(out.shape)}) for "
            f"{batch} input samples; its output must be per-sample, [B, ...] with B = {batch}"
        )
    if not out.requires_grad:
        raise ValueError(f"the output of {name} {_NOT_CONNECTED}")
    if batch > 1:
        # Row 0 of a per-sample function has an exactly zero gradient on every other row.
        weight = torch.linspace(1.0, 2.0, out[0].numel(), dtype=out.dtype, device=out.device).view(out[0].shape)
        (grad,) = torch.autograd.grad((out[0] * weight).sum(), x, retain_graph=True, allow_unused=True)
        if grad is None:
            raise ValueError(f"the output of {name} {_NOT_CONNECTED}")
        if bool(grad[1:].abs().amax() > 0):
            raise ValueError(
                f"the output of {name} is not per-sample: its row 0 depends on other samples of the batch "
                f"(a BatchNorm layer in training mode? call .eval() before measuring)"
            )
    return out


def _scalar_per_sample(out: torch.Tensor, name: str) -> None:
    if tuple(out.shape[1:]) not in ((), (1,)):
        raise ValueError(
            f"{name} must return one logit per sample, shape [B] or [B, 1] with B = {out.shape[0]}, "
            f"got {list(out.shape)}"
        )


def _draw(shape, distribution: str, generator, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Probe vectors with E[u uᵀ] = I, drawn from ``generator`` (or the default generator)."""
    source = generator.device if generator is not None else device
    if distribution == "rademacher":
        u = torch.randint(0, 2, shape, generator=generator, device=source).to(dtype) * 2 - 1
    else:
        u = torch.randn(shape, generator=generator, device=source, dtype=dtype)
    return u.to(device)


def _exact_norms(f, x: torch.Tensor, out_numel: int, chunk_size: int | None) -> torch.Tensor:
    in_numel = x[0].numel()

    def one(sample: torch.Tensor) -> torch.Tensor:
        return f(sample.unsqueeze(0)).squeeze(0)

    # Reverse mode costs one VJP per output element, forward mode one JVP per input element.
    jacobian = torch.func.jacrev(one) if out_numel <= in_numel else torch.func.jacfwd(one)
    per_chunk = chunk_size or max(1, JACOBIAN_BUDGET // (out_numel * in_numel))
    norms = []
    # torch.func differentiates under no_grad too; no_grad keeps parameters out of any graph.
    with torch.no_grad(), _forward_mode():
        for start in range(0, x.shape[0], per_chunk):
            jac = torch.func.vmap(jacobian)(x[start : start + per_chunk])
            norms.append(_acc(jac).reshape(jac.shape[0], -1).square().sum(dim=1).sqrt())
    return torch.cat(norms)


def jacobian_norm(
    f,
    x: torch.Tensor,
    method: str = "exact",
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
    *,
    distribution: str = "rademacher",
    side: str = "auto",
    chunk_size: int | None = None,
    return_stderr: bool = False,
):
    """Per-sample Frobenius norm ‖J_i‖_F of J_i = ∂f(x)_i / ∂x_i, for a batch x [B, ...].

    ``f`` maps a batch to a per-sample batch [B, ...]: a discriminator (logits [B] or [B, 1]; then
    ‖J_i‖_F = ‖∇ₓD(x_i)‖) or a generator (z [B, d] → images [B, C, H, W]). Samples must be
    independent (``eval()`` mode); ``f`` must be deterministic.

    Args:
        method: ``"exact"`` — the whole Jacobian of each sample through ``torch.func``
            (``vmap`` of ``jacrev``, or of ``jacfwd`` when the output has more elements than the
            input), processed in chunks of samples so that a chunk's Jacobian holds at most
            ``JACOBIAN_BUDGET`` elements: for small dimensions (memory is out·in per sample).
            A function with one output per sample (a discriminator) needs a single batched
            backward pass instead.
            ``"hutchinson"`` — the unbiased estimate ‖J‖²_F ≈ mean_k ‖Jᵀu_k‖² (``side="output"``,
            u in output space, one backward pass per probe) or mean_k ‖J u_k‖² (``side="input"``,
            u in input space, one forward-mode pass per probe), with ``n_samples`` probes per
            sample; ``side="auto"`` probes the smaller of the two spaces. With Rademacher probes
            and a scalar output (a discriminator) the estimate is exact.
        n_samples: Hutchinson probes per sample (>= 1, default 16); ignored by ``"exact"``.
        generator: a ``torch.Generator`` for the probes: a seeded generator makes the estimate
            deterministic. ``"exact"`` draws nothing and is always deterministic.
        distribution: ``"rademacher"`` (±1, lower variance) or ``"gaussian"`` probes.
        chunk_size: samples per ``vmap`` call of the exact method (default: from the budget).
        return_stderr: also return the standard error of each norm: 0 for ``"exact"``; for
            Hutchinson, s/√K of the K per-probe squared norms (s their sample standard deviation)
            carried to the norm by the delta method, s/(2·√K·norm); NaN when K = 1.

    Returns the norms [B] (detached), or ``(norms, stderr)`` with ``return_stderr``.
    """
    _callable(f, "f")
    _checks.batch(x, "x")
    _checks.choice(method, "method", METHODS)
    _checks.choice(distribution, "distribution", DISTRIBUTIONS)
    _checks.choice(side, "side", SIDES)
    n_samples = DEFAULT_N_SAMPLES if n_samples is None else _checks.integer(n_samples, "n_samples", minimum=1)
    _checks.generator(generator)
    chunk_size = _chunk_size(chunk_size)
    _checks.boolean(return_stderr, "return_stderr")

    x = x.detach()
    probe = x.clone().requires_grad_(True)
    with torch.enable_grad():
        out = _per_sample_output(f, probe, "f")
    out_numel, in_numel = out[0].numel(), x[0].numel()
    acc = accumulation_dtype(x.dtype)

    if method == "exact" and out_numel == 1:
        # One value per sample (a discriminator): J_i is the gradient row, all B of them from one
        # batched backward pass — what jacrev would compute, without needing vmap rules.
        (grad,) = torch.autograd.grad(out.sum(), probe)
        norms = _acc(grad).reshape(x.shape[0], -1).square().sum(dim=1).sqrt()
        stderr = torch.zeros_like(norms)
    elif method == "exact":
        del out
        norms = _exact_norms(f, x, out_numel, chunk_size).to(acc)
        stderr = torch.zeros_like(norms)
    else:
        if side == "auto":
            side = "output" if out_numel <= in_numel else "input"
        squares = []
        if side == "output":
            for k in range(n_samples):
                u = _draw(out.shape, distribution, generator, out.dtype, out.device)
                (vjp,) = torch.autograd.grad(out, probe, u, retain_graph=k < n_samples - 1)
                squares.append(_acc(vjp).reshape(x.shape[0], -1).square().sum(dim=1))
        else:
            del out
            with torch.no_grad(), _forward_mode():  # forward-mode AD needs no backward graph
                for _ in range(n_samples):
                    u = _draw(x.shape, distribution, generator, x.dtype, x.device)
                    _, jvp = torch.func.jvp(f, (x,), (u,))
                    squares.append(_acc(jvp).reshape(x.shape[0], -1).square().sum(dim=1))
        squares = torch.stack(squares)  # [K, B]
        mean = squares.mean(dim=0)
        norms = mean.sqrt()
        if n_samples > 1:
            stderr_sq = squares.std(dim=0) / math.sqrt(n_samples)
            safe = norms.clamp_min(torch.finfo(acc).tiny)
            stderr = torch.where(norms > 0, stderr_sq / (2 * safe), torch.zeros_like(norms))
        else:
            stderr = torch.full_like(norms, float("nan"))
    norms, stderr = norms.detach(), stderr.detach()
    return (norms, stderr) if return_stderr else norms


def loss_lipschitz(
    g_loss: str | Callable[[torch.Tensor], torch.Tensor],
    G: Callable[[torch.Tensor], torch.Tensor],
    D: Callable[[torch.Tensor], torch.Tensor],
    z: torch.Tensor,
    *,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L = max_i ‖∂V_g(z_i)/∂z_i‖ over a noise set z [N, ...], and the per-sample norms [N].

    V_g(z) = g_loss(D(G(z))) for the single sample z: the generator's loss of one noise vector
    (``g_loss`` is applied to each sample's logits as a batch of one, so a mean- or sum-reduced
    loss gives the same V_g). This is the per-sample gradient the generator is trained with, and
    its maximum over the noise set estimates the Lipschitz constant L of the generator's objective
    in z, the quantity compared across losses and regularizers in generalization analyses.

    Args:
        g_loss: a generator loss ``g_loss(fake_logits) -> scalar`` built from torch ops (it is
            applied per sample with ``torch.func.vmap``), or a loss name for
            :func:`fastgp.losses.get`.
        G: the generator, z [N, ...] → samples [N, ...], in ``eval()`` mode (samples must be
            independent).
        D: the discriminator, → logits [N] or [N, 1], in ``eval()`` mode.
        z: the noise set; processed in chunks of ``chunk_size`` (default 512) vectors.

    Returns ``(L, norms)``: a 0-dim tensor and a [N] tensor (detached).
    """
    if isinstance(g_loss, str):
        from .losses import get

        g_loss = get(g_loss).g_loss
    _callable(g_loss, "g_loss")
    _callable(G, "G")
    _callable(D, "D")
    _checks.batch(z, "z")
    per_chunk = _chunk_size(chunk_size) or LIPSCHITZ_CHUNK

    def one_loss(logit: torch.Tensor) -> torch.Tensor:
        value = g_loss(logit.unsqueeze(0))
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"g_loss must return a torch.Tensor, got {type(value).__name__}")
        if value.numel() != 1:
            raise ValueError(f"g_loss must reduce a batch of logits to a scalar loss, got shape {list(value.shape)}")
        return value.reshape(())

    norms = []
    z = z.detach()
    for start in range(0, z.shape[0], per_chunk):
        chunk = z[start : start + per_chunk].clone().requires_grad_(True)
        count = chunk.shape[0]

        def composite(noise: torch.Tensor) -> torch.Tensor:
            fake = G(noise)
            if not isinstance(fake, torch.Tensor):
                raise TypeError(f"G must return a torch.Tensor, got {type(fake).__name__}")
            if fake.dim() == 0 or fake.shape[0] != count:
                raise ValueError(
                    f"batch sizes do not match: G returned shape {list(fake.shape)} for {count} noise vectors; "
                    f"it must return one sample per noise vector"
                )
            return D(fake)

        with torch.enable_grad():
            logits = _per_sample_output(composite, chunk, "D(G(z))")
            _scalar_per_sample(logits, "D")
            losses = torch.func.vmap(one_loss)(logits)
            (grad,) = torch.autograd.grad(losses.sum(), chunk)
        norms.append(_acc(grad).reshape(count, -1).square().sum(dim=1).sqrt().detach())
    norms = torch.cat(norms)
    return norms.max(), norms


def _nearest(fake: torch.Tensor, real: torch.Tensor, chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index and distance of the nearest row of ``real`` [M, d] to each row of ``fake`` [N, d].

    torch.cdist over chunks of fake rows (each distance matrix holds at most DISTANCE_BUDGET
    entries). When the nearest-distance op of the correction family lands, this switches to
    fastgp.correction.nearest_distance, which fuses the distances and the minimum.
    """
    per_chunk = chunk_size or max(1, DISTANCE_BUDGET // real.shape[0])
    indices, distances = [], []
    for start in range(0, fake.shape[0], per_chunk):
        # The non-matmul form is exact (no |a|² + |b|² − 2ab cancellation), so ties resolve reliably.
        dist = torch.cdist(fake[start : start + per_chunk], real, compute_mode="donot_use_mm_for_euclid_dist")
        value, index = dist.min(dim=1)
        indices.append(index)
        distances.append(value)
    return torch.cat(indices), torch.cat(distances)


def gradient_direction(
    D: Callable[[torch.Tensor], torch.Tensor],
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    chunk_size: int | None = None,
    return_nearest: bool = False,
):
    """Per fake sample, cos ∠(∇ₓD(fake_i), real_j* − fake_i), real_j* its nearest real sample.

    Nearest in the L2 distance over all non-batch dimensions (ties: the lowest index). A value
    near 1 means D's gradient, which moves the generator's samples, points at real data — the
    property Lipschitz constraints are meant to guarantee (Zhou et al., 2019).

    Args:
        D: the discriminator, [N, ...] → logits [N] or [N, 1], in ``eval()`` mode.
        fake: [N, ...] samples where the gradient is taken.
        real: [M, ...] real samples of fake's per-sample shape, dtype and device (M may differ
            from N).
        chunk_size: fake samples per distance computation (default: from a memory budget).
        return_nearest: also return the nearest real sample's index [N] and distance [N].

    Returns the cosines [N] (NaN where ∇D(fake_i) = 0 or fake_i coincides with its nearest real
    sample: the angle is undefined; use ``nanmean``), and with ``return_nearest`` the tuple
    ``(cosine, index, distance)``. All detached.
    """
    _callable(D, "D")
    _checks.batch(fake, "fake")
    _checks.batch(real, "real")
    if fake.shape[1:] != real.shape[1:]:
        raise ValueError(
            f"fake and real must have the same per-sample shape, got {list(fake.shape)} and {list(real.shape)}"
        )
    if fake.dtype != real.dtype:
        raise TypeError(f"fake and real must have the same dtype, got {fake.dtype} and {real.dtype}")
    if fake.device != real.device:
        raise ValueError(f"fake and real must be on the same device, got {fake.device} and {real.device}")
    chunk_size = _chunk_size(chunk_size)
    _checks.boolean(return_nearest, "return_nearest")

    x = fake.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = _per_sample_output(D, x, "D")
        _scalar_per_sample(logits, "D")
        (grad,) = torch.autograd.grad(logits.sum(), x)
    batch = fake.shape[0]
    fake_flat = _acc(fake.detach()).reshape(batch, -1)
    real_flat = _acc(real.detach()).reshape(real.shape[0], -1)
    index, distance = _nearest(fake_flat, real_flat, chunk_size)
    direction = real_flat[index] - fake_flat
    grad = _acc(grad).reshape(batch, -1)
    denominator = torch.linalg.vector_norm(grad, dim=1) * torch.linalg.vector_norm(direction, dim=1)
    cosine = (grad * direction).sum(dim=1) / denominator
    cosine = torch.where(denominator > 0, cosine, torch.full_like(cosine, float("nan"))).detach()
    return (cosine, index, distance) if return_nearest else cosine
