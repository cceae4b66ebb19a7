"""Benchmark cases of the gradient-penalty family (float32, on the CPU or a CUDA GPU).

Op level:
  head     the penalty head forward + ``.backward()`` on a gradient tensor (target ≥ 2.5× vs
           reference on the CPU, ≥ 3× on a GPU)
  interp   random per-sample interpolation, forward only (target ≥ 2×)
Step level (a DCGAN-style 32×32 discriminator without batch norm, batch 64, Adam):
  wgan-gp-step      D(real), D(fake), Wasserstein loss + 10·GP, backward, Adam step (target ≥ 0.98×
                    on the CPU, ≥ 1.0× on a GPU: no regression); also reports the share of the
                    regularizer's own ops
  r1-step           separate forwards for loss and R1 vs the shared forward with fastgp.r1_penalty
                    (target ≥ 1.6×)
  r1-step-shared    the same shared forward written by hand vs fastgp.r1_penalty (no target; it
                    separates the gain of sharing the forward from the gain of the fused head)
  lazy-r1           R1 every step vs lazy R1 (every 16th step, gain 16), per step amortized over
                    16 steps (target ≥ 4×)
  wgan-gp-jvp-step  the WGAN-GP step with the penalty by double backward (reference) vs
                    method="jvp" eager (fastgp) vs method="jvp" under torch.compile (compile; with
                    mode="reduce-overhead" on a GPU); no target: it reports what compiling buys
  r1-jvp-step       the same three for the R1 step on the shared forward (fastgp.r1_penalty)

The reference contenders are written inline, the way GAN code writes them today, so that what is
measured can be read here. ``compile`` is ``torch.compile`` of that reference code (in the two jvp
cases: of the method="jvp" code, since the reference's double backward does not compile); the
harness runs it and, if it raises, the table quotes the exception.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.harness import Case, Setup, Unsupported

FLOAT_BYTES = 4
BATCH_STEP = 64
GP_WEIGHT = 10.0
R1_WEIGHT = 10.0
LAZY_INTERVAL = 16


def _fastgp(name: str):
    """``fastgp.<name>``, or an ``Unsupported`` saying why it is not there (yet)."""
    try:
        import fastgp
    except Exception as error:
        return Unsupported(f"import fastgp failed ({type(error).__name__}: {error})", "unavailable")
    fn = getattr(fastgp, name, None)
    if fn is None:
        return Unsupported(f"fastgp.{name} is not exported", "unavailable")
    return fn


def _compile(fn):
    return torch.compile(fn, dynamic=False)


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _shape_text(shape) -> str:
    return "×".join(str(s) for s in shape)


# --------------------------------------------------------------------------------------------
# User-style reference code
# --------------------------------------------------------------------------------------------


def reference_head(g: torch.Tensor) -> torch.Tensor:
    """The WGAN-GP penalty head as written by hand."""
    n = g.flatten(1).norm(2, dim=1)
    return ((n - 1) ** 2).mean()


def reference_interpolate(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Random per-sample interpolation as written by hand."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    return alpha * real + (1 - alpha) * fake


def reference_gp(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP as written by hand: interpolate, D, autograd.grad(create_graph=True), norm head."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = D(x_hat)
    (grad,) = torch.autograd.grad(out, x_hat, grad_outputs=torch.ones_like(out), create_graph=True)
    return GP_WEIGHT * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def reference_r1(D: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """R1 by hand on its own forward: mean_i ‖∂ sum D(x) / ∂x_i‖² at x = real (weight included)."""
    x = real.detach().requires_grad_(True)
    out = D(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return R1_WEIGHT * grad.pow(2).flatten(1).sum(1).mean()


def reference_r1_shared(logits: torch.Tensor, x: torch.Tensor, weight: float) -> torch.Tensor:
    """R1 by hand from logits already computed from x (x requires grad)."""
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return weight * grad.pow(2).flatten(1).sum(1).mean()


def make_discriminator() -> nn.Module:
    """DCGAN-style 32×32 critic without batch norm (WGAN-GP forbids it)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(128, 256, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(256 * 4 * 4, 1),
    )


