"""Benchmark cases of the R3GAN recipe (float32, on the CPU or a CUDA GPU).

  d-step   one discriminator step of R3GAN (RpGAN + γ/2·(R1 + R2), backward, Adam step) on the
           DCGAN-style 32×32 D of the penalty cases (no batch norm; R3GAN's D has none either),
           B = 64 reals and 64 fakes, γ = 0.05 (R3GAN's CIFAR-10 base value):
           reference = R3GAN's ``AccumulateDiscriminatorGradients`` as its code writes it
           (brownvc/R3GAN, R3GAN/Trainer.py: D(real), D(fake), one autograd.grad per penalty);
           fastgp = ``fastgp.r1_r2_penalty`` (one forward on cat(real, fake), one autograd.grad,
           the fused penalty head) + ``fastgp.losses.d_relativistic_pairing``;
           compile = torch.compile of the reference step (the harness quotes its error if the
           double backward does not compile).

The setup first checks that both steps give the same loss and the same D gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.cases._same import assert_same
from bench.cases.penalty import BATCH_STEP, FLOAT_BYTES, _compile, _fastgp, _images, _numel, _Trainer, make_discriminator
from bench.harness import Case, Setup, Unsupported

GAMMA = 0.05  # R3GAN train.py, CIFAR-10 preset: gamma_scheduler base_value


def r3gan_penalty(samples: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """R3GAN's ZeroCenteredGradientPenalty: ‖∂ sum(logits)/∂samples_i‖² per sample."""
    (grad,) = torch.autograd.grad(outputs=logits.sum(), inputs=samples, create_graph=True)
    return grad.square().sum([1, 2, 3])


def r3gan_d_loss(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """R3GAN's AccumulateDiscriminatorGradients without the backward (Scale = 1)."""
    real = real.detach().requires_grad_(True)
    fake = fake.detach().requires_grad_(True)
    real_logits, fake_logits = D(real), D(fake)
    r1, r2 = r3gan_penalty(real, real_logits), r3gan_penalty(fake, fake_logits)
    adversarial = F.softplus(-(real_logits - fake_logits))
    return (adversarial + (GAMMA / 2) * (r1 + r2)).mean()


def fastgp_d_loss(fastgp):
    def loss(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        out = fastgp.r1_r2_penalty(D, real, fake, gamma=GAMMA)
        return fastgp.losses.d_relativistic_pairing(out.real_logits, out.fake_logits) + out.penalty

    return loss


def _step(t: _Trainer, real, fake, d_loss) -> callable:
    def call():
        t.opt.zero_grad(set_to_none=True)
        loss = d_loss(t.D, real, fake)
        loss.backward()
        t.opt.step()
        return loss

    return call


def _d_step_case() -> Case:
    def setup(device: torch.device) -> Setup:
        torch.manual_seed(0)
        # Logits [B], as R3GAN's D returns them (its loss adds [B] penalties to [B] losses).
        D0 = torch.nn.Sequential(make_discriminator(), torch.nn.Flatten(0)).to(device)
        real, fake = _images(device)
        module = _fastgp("r1_r2_penalty")
        if isinstance(module, Unsupported):
            ours = module
        else:
            import fastgp

            ours = _step(_Trainer(D0), real, fake, fastgp_d_loss(fastgp))
            # Same loss and D gradients as R3GAN's step, from the same weights (no optimizer step).
            check = []
            for d_loss in (fastgp_d_loss(fastgp), r3gan_d_loss):
                t = _Trainer(D0)
                loss = d_loss(t.D, real, fake)
                loss.backward()
                check.append((loss.detach(),) + tuple(p.grad for p in t.D.parameters()))
            assert_same("R3GAN D step: fastgp vs R3GAN's AccumulateDiscriminatorGradients", check[0], check[1],
                        rtol=1e-4, atol=1e-6)
        contenders = {
            "fastgp": ours,
            "reference": _step(_Trainer(D0), real, fake, r3gan_d_loss),
            "compile": _step(_Trainer(D0), real, fake, _compile(r3gan_d_loss)),
        }
        return Setup(contenders, copy_bytes=6 * _numel(real.shape) * FLOAT_BYTES, notes=[
            "reference = R3GAN's D step as its code writes it: two forwards, one autograd.grad per penalty",
            "fastgp = one forward of D on cat(real, fake), one autograd.grad over both, the fused head",
            "copy-roofline moves the two penalty heads' minimal traffic (3× the bytes of each batch)",
        ])

    return Case(
        "d-step",
        f"B={BATCH_STEP}+{BATCH_STEP}, 3×32×32",
        setup,
        "R3GAN D step (RpGAN + γ/2·(R1 + R2), backward, Adam): R3GAN's code vs fastgp.r1_r2_penalty",
    )


def cases() -> list[Case]:
    return [_d_step_case()]
