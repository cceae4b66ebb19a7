"""Reduced but faithful reproductions of the published experiments behind fastgp's regularizers.

``python -m fastgp.repro NAME`` trains every setting of experiment NAME for several seeds with the
reference trainer (:mod:`fastgp.train`) on the CPU and reports mean ± standard deviation over the
seeds of each run's final metrics (``--list`` names the experiments, ``--quick`` is a smoke run).
Each experiment below says what it compares, what the paper reports, and what was reduced to fit
a full run in about ten minutes on 2 CPU cores.

``zero-gp`` — Thanh-Tung, Tran & Venkatesh, "Improving Generalization and Stability of GANs"
(ICLR 2019). The mixture of 8 Gaussians on a circle of radius 10 (std 0.2), G and D the paper's
MLPs with 2 hidden layers of 64 ReLU units, the non-saturating loss; compared: no penalty, the
one-centred penalty at interpolates (WGAN-GP's, here with the non-saturating loss), R1 (zero-centred
on real samples) and the zero-centred penalty at interpolates, all with λ = 1. Metrics: modes
covered and the share of high-quality samples (within 3 std of a mode), for G and its EMA. The
paper argues that only the zero-centred penalty at interpolates keeps D's gradients pointing from
the fakes to the data everywhere on the line between them, so G spreads over every mode where an
unregularized GAN collapses. Reduced: 6,000 generator steps of batch 256 with Adam at two
timescales and an EMA of G (the trainer's default experiment) and 5 seeds; the authors' public code
defaults to 20,000 iterations of batch 128 with λ = 10.

``lipschitz`` — Zhou et al., "Lipschitz Generative Adversarial Nets" (ICML 2019). On 8 Gaussians
×10: the Lipschitz-GAN objective φ(x) = x − (α/β)·log σ(−βx) (``lgan-combined``, α = β = 1) with
the max gradient penalty (λ = 0.1) vs WGAN-GP (the Wasserstein loss with the one-centred penalty,
λ = 10); both with 5 D steps per G step and Adam at lr 10⁻³. Metric: the cosine between the final
D's gradient at G's samples and the direction to each sample's nearest real sample
(``fastgp.diagnostics.gradient_direction``, logged by the trainer as ``grad_cos``, and
``grad_cos_far`` over the samples farther than 3 std from the data), with modes and HQ share for
context. The paper proves that under a Lipschitz constraint a strictly convex φ makes the optimal
D's gradient at every fake point towards a real sample, while the Wasserstein objective (linear φ)
does not guarantee it. Reduced: 3,000 G steps (15,000 D steps) and 5 seeds, on the 2-D mixture
only (the paper also trains image GANs).
"""

from __future__ import annotations

from .runner import Experiment, Metric, ReproError, Setting, aggregate, run, summarize

__all__ = ["EXPERIMENTS", "Experiment", "Metric", "ReproError", "Setting", "aggregate", "get", "run", "summarize"]

# Columns shared by the 2-D experiments: the trainer's metrics of G and of its EMA.
MODES = Metric("modes", "modes covered (G)", ".1f")
HQ = Metric("hq", "HQ share (G)", ".2f")
EMA_MODES = Metric("ema_modes", "modes covered (EMA)", ".1f")
EMA_HQ = Metric("ema_hq", "HQ share (EMA)", ".2f")

PENALTY = "regularizers.penalty"

ZERO_GP = Experiment(
    name="zero-gp",
    title="gradient penalties on 8 Gaussians ×10",
    claim=(
        "Thanh-Tung et al. (ICLR 2019): the zero-centred gradient penalty at interpolates lets G cover every "
        "mode of the mixture; without it the GAN collapses onto a few modes."
    ),
    base={
        "data.name": "8gaussians",
        "data.scale": 10.0,
        "data.std": 0.2,
        "model.hidden": 64,
        "loss.name": "non-saturating",
        "optim.lr_d": 3.0e-3,
        "optim.lr_g": 1.0e-3,
        f"{PENALTY}.weight": 1.0,
    },
    settings=(
        Setting("none", "no penalty", {f"{PENALTY}.kind": "none"}),
        Setting("one-gp", "one-centred GP at interpolates (wgan-gp kind)", {f"{PENALTY}.kind": "wgan-gp"}),
        Setting("r1", "R1 (zero-centred on real)", {f"{PENALTY}.kind": "r1"}),
        Setting("zero-gp", "zero-centred GP at interpolates", {f"{PENALTY}.kind": "zero-gp"}),
    ),
    metrics=(MODES, HQ, EMA_MODES, EMA_HQ),
    steps=6000,
    seeds=5,
)

LIPSCHITZ = Experiment(
    name="lipschitz",
    title="direction of D's gradient: Lipschitz GAN vs WGAN-GP",
    claim=(
        "Zhou et al. (ICML 2019): with a Lipschitz constraint and a strictly convex objective (max-GP with the "
        "lgan-combined loss), D's gradient at each fake points at a real sample (cosine near 1); the Wasserstein "
        "objective (WGAN-GP) does not guarantee it."
    ),
    base={"data.name": "8gaussians", "optim.lr_d": 1.0e-3, "optim.lr_g": 1.0e-3, "optim.n_dis": 5},
    settings=(
        Setting("lgan-max-gp", "max-GP + lgan-combined loss", {
            "loss.name": "lgan-combined", "loss.params": {"alpha": 1.0, "beta": 1.0},
            f"{PENALTY}.kind": "max-gp", f"{PENALTY}.weight": 0.1,
        }),
        Setting("wgan-gp", "WGAN-GP (Wasserstein loss)", {
            "loss.name": "wasserstein", f"{PENALTY}.kind": "wgan-gp", f"{PENALTY}.weight": 10.0,
        }),
    ),
    metrics=(
        Metric("grad_cos", "cos(∇D, to nearest real), all fakes", ".2f"),
        Metric("grad_cos_far", "same, fakes > 3 std off the data", ".2f"),
        MODES,
        HQ,
    ),
    steps=3000,
    seeds=5,
)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (ZERO_GP, LIPSCHITZ)}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a ReproError listing the valid names otherwise."""
    if name not in EXPERIMENTS:
        raise ReproError(f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