class _Trainer:
    """One contender's own copy of D (identical initial weights) and its own Adam."""

    def __init__(self, D0: nn.Module):
        self.D = copy.deepcopy(D0)  # on D0's device
        self.opt = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=(0.0, 0.9))


def _images(device: torch.device, batch: int = BATCH_STEP):
    g = torch.Generator().manual_seed(1)  # drawn on the CPU: the same images on every device
    real = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    fake = torch.randn(batch, 3, 32, 32, generator=g).to(device)  # stands for G(z).detach()
    return real, fake


# --------------------------------------------------------------------------------------------
# 1. Penalty head, forward + backward
# --------------------------------------------------------------------------------------------


def _head_case(shape, large: bool = False) -> Case:
    def setup(device: torch.device) -> Setup:
        g = torch.randn(shape, device=device, requires_grad=True)

        def run(head):
            def call():
                g.grad = None
                head(g).backward()

            return call

        fused = _fastgp("grad_norm_penalty")
        contenders = {
            "fastgp": fused if isinstance(fused, Unsupported) else run(fused),
            "reference": run(reference_head),
            "compile": run(_compile(reference_head)),
        }
        # At the least: read g (forward), read g and write its gradient (backward).
        return Setup(contenders, copy_bytes=3 * _numel(shape) * FLOAT_BYTES)

    return Case(
        "head",
        _shape_text(shape),
        setup,
        "penalty head ((‖g_i‖−1)² mean) forward + backward on a leaf gradient tensor",
        target=("reference", 2.5),
        cuda_target=("reference", 3.0),
        large=large,
    )


# --------------------------------------------------------------------------------------------
# 2. Interpolation, forward only, random alpha
# --------------------------------------------------------------------------------------------


def _interp_case(shape, large: bool = False) -> Case:
    def setup(device: torch.device) -> Setup:
        real, fake = torch.randn(shape, device=device), torch.randn(shape, device=device)
        fused = _fastgp("interpolate")
        contenders = {
            "fastgp": fused if isinstance(fused, Unsupported) else (lambda: fused(real, fake)),
            "reference": lambda: reference_interpolate(real, fake),
            "compile": (lambda c: lambda: c(real, fake))(_compile(reference_interpolate)),
        }
        # At the least: read real and fake, write the output.
        return Setup(contenders, copy_bytes=3 * _numel(shape) * FLOAT_BYTES)

    return Case(
        "interp",
        _shape_text(shape),
        setup,
        "α·real + (1−α)·fake, α ~ U(0,1) per sample, forward only",
        target=("reference", 2.0),
        large=large,
    )


# --------------------------------------------------------------------------------------------
# 3. Whole WGAN-GP discriminator step
# --------------------------------------------------------------------------------------------


