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

``lipschitz`` — Zhou et al., "Understanding the Effectiveness of Lipschitz Constraint in Training
of GANs via Gradient Analysis" (Theorem 3.3.1, Lemma 3.3.2, Fig. 4): under a Lipschitz constraint
(the penalty λ·k(f)²) the optimal D for given real and fake samples has, at every fake, a gradient
towards a real sample, for any objective of the Eq. 10 family (Wasserstein included); without the
constraint there is no such guarantee. Tested where the statement lives, the fixed-G study of
:mod:`fastgp.repro.optimal_d`: D alone trained on frozen samples, each of four Eq. 10 objectives
(Wasserstein, vanilla, least squares, the paper's x + softplus(x)) once with λ·k² (``max-gp``,
λ = 10) and once with no constraint, from the same initial D; in 2-D (512 reals of 8 Gaussians
×10 against 512 fakes from N(0, 6²·I), plus WGAN-GP) and in Fig. 4's setting (ten real 32×32
images against ten uniform-noise images). Metric: the cosine between ∇D at each fake and the
direction to a real sample (the nearest in 2-D, the best-aligned of the ten in the image setting);
5 seeds, paired differences constrained − unconstrained with bootstrap intervals, a judge over
them. Context: training runs of the 8-Gaussians GAN (combined loss + max-GP, WGAN-GP, the
non-saturating loss without penalty), 1,000 G steps, D's gradient direction at G's samples.