def _wgan_gp_step_case() -> Case:
    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        D0 = make_discriminator().to(device)
        real, fake = _images(device)

        def step_with(penalty, t: _Trainer):
            def call():
                t.opt.zero_grad(set_to_none=True)
                d_real = t.D(real).mean()
                d_fake = t.D(fake).mean()
                loss = d_fake - d_real + penalty(t.D)
                loss.backward()
                t.opt.step()

            return call

        contenders = {
            "reference": step_with(lambda D: reference_gp(D, real, fake), _Trainer(D0)),
            "compile": (lambda c: step_with(lambda D: c(D, real, fake), _Trainer(D0)))(_compile(reference_gp)),
        }
        gp = _fastgp("gradient_penalty")
        if isinstance(gp, Unsupported):
            contenders["fastgp"] = gp
        else:
            contenders["fastgp"] = step_with(
                lambda D: gp(D, real, fake, kind="wgan-gp", weight=GP_WEIGHT), _Trainer(D0)
            )

        # The regularizer's own ops, timed separately on the same shapes in the same loop: the
        # interpolation and the penalty head forward + backward on a gradient-shaped tensor.
        g = torch.randn(real.shape, device=device, requires_grad=True)

        def head_call(head):
            def call():
                g.grad = None
                head(g).backward()

            return call

        parts = {
            "reference.interp": lambda: reference_interpolate(real, fake),
            "reference.head": head_call(reference_head),
        }
        interp, head = _fastgp("interpolate"), _fastgp("grad_norm_penalty")
        if not isinstance(interp, Unsupported) and not isinstance(head, Unsupported):
            parts["fastgp.interp"] = lambda: interp(real, fake)
            parts["fastgp.head"] = head_call(head)

        def derive(m: dict[str, float]) -> dict:
            out: dict = {"markdown": []}
            for who in ("reference", "fastgp"):
                if who in m and f"{who}.interp" in m and f"{who}.head" in m:
                    own = m[f"{who}.interp"] + m[f"{who}.head"]
                    out[f"{who}_regularizer_ms"] = own
                    out[f"{who}_regularizer_share"] = own / m[who]
            texts = [
                f"{who} {out[f'{who}_regularizer_ms']:.3g} ms = {100 * out[f'{who}_regularizer_share']:.1f}%"
                for who in ("reference", "fastgp")
                if f"{who}_regularizer_share" in out
            ]
            if texts:
                out["markdown"].append(
                    "time share of the regularizer's own ops (interpolation + penalty head fwd/bwd, "
                    "timed separately on the same shapes in the same alternating loop) in the step: "
                    + "; ".join(texts)
                )
            return out

        notes = [
            "compile = torch.compile of the hand-written penalty function (interpolation, D, "
            "autograd.grad(create_graph=True), norm head); the rest of the step is eager",
            "copy-roofline moves the regularizer's own minimal traffic (interpolation 3×, head 3× the "
            "batch's bytes), not the whole step's",
        ]
        numel = _numel(real.shape)
        return Setup(contenders, copy_bytes=6 * numel * FLOAT_BYTES, parts=parts, notes=notes, derive=derive)

    return Case(
        "wgan-gp-step",
        f"B={BATCH_STEP}, 3×32×32",
        setup,
        "whole WGAN-GP critic step (DCGAN-style D, Adam): hand-written GP vs fastgp.gradient_penalty",
        target=("reference", 0.98),
        cuda_target=("reference", 1.0),
    )


# --------------------------------------------------------------------------------------------
# 4. R1 step: separate forwards vs the shared forward
# --------------------------------------------------------------------------------------------


def _r1_step(t: _Trainer, real: torch.Tensor, r1) -> callable:
    """Non-saturating loss on real images + R1 computed by ``r1(D)`` on its own forward."""

    def call():
        t.opt.zero_grad(set_to_none=True)
        loss = F.softplus(-t.D(real)).mean() + r1(t.D)
        loss.backward()
        t.opt.step()

    return call


def _r1_shared_step(t: _Trainer, real: torch.Tensor, r1, weight: float = R1_WEIGHT) -> callable:
    """One forward on real.requires_grad_(): the same logits feed the loss and R1."""

    def call():
        t.opt.zero_grad(set_to_none=True)
        x = real.detach().requires_grad_(True)
        logits = t.D(x)
        loss = F.softplus(-logits).mean() + r1(logits, x, weight)
        loss.backward()
        t.opt.step()

    return call


def _r1_step_case(shared_reference: bool) -> Case:
    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        D0 = make_discriminator().to(device)
        real, _ = _images(device)
        r1 = _fastgp("r1_penalty")
        contenders = {
            "fastgp": r1 if isinstance(r1, Unsupported) else _r1_shared_step(_Trainer(D0), real, r1),
        }
        if shared_reference:
            contenders["reference"] = _r1_shared_step(_Trainer(D0), real, reference_r1_shared)
            contenders["compile"] = _r1_shared_step(_Trainer(D0), real, _compile(reference_r1_shared))
            notes = [
                "reference = the shared forward written by hand (as GAN_stability's trainer does: "
                "x_real.requires_grad_(); d_real = D(x_real); loss and R1 from d_real)",
                "compile = torch.compile of the hand-written R1 head (autograd.grad + squared norm) "
                "applied to the shared logits",
            ]
        else:
            contenders["reference"] = _r1_step(_Trainer(D0), real, lambda D: reference_r1(D, real))
            contenders["compile"] = (lambda c: _r1_step(_Trainer(D0), real, lambda D: c(D, real)))(
                _compile(reference_r1)
            )
            notes = ["compile = torch.compile of the hand-written R1 function (its own forward of D)"]
        notes.append("copy-roofline moves the R1 head's minimal traffic (3× the batch's bytes)")
        return Setup(contenders, copy_bytes=3 * _numel(real.shape) * FLOAT_BYTES, notes=notes)

    if shared_reference:
        return Case(
            "r1-step-shared",
            f"B={BATCH_STEP}, 3×32×32",
            setup,
            "R1 step: hand-written shared forward vs fastgp.r1_penalty shared forward (no target)",
        )
    return Case(
        "r1-step",
        f"B={BATCH_STEP}, 3×32×32",
        setup,
        "R1 step on real images: D(real) for the loss + a second D(real.requires_grad_()) for R1, "
        "vs one shared forward with fastgp.r1_penalty",
        target=("reference", 1.6),
    )


# --------------------------------------------------------------------------------------------
# 5. R1 every step vs lazy R1 (interval 16, gain 16), amortized over 16 steps
# --------------------------------------------------------------------------------------------


def _lazy_case() -> Case:
    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        D0 = make_discriminator().to(device)
        real, _ = _images(device)

        def every_step(r1, t: _Trainer):
            one = _r1_shared_step(t, real, r1)

            def call():
                for _ in range(LAZY_INTERVAL):
                    one()

            return call

        contenders = {
            "reference": every_step(reference_r1_shared, _Trainer(D0)),
            # torch.compile of the hand-written R1 head on the shared logits, every step.
            "compile": every_step(_compile(reference_r1_shared), _Trainer(D0)),
        }
        r1, Lazy = _fastgp("r1_penalty"), _fastgp("LazyRegularizer")
        if isinstance(r1, Unsupported) or isinstance(Lazy, Unsupported):
            contenders["fastgp"] = r1 if isinstance(r1, Unsupported) else Lazy
        else:
            t = _Trainer(D0)
            lazy = Lazy(LAZY_INTERVAL)
            steps = itertools.count()

            def lazy_call():
                for _ in range(LAZY_INTERVAL):  # exactly one due step per 16 consecutive steps
                    step = next(steps)
                    due = lazy.due(step)
                    t.opt.zero_grad(set_to_none=True)
                    x = real.detach().requires_grad_(due)
                    logits = t.D(x)
                    loss = F.softplus(-logits).mean()
                    if due:
                        loss = loss + r1(logits, x, R1_WEIGHT * lazy.gain)
                    loss.backward()
                    t.opt.step()

            contenders["fastgp"] = lazy_call

        notes = [
            "one call = 16 consecutive steps; times, ops and bytes are per step (amortized)",
            "reference = R1 every step with the shared forward written by hand (the cheapest "
            "every-step form, so the ratio measures laziness alone); fastgp = LazyRegularizer(16): "
            "fastgp.r1_penalty with weight·gain on the due step, plain steps otherwise",
            "copy-roofline moves the R1 head's minimal traffic (3× the batch's bytes)",
        ]
        return Setup(
            contenders,
            copy_bytes=3 * _numel(real.shape) * FLOAT_BYTES,
            notes=notes,
            calls_per_run=LAZY_INTERVAL,
        )

    return Case(
        "lazy-r1",
        f"B={BATCH_STEP}, 3×32×32, interval {LAZY_INTERVAL}",
        setup,
        "R1 every step vs lazy R1 every 16th step with gain 16, per step amortized over 16 steps",
        target=("reference", 4.0),
    )