``far`` — Tao et al., "Alleviation of Gradient Exploding in GANs: Fake Can Be Real" (CVPR 2020).
R1 (λ = 10) vs R1 + Fake-As-Real (each D step scores M1 = 256 fresh fakes and trains the M0 = 16
that D rates lowest as real, in the place of 16 of the 64 reals; R1 is then taken on real ∪ FAR),
on a fixed sample of 64 points from N(0, I) (the paper's finite-data setting) and on 8 Gaussians
×10; LeakyReLU MLPs (with ReLU, D died under FAR on 8 Gaussians in the trainer's own test run).
Metrics: modes covered (the 64 points, or the 8 modes), the high-quality share (for the finite
sample: within 3·0.05 of a training point, i.e. close to a copy), and ‖∂D/∂x‖ at real samples,
the gradient the paper says explodes without FAR. The paper reports that FAR keeps D's gradients
bounded and reduces mode collapse on finite data. Reduced: 6,000 steps of batch 64 and 8 seeds
(4 in the first round, whose 8-Gaussians difference was within their spread).

``pcr-sc`` — Xuan et al., "On the Anomalous Generalization of GANs" (arXiv:1909.12638, 2019), on
its rectangles (32×32 images with exactly 2 separated 8×8 squares) with the DCGAN-style pair and
R1: vanilla vs sample correction (fakes within a normalized distance 0.1 of a training image
replaced by other fakes) vs pixel-wise combinations (the OR of two training images as extra
negatives) vs both. Metrics: the share of generated images with exactly 2 connected components (G
and EMA), the distance to the nearest training image, and how often SC acts: the share of fakes
it replaced over the whole run and the share of log intervals in which it replaced any
(``Metric.over_run``). The paper reports that GANs generate other counts and that both remedies
raise the share with the correct count. SC only acts on fakes that copy a training image, so the
run is made where G memorizes: a training set of 8 images, learning rate 1e-3 for both networks
(with the paper's 2e-4, SC replaced 13 % of the fakes at step 1,300 of a probe run; with 1e-3,
74 % at step 800), 800 steps, 3 seeds (12 runs of ~250 s on one CPU thread each). The first round (25,600 images, 2e-4, 1,500 steps, 2
seeds) never came within the threshold: SC never fired, while PCR raised the share with the
correct count from 0.23 to 0.38. Our normalized distance is the root-mean-square per-pixel
distance over the value range (2), threshold 0.1, i.e. an L2 distance of 6.4 for 32×32 images;
neither the paper's text available here (its abstract) nor code (the authors' was not found)
could check that definition.

``augment`` — the generalization analysis behind ``fastgp.augment``, with the generalization
paper's MLP GAN (G 100→128→256→512→1024→784 with batch norm, D 784→512→256→1, LeakyReLU 0.2) on
scikit-learn's 8×8 digits upsampled to 28×28 (an MNIST stand-in), spectral normalization on D and
no penalty. First: no augmentation vs translating every real and fake image into 15 copies with
shifts of up to s = 2 or s = 8 pixels (zero padding); metrics the final ‖∂D/∂x‖ at real images,
‖∂G/∂z‖ (mean Frobenius norms, ``fastgp.diagnostics.jacobian_norm``) and G's loss. The claim:
translation penalizes both Jacobians implicitly, more with larger shifts. Second: noise uniform on
[−s, s]^d (d = 100) for s ∈ {0.01, 1, 100}, with the measured quantity L·B_z defined as the final
mean ‖∂G/∂z‖ over the evaluation noise (L, a local average stand-in for G's Lipschitz constant in
z) times B_z = s·√d (the largest norm of such noise); the claim is that G absorbs the scale, so
L·B_z, the term of the generalization bound, does not change with s. Every setting builds G with
``model.g_norm=none`` (no normalization on the path from z): the paper's G has batch norm right
after its first layer, which removes the scale of z (G(10·z) = G(z) in training mode), so with it
the flat L·B_z of an earlier run (1,000 steps) said nothing about the argument; without it G has
to learn to absorb s, or not. Reduced: 600 steps of batch 64 and 2 seeds (a full run of 12 runs
is about 15 minutes on the shared 2-core machine).

``lecam`` — Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data" (CVPR
2021). Limited data: a fixed subset of 200 of the 1,797 digits (``data.subset``, the same for
every seed), with the MLP GAN of ``augment``, the hinge loss of the authors' BigGAN code and
spectral normalization on D; LeCam (λ = 0.3, decay 0.99, anchors averaging from the 100th G step) vs
none (the LeCam switch on with λ = 0: D's outputs are tracked and logged, training is that
without it). Metrics: the gap between D's mean outputs on its training reals and fakes (``d_gap``,
the paper's motivation: it grows as D overfits a small set), and the classifier-based quality and
coverage of the digits (KL of the class histogram from uniform, classifier confidence, distance
to the nearest training image). Reduced: 800 G steps of batch 64 (256 epochs of the subset) and 3
seeds; the paper trains BigGAN/StyleGAN2 on 10–20% of CIFAR and ImageNet for 100k+ iterations and
reports FID.
"""

from __future__ import annotations

import math

from . import latent_path, optimal_d, stats
from .runner import Experiment, Metric, ReproError, Setting, aggregate, run, summarize
from .stats import Comparison

__all__ = ["EXPERIMENTS", "Comparison", "Experiment", "Metric", "ReproError", "Setting", "aggregate", "get", "run",
           "run_mean", "share_positive", "stats", "summarize"]

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
    verdict=(
        "reproduced: without a penalty G collapses onto 1–3 of the 8 modes in every seed, with the zero-centred "
        "penalty at interpolates it covers all 8 in every seed. Not shown: an advantage of interpolates over real "
        "samples — R1 covers all 8 modes as well on this task."
    ),
)

LIPSCHITZ = Experiment(
    name="lipschitz",
    title="direction of D's gradient at the fakes, with and without a Lipschitz constraint",
    claim=(
        "Zhou et al.: under a Lipschitz constraint (λ·k²) the optimal D's gradient at each fake points towards a "
        "real sample, for any objective of the Eq. 10 family, Wasserstein included; without the constraint it "
        "has no such guarantee."
    ),
    quote=optimal_d.QUOTE,
    setting_note=optimal_d.SETTING_NOTE,
    base={"data.name": "8gaussians", "optim.lr_d": 1.0e-3, "optim.lr_g": 1.0e-3, "optim.n_dis": 5,
          "log.diag_every": 50},
    settings=(
        Setting("lgan-max-gp", "max-GP (λ = 0.1) + lgan-combined loss", {
            "loss.name": "lgan-combined", "loss.params": {"alpha": 1.0, "beta": 1.0},
            f"{PENALTY}.kind": "max-gp", f"{PENALTY}.weight": 0.1,
        }),
        Setting("wgan-gp", "WGAN-GP (Wasserstein loss)", {
            "loss.name": "wasserstein", f"{PENALTY}.kind": "wgan-gp", f"{PENALTY}.weight": 10.0,
        }),
        Setting("ns-none", "non-saturating loss, no constraint", {
            "loss.name": "non-saturating", f"{PENALTY}.kind": "none",
        }),
    ),
    metrics=(
        Metric("grad_cos", "cos(∇D, to nearest real), all fakes", ".2f"),
        Metric("grad_cos_far", "same, fakes > 3 std off the data", ".2f"),
        MODES,
        HQ,
    ),
    steps=1000,
    seeds=5,
    tail=5,
    comparisons=(
        Comparison("lgan-max-gp", "ns-none", "grad_cos", ">", "training: max-GP + lgan-combined > no constraint"),
        Comparison("wgan-gp", "ns-none", "grad_cos", ">", "training: WGAN-GP > no constraint"),
    ),
    study=optimal_d.study,
    own_files=(optimal_d.FIELD_PNG, optimal_d.IMAGES_PNG),
    judge=optimal_d.judge,
)

FINITE = {"data.name": "finite-gaussian", "data.scale": 1.0, "data.std": 0.05, "data.n_points": 64}
EIGHT = {"data.name": "8gaussians", "data.scale": 10.0, "data.std": 0.2}
FAR_KEY = "regularizers.fake-as-real"

FAR = Experiment(
    name="far",
    title="Fake-As-Real on a finite sample and on 8 Gaussians",
    claim=(
        "Tao et al. (CVPR 2020): on a finite training set D's gradient explodes as fakes approach the real points, "
        "which drives mode collapse; training the M0 lowest-scored of M1 fakes as real (FAR) keeps it bounded, so "
        "G spreads over more of the data."
    ),
    base={
        "batch_size": 64,
        "model.activation": "leaky-relu",
        f"{PENALTY}.kind": "r1",
        f"{PENALTY}.weight": 10.0,
        f"{FAR_KEY}.n_candidates": 256,
    },
    settings=(
        Setting("finite-r1", "finite Gaussian (64 points): R1", {**FINITE, f"{FAR_KEY}.n_far": 0}),
        Setting("finite-far", "finite Gaussian (64 points): R1 + FAR", {**FINITE, f"{FAR_KEY}.n_far": 16}),
        Setting("8g-r1", "8 Gaussians ×10: R1", {**EIGHT, f"{FAR_KEY}.n_far": 0}),
        Setting("8g-far", "8 Gaussians ×10: R1 + FAR", {**EIGHT, f"{FAR_KEY}.n_far": 16}),
    ),
    metrics=(
        Metric("modes", "modes or points covered (G)", ".1f"),
        HQ,
        EMA_HQ,
        Metric("grad_d_x", "‖∂D/∂x‖ at real", ".3g"),
    ),
    steps=6000,
    seeds=8,
    verdict=(
        "reproduced in part: FAR keeps D's input gradient at real samples bounded (about 170 times smaller on the "
        "finite sample, 15 times on 8 Gaussians), as the paper builds it to; it does not reduce collapse here, "
        "with 8 seeds: on the finite sample G covers fewer of the 64 points with FAR (25.9 ± 5.0 against "
        "37.8 ± 4.4), on 8 Gaussians the modes covered are the same within noise (6.6 ± 1.5 against 6.4 ± 1.9; "
        "all 8 modes in 3 of 8 seeds against 2 of 8, a collapse to 4 or fewer in 1 against 1)."
    ),
)

def run_mean(records: list, key: str) -> float | None:
    """The mean of ``key`` over a run's metrics records that have it (None if none has)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def share_positive(records: list, key: str) -> float | None:
    """The share of a run's metrics records whose ``key`` is > 0 (None if none has it)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(v > 0 for v in values) / len(values) if values else None


RECTANGLES = {
    "data.name": "rectangles", "data.n_rect": 2, "data.n_images": 25600, "model.name": "dcgan",
    "model.channels": 32, "noise.dim": 64, "batch_size": 64, "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4,
    "optim.beta1": 0.0, "optim.beta2": 0.99, f"{PENALTY}.kind": "r1", f"{PENALTY}.weight": 5.0,
    f"{PENALTY}.interval": 4, "log.eval_samples": 512,
}
PCR = {"regularizers.combine.mode": "or", "regularizers.combine.n_pairs": 0}
SC = {"regularizers.correction.enabled": True, "regularizers.correction.threshold": 0.1,
      "regularizers.correction.pool": 64}

PCR_SC = Experiment(
    name="pcr-sc",
    title="pixel-wise combinations and sample correction on rectangles",
    claim=(
        "Xuan et al. (2019): GANs trained on images of exactly 2 rectangles generate images with other counts "
        "(anomalous generalization); the OR of two training images as extra negatives (PCR) and replacing fakes "
        "that copy training images (SC) raise the share with the correct count."
    ),
    # Where G memorizes, so that SC has copies to correct (see the module docstring).
    base={**RECTANGLES, "data.n_images": 8, "optim.lr_d": 1.0e-3, "optim.lr_g": 1.0e-3},
    settings=(
        Setting("vanilla", "vanilla (R1 only)", {}),
        Setting("sc", "sample correction", SC),
        Setting("pcr", "pixel-wise combinations (or)", PCR),
        Setting("pcr-sc", "both", {**PCR, **SC}),
    ),
    metrics=(
        Metric("correct", "correct count (G)", ".2f"),
        Metric("ema_correct", "correct count (EMA)", ".2f"),
        Metric("ema_nn_dist", "distance to nearest training image (EMA)", ".3g"),
        Metric("sc_replaced_run", "SC: share of fakes replaced, whole run", ".3f",
               over_run=lambda records: run_mean(records, "sc_replaced")),
        Metric("sc_fired", "SC: share of log intervals where it fired", ".2f",
               over_run=lambda records: share_positive(records, "sc_replaced")),
    ),
    steps=800,
    seeds=3,
    # The smoke run skips the Jacobian diagnostics (no metric of this experiment uses them; the
    # DCGAN's exact ‖∂G/∂z‖ is most of a 4-step run's time).
    quick={"log.diag_every": 0},
    records=8,
    verdict=(
        "reproduced where G memorizes (8 training images): sample correction fires (it replaced 27 % of the fakes "
        "over the run, in 83 % of the log intervals) and raises the share with the correct count from 0.50 ± 0.05 "
        "to 0.65 ± 0.08 (every SC seed above every vanilla seed; EMA 0.45 → 0.67); pixel-wise combinations raise "
        "it to 0.61 ± 0.09 (the first round, on 25,600 images, 0.23 → 0.38), both to 0.62 ± 0.13 (EMA 0.76). "
        "Caveat: here the gain comes with copying — the distance to the nearest training image falls from 7.95 "
        "to 5.31 (SC) and 3.0 (both), and a copy of a training image always has the right count."
    ),
)

def lipschitz_times_bound(record: dict, cfg: dict) -> float | None:
    """L·B_z for uniform noise on [−s, s]^d: the final ‖∂G/∂z‖ (mean Frobenius norm over the
    evaluation noise) times B_z = s·√d, the largest ‖z‖; None for unbounded (normal) noise."""
    noise = cfg["noise"]
    if noise["dist"] != "uniform" or "jac_g_z" not in record:
        return None
    return record["jac_g_z"] * noise["scale"] * math.sqrt(noise["dim"])


AUG = "regularizers.augment"
AUGMENT = Experiment(
    name="augment",
    title="translation augmentation and the noise bound on digits (MLP GAN, spectral norm on D)",
    claim=(
        "the generalization analysis behind fastgp.augment: translating real and fake images before D penalizes "
        "the Jacobians of both players, more with larger shifts (smaller ‖∂D/∂x‖ and ‖∂G/∂z‖); rescaling the noise "
        "bound s leaves L·B_z unchanged, since G absorbs the scale."
    ),
    base={
        "data.name": "digits", "data.resolution": 28, "model.name": "mlp-gan", "model.g_norm": "none",
        "noise.dim": 100, "batch_size": 64, "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4, "optim.beta1": 0.5,
        "optim.beta2": 0.999, f"{PENALTY}.kind": "none", "regularizers.spectral-norm.d": True, "log.eval_samples": 1000,
    },
    settings=(
        Setting("none", "no augmentation", {}),
        Setting("translate-2", "translation, 15 copies, s = 2", {f"{AUG}.kind": "translate", f"{AUG}.copies": 15,
                                                               f"{AUG}.max_shift": 2}),
        Setting("translate-8", "translation, 15 copies, s = 8", {f"{AUG}.kind": "translate", f"{AUG}.copies": 15,
                                                               f"{AUG}.max_shift": 8}),
        Setting("uniform-0.01", "noise uniform on [−0.01, 0.01]", {"noise.dist": "uniform", "noise.scale": 0.01}),
        Setting("uniform-1", "noise uniform on [−1, 1]", {"noise.dist": "uniform", "noise.scale": 1.0}),
        Setting("uniform-100", "noise uniform on [−100, 100]", {"noise.dist": "uniform", "noise.scale": 100.0}),
    ),
    metrics=(
        Metric("grad_d_x", "‖∂D/∂x‖", ".3g"),
        Metric("jac_g_z", "‖∂G/∂z‖", ".3g"),
        Metric("g_loss", "G loss", ".3g"),
        Metric("lbz", "L·B_z", ".3g", derive=lipschitz_times_bound),
    ),
    steps=600,
    seeds=2,
    records=8,
    verdict=(
        "reproduced in part, with G free of batch norm (model.g_norm=none), 600 steps, 2 seeds: translation lowers "
        "‖∂G/∂z‖, more with larger shifts (6.3 → 2.7 → 1.7 at s = 2, 8), while ‖∂D/∂x‖ moves within the seeds' "
        "spread; L·B_z is not flat: 0.91, 167 and 258 for s = 0.01, 1, 100 — G absorbs most of a large scale "
        "(‖∂G/∂z‖ 65 times smaller at s = 100 than at s = 1) but none of a small one (at s = 0.01 it is 9.1, lower "
        "than at s = 1)."
    ),
)

LECAM_KEY = "regularizers.lecam"
LECAM = Experiment(
    name="lecam",
    title="LeCam regularization on 200 digits (MLP GAN, hinge loss, spectral norm on D)",
    claim=(
        "Tseng et al. (CVPR 2021): with limited training data D's outputs on reals and fakes drift apart as D "
        "overfits; the LeCam penalty, which pulls each towards a moving average of the other, keeps the gap small "
        "and improves the generated images (lower FID on 10-20% of CIFAR)."
    ),
    base={
        "data.name": "digits", "data.resolution": 28, "data.subset": 200, "model.name": "mlp-gan",
        "noise.dim": 100, "batch_size": 64, "loss.name": "hinge", "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4,
        "optim.beta1": 0.5, "optim.beta2": 0.999, f"{PENALTY}.kind": "none", "regularizers.spectral-norm.d": True,
        # start 99 with the iteration counted from 0 (the authors' itr) is start 100 counted from 1,
        # as these results were recorded; decay 0.99 was then the trainer's default (now 0.9).
        "log.eval_samples": 1000, f"{LECAM_KEY}.enabled": True, f"{LECAM_KEY}.start": 99,
        f"{LECAM_KEY}.decay": 0.99,
    },
    settings=(
        # Weight 0: the anchors and D's outputs are tracked and logged, training is that without LeCam.
        Setting("none", "no LeCam (λ = 0, outputs logged)", {f"{LECAM_KEY}.weight": 0.0}),
        Setting("lecam", "LeCam, λ = 0.3", {f"{LECAM_KEY}.weight": 0.3}),
    ),
    metrics=(
        Metric("d_gap", "D(real) − D(fake), training batches", ".3g"),
        Metric("kl", "KL(classes ‖ uniform) (G)", ".3f"),
        Metric("ema_kl", "KL(classes ‖ uniform) (EMA)", ".3f"),
        Metric("ema_confidence", "classifier confidence (EMA)", ".3f"),
        Metric("ema_nn_dist", "distance to nearest training image (EMA)", ".3g"),
    ),
    steps=800,
    seeds=3,
    quick={f"{LECAM_KEY}.start": 1, "data.subset": 64},
    records=8,
    verdict=(
        "reproduced in part: LeCam keeps D's real and fake outputs closer in every seed and moves the class histogram "
        "towards uniform, but the image-quality differences are within the seeds' spread, and the premise (the gap "
        "growing as D overfits the small set) does not show with a spectrally normalized MLP D in 800 steps."
    ),
)

LATENT_PATH = Experiment(
    name="latent-path",
    title="the zero-centred penalty on the straight line vs on G's latent path, 8 Gaussians ×10",
    claim=(
        "Thanh-Tung et al. (ICLR 2019, Appendix F, Algorithm 1): taking the zero-centred penalty at "
        "G(α·E(x) + (1−α)·z), on G's manifold between a real and a fake sample, instead of on the straight line "
        "between them; their Figure 9 shows G's samples along a straight latent line between two modes."
    ),
    base={**ZERO_GP.base, f"{PENALTY}.kind": "zero-gp"},
    settings=(
        Setting("r1", "0-GP on real samples (R1)", {f"{PENALTY}.kind": "r1"}),
        Setting("linear", "0-GP at interpolates (straight line)", {f"{PENALTY}.path": "linear"}),
        Setting("latent", "0-GP on the latent path (encoder)", {f"{PENALTY}.path": "latent"}),
    ),
    metrics=(
        MODES, HQ, EMA_MODES, EMA_HQ,
        Metric("line_off", "off-mode share along latent lines", ".2f"),
        Metric("line_switches", "mode switches per latent line", ".2f"),
    ),
    steps=4000,
    seeds=3,
    measure=latent_path.measure,
    figure=latent_path.figure,
    own_files=(latent_path.FIGURE,),
    verdict=(
        "not reproduced as an improvement: the latent path covered all 8 modes in two seeds but one seed collapsed to "
        "4 (its encoder fit worst), while the straight line covered all 8 in every seed; along straight latent lines "
        "between two modes all three generators put about a quarter of the samples off every mode (differences within "
        "one std). The encoder's objective is ours: the authors' public code has no encoder."
    ),
)

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (ZERO_GP, LIPSCHITZ, FAR, PCR_SC, AUGMENT, LECAM, LATENT_PATH)}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a ReproError listing the valid names otherwise."""
    if name not in EXPERIMENTS:
        raise ReproError(f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