# --------------------------------------------------------------------------------------------
# 6. Penalties without double backward: method="jvp", eager and compiled
# --------------------------------------------------------------------------------------------


def _jvp_step_case(kind: str) -> Case:
    """A whole D step with the penalty by double backward (reference), by method="jvp" (fastgp)
    and by method="jvp" under torch.compile (compile): the one form of the three that compiles."""

    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        D0 = make_discriminator().to(device)
        real, fake = _images(device)
        gp, r1 = _fastgp("gradient_penalty"), _fastgp("r1_penalty")
        missing = gp if isinstance(gp, Unsupported) else r1 if isinstance(r1, Unsupported) else None
        if missing is not None:
            return Setup({name: missing for name in ("fastgp", "reference", "compile")}, copy_bytes=0)

        def wgan_gp_loss(D, method):
            def loss():
                penalty = gp(D, real, fake, kind="wgan-gp", weight=GP_WEIGHT, method=method)
                return D(fake).mean() - D(real).mean() + penalty

            return loss

        def r1_loss(D, method):
            extra = {"D": D} if method == "jvp" else {}

            def loss():  # the shared forward: one D(real) for the loss and R1
                x = real.detach().requires_grad_(True)
                logits = D(x)
                return F.softplus(-logits).mean() + r1(logits, x, R1_WEIGHT, method=method, **extra)

            return loss

        def step(method, compiled=False):
            t = _Trainer(D0)
            loss = (wgan_gp_loss if kind == "wgan-gp" else r1_loss)(t.D, method)
            if compiled:
                loss = torch.compile(loss, dynamic=False, mode="reduce-overhead" if device.type == "cuda" else None)

            def call():
                t.opt.zero_grad(set_to_none=True)
                loss().backward()
                t.opt.step()

            return call

        contenders = {
            "reference": step("double-backward"),
            "fastgp": step("jvp"),
            "compile": step("jvp", compiled=True),
        }

        def derive(m: dict[str, float]) -> dict:
            if "reference" not in m or "compile" not in m:
                return {}
            ratio = m["reference"] / m["compile"]
            return {
                "double_backward_over_compiled_jvp": ratio,
                "markdown": [f"speed-up of the compiled jvp step vs the eager double-backward step: {ratio:.2f}×"],
            }

        notes = [
            "reference = the step with fastgp's default method='double-backward' (eager: "
            "torch.compile refuses double backward); fastgp = the same step with method='jvp', eager; "
            "compile = torch.compile of the method='jvp' loss (the penalty and D's loss terms; "
            "backward and Adam eager, as in the other contenders"
            + ("; mode='reduce-overhead')" if device.type == "cuda" else ")"),
            "copy-roofline moves the penalty head's minimal traffic (3× the batch's bytes)",
        ]
        return Setup(contenders, copy_bytes=3 * _numel(real.shape) * FLOAT_BYTES, notes=notes, derive=derive)

    what = "WGAN-GP critic step" if kind == "wgan-gp" else "R1 step (shared forward, non-saturating loss)"
    return Case(
        f"{kind}-jvp-step",
        f"B={BATCH_STEP}, 3×32×32",
        setup,
        f"whole {what} (DCGAN-style D, Adam): penalty by double backward vs method='jvp' eager vs compiled",
    )


def cases() -> list[Case]:
    return [
        _head_case((64, 3, 32, 32)),
        _head_case((256, 3, 64, 64), large=True),
        _interp_case((64, 3, 32, 32)),
        _interp_case((256, 3, 64, 64), large=True),
        _wgan_gp_step_case(),
        _r1_step_case(shared_reference=False),
        _r1_step_case(shared_reference=True),
        _lazy_case(),
        _jvp_step_case("wgan-gp"),
        _jvp_step_case("r1"),
    ]
