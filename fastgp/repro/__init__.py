"""Reduced but faithful reproductions of the published experiments behind fastgp's regularizers.

``python -m fastgp.repro NAME`` trains every setting of experiment NAME for several seeds with the
reference trainer (:mod:`fastgp.train`) on the CPU and reports mean ± standard deviation over the
seeds of each run's final metrics (``--list`` names the experiments, ``--quick`` is a smoke run).
Each experiment below says what it compares, what the paper reports, and what was reduced to fit
a full run in about ten minutes on 2 CPU cores.

``zero-gp`` — Thanh-Tung, Tran & Venkatesh, "Improving Generalization and Stability of GANs"
(ICLR 2019), Fig. 2: on 8 Gaussians scaled ×10, no GP, the one-centred GP at interpolates (1-GP) and
the zero-centred GP on samples (R1, the paper's "0-GP-sample") collapse, the zero-centred GP at
interpolates (0-GP) learns every mode. Run in the paper's regime (its code's data, 512-unit ReLU MLPs
with 4 Linear layers, plain SGD at lr 0.003, one D step per G step, λ = 10 on the gradient of D's
sigmoid output, batch 128), 5 seeds; metrics: modes covered and the high-quality share of G's samples
(within ``data.hq_radius`` = 1 of a centre), averaged over the last 3 logged points, with the modes
at mid-run and the most at any logged point; paired comparisons of 0-GP with each arm on modes, and a
judge that says "reproduced" only if 0-GP beats R1 too. The paper's 10,000 steps (an earlier run of
2,000 stopped too early to judge; ``ZERO_GP_SETTING``); ``zero-gp-trend.png`` plots modes against the step.
The round-2 regime (64 units, Adam, λ = 1), where R1 kept all 8 modes too, stays the setting of
``latent-path`` (``ADAM_8G``).

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

``far`` — Tao et al., "Alleviation of Gradient Exploding in GANs: Fake Can Be Real" (CVPR 2020),
Fig. 1 and Fig. 5, on the paper's finite-sample setting (64 points of N(0, I), batch 64, λ = 10,
lr 0.003, M0 = 16 of M1 = 256): no penalty vs GAN-0GP-sample (R1) vs GAN-0GP-sample + Fake-As-Real
(each D step trains the 16 of 256 fresh fakes that D rates lowest as real, in the place of 16 of
the 64 reals; R1 on real ∪ FAR). Generalization is scored against fresh draws of the true Gaussian
(the data's ``mmd`` metric, :mod:`fastgp.train.data`), memorization by the MMD to the training
points and the share of copies; Fig. 5's claim (losses near 2·log 2 and log 2 with FAR) from the
logged ``d_loss`` (without the penalty) and ``g_loss``. The paper's horizon (100k and 200k
iterations) is run to 100,000 with the half-way point standing for 100k against 200k; a fourth arm,
GAN-0GP-interpolation (the zero-centred GP at interpolates), is the paper's third overfitting GAN; 5 seeds, paired
comparisons and a judge (:mod:`fastgp.repro.far`). The 8-Gaussians arms of the earlier rounds
are dropped.

``pcr-sc`` — "On the Anomalous Generalization of GANs" (Xuan et al., arXiv:1909.12638; the text in
../shared/papers/anomalous-generalization-pcr-sc.txt), Fig. 1 / Sec. 5.2 / Appendix F: on 25,600
rectangles images (32×32, exactly 2 separated 8×8 squares) made as the paper's Appendix F makes
them (``data.siblings``: pairs from one 3-square image with a different square removed), four arms:
vanilla, PCR (the AND and the OR of sibling pairs, 1 and 3 squares, as extra negatives), SC (fakes
whose rectangle count is correct, counted by ``fastgp.correction.count_components``, replaced by
extra fakes with another count) and SC+PCR. Metric: Fig. 1's share of generated images with the
correct count, averaged over the last records of each run, paired by seed against vanilla with
bootstrap intervals. The reductions (model width, batch, steps, R1) are in ``setting_note``.

``sc-photos`` — the same paper, Sec. 5.3 / Fig. 5: sample correction with its natural-image measure
of reality, DIF (the normalized nearest L2 distance to the training set; realistic below 0.1), on
32 training images with batch 2, vanilla vs SC. The 32 natural images are tiles of scikit-learn's
two bundled photographs (``data.name=photos``: nothing is downloaded). Metrics: DIF of G's samples
late in training and over the whole run (Fig. 5's curve), and the share of the training images
some sample is nearest to (coverage; FID, which needs a download, is not measured). 6,000 G steps,
5 seeds, paired comparisons and a judge; the reductions are in ``SC_PHOTOS_NOTE``.

``augment`` — "Generalization and Stability of GANs: A theory and promise from data augmentation"
(../shared/papers/augmentation-generalization-stability.txt), Tables 1 and 2, with the MLP GAN
(G 100→128→256→512→1024→784 without batch norm, D 784→512→256→1, LeakyReLU 0.2) on scikit-learn's
8×8 digits upsampled to 28×28 (an MNIST stand-in), spectral normalization on D, no penalty. Table 1:
noise uniform on [−B_z, B_z]^100 for B_z ∈ {0.01, 1, 100}; the paper's L_Vg = max over 5,000 noise
vectors of ‖∂V_g/∂z‖, V_g = log(1 − D(G(z))) through D and the loss (:mod:`fastgp.repro.augment`),
times B_z, claimed to fall as B_z grows. Table 2: no augmentation vs 15 random translations of every
real and fake image with shifts up to 2 and 8 pixels; ‖∂D/∂x‖ and ‖∂G/∂z‖ claimed smaller with the
larger shift. 600 steps of batch 64, 5 seeds, paired comparisons and a judge; the reductions are in
``AUGMENT_NOTE``.

``sn-players`` — the same paper's Fig. 1: the vanilla (minimax) GAN with spectral normalization on
neither player, G only, D only or both, in ``augment``'s MLP-GAN-on-digits setting (no batch norm in
G). Claimed: no penalty is unstable and unconvergent, SN on G only makes G's gradient vanish, SN on
D trains well and SN on both makes ‖∂G/∂z‖ much smaller. Measured: ‖∂G/∂z‖, the classifier's
confidence, the swing of G's loss late in the run and, at the end, ‖∂V_g/∂φ‖ over G's parameters
(:func:`fastgp.repro.augment.measure_players`). 1,000 steps, 5 seeds, paired comparisons and a judge.

``lecam`` — Tseng et al., "Regularizing Generative Adversarial Networks under Limited Data" (CVPR
2021; not among the five papers, its premise tested here). Limited data: a fixed subset of 200 of
the 1,797 digits (``data.subset``, the same for every seed); the other 1,597 are held out. The MLP
GAN of ``augment`` with the hinge loss and spectral normalization on D; LeCam (λ = 0.3, decay 0.99,
anchors averaging from G step 99) vs none (the switch on with λ = 0: outputs logged, training
unchanged). Measured (:mod:`fastgp.repro.lecam_gap`): the final D's mean output on the training
digits and on the held-out digits, their gap and the AUC of telling them apart. Compared, paired by
seed: the premise (without LeCam, D scores its training reals above held-out reals) and the remedy
(LeCam narrows that gap). Reduced: 1,000 G steps of batch 64, 5 seeds; the paper trains BigGAN and
StyleGAN2 on 10–20 % of CIFAR and on ImageNet for 100k+ iterations and reports FID.

``latent-path`` — Thanh-Tung et al. again: Figure 9 and Sec. 6.2 claim that with the zero-centred
penalty on samples G "mode-jumps" along a straight latent line where 0-GP at interpolates moves
smoothly; Appendix F's Algorithm 1 (the penalty on G's latent path between a real and a fake, with
an encoder) has no experiment. On the ``zero-gp`` task, R1 vs 0-GP at interpolates vs 0-GP on the
latent path, measured by the jumpiness of G along straight latent lines between random codes
(:mod:`fastgp.repro.latent_path`: the largest step over the line's length, and the share of lines
whose largest step is more than half of it). Reduced: 6,000 G steps, 5 seeds.
"""

from __future__ import annotations

import math
import os

from . import augment, latent_path, lecam_gap, optimal_d, stats
from . import far as far_claim
from .runner import Experiment, Metric, ReproError, Setting, aggregate, run, summarize
from .stats import Comparison

__all__ = ["EXPERIMENTS", "Comparison", "Experiment", "Metric", "ReproError", "Setting", "aggregate", "get", "run",
           "late_std", "run_mean", "share_positive", "stats", "summarize"]

# Columns shared by the 2-D experiments: the trainer's metrics of G and of its EMA.
MODES = Metric("modes", "modes covered (G)", ".1f")
HQ = Metric("hq", "HQ share (G)", ".2f")
EMA_MODES = Metric("ema_modes", "modes covered (EMA)", ".1f")
EMA_HQ = Metric("ema_hq", "HQ share (EMA)", ".2f")

PENALTY = "regularizers.penalty"

# 8 Gaussians ×10 with Adam and 64-unit MLPs: the zero-gp experiment of rounds 1–2, kept as the
# setting of latent-path (which compares penalty paths there, not the paper's Fig. 2 regime).
ADAM_8G = {
    "data.name": "8gaussians",
    "data.scale": 10.0,
    "data.std": 0.2,
    "model.hidden": 64,
    "loss.name": "non-saturating",
    "optim.lr_d": 3.0e-3,
    "optim.lr_g": 1.0e-3,
    f"{PENALTY}.weight": 1.0,
}

ZERO_GP_QUOTE = """\
The first dataset is a mixture of 8 Gaussians. The dataset is scaled up by a factor of 10 to simulate the
situation in high dimensional space where random samples are far from each other. The result is shown in
Fig. 2. GANs with other gradient penalties all fail to learn the distribution and exhibit mode collapse
problem to different extents. GAN with our 0-GP (GAN-0-GP) can successfully learn the distribution.

— zero-centered-gp-thanh-tung.txt, Section 6.2 "Synthetic data"; the setting, from Fig. 2's caption: "The
discriminator is a 2 hidden layer MLP with 512 hidden neurons. The discriminator is updated once every
generator update. SGD is used for optimization. [...] (e) Our 0-GP with λ = 10, iter. 10,000. [...] (h) 1-GP
with λ = 10, iter. 10,000. (i) 0-GP-sample with λ = 10, iter. 10,000."\
"""

PAPER_STEPS = 10_000  # Fig. 2 (e), (h), (i): "iter. 10,000"
# At most this many modes in every arm (a quarter of the 8) is the early phase in which every GAN
# sits on one or two modes: collapse cannot be told from not having spread out yet.
EARLY_MODES = 2.0


ZERO_GP_STEPS = PAPER_STEPS
ZERO_GP_HQ_RADIUS = 1.0
ZERO_GP_SETTING = f"""\
**The paper's regime** (Fig. 2's caption, Appendix E, and the defaults of the authors' code,
htt210/GeneralizationAndStabilityInGANs `GradientPenaltiesGAN.py` and `Datasets.py`): 8 Gaussians on a
circle of radius 10/1.414 = 7.07 with std 0.02/1.414 = 0.014 (the code scales by 10, then divides the
sample by 1.414); 2-D Gaussian noise; G and D ReLU MLPs with 512 units and 4 Linear layers (Appendix E:
2×n, n×n, n×n, then n×2 or n×1; the caption's "2 hidden layer" is the code's `nlayers=2` besides the
input layer), D ending in a sigmoid, the BCE loss, G trained with BCE(D(G(z)), 1) (non-saturating);
plain SGD with learning rate 0.003 for G and D ("0.003 for both G and D"); one D step per G step; λ = 10
on the gradient of D's sigmoid output (the code's `cal_gradpen` differentiates `netD`, whose last module
is the sigmoid); batch 128 (the code's default; the paper does not state it); 10,000 iterations
(Fig. 2e, h, i); PyTorch's default initialization; no average of G. 1-GP is the same code with
`center=1` (the GAN loss, not WGAN's); the paper's "0-GP-sample" is `cal_gradpen` with α = 1, i.e. at
the real samples: R1.

**Run here**: all of that (the trainer options `optim.name=sgd`, `model.depth=3` and
`regularizers.penalty.output=probability` were added for it), 5 seeds, with these choices and deviations:

- **Length: the paper's {ZERO_GP_STEPS:,} generator steps (no deviation).** One step of the four arms together
  costs about 123 ms of one core at this width (measured: no GP 24, 1-GP 37, R1 29, 0-GP 33 ms), so the
  20 runs take about 1.7 CPU-hours; they were run two at a time (`--jobs 2`) on the shared 2-core
  machine. A first round-3 run stopped at 2,000 steps (20 %), where every arm still covered at most 2
  modes on average (0-GP 0.7, no GP 1.6, 1-GP 0.8, R1 1.4) and the judge said "not testable here"; at lr
  0.003 SGD moves G slowly (a probe: the samples' spread grows from 0.1 at step 200 to 3–5 at steps
  1,000–2,000, against 7.07 for the data). The middle and peak columns and `zero-gp-trend.png` (modes
  covered against the step) show each arm's path.
- **A sample counts towards a mode within {ZERO_GP_HQ_RADIUS} of its centre** (`data.hq_radius`; the
  trainer's default is 3·std = 0.042 here), about a fifth of the 5.41 between neighbouring centres, and
  a mode is covered when it holds at least 1/32 of 2,048 samples (a quarter of its fair share). With
  0.042, neither no GP nor 0-GP covered any mode in a probe of 2,000 / 1,250 steps: it measures a
  precision this short a run does not reach, not collapse.
- The metrics are G's (no EMA, as the paper shows G), each the mean over the run's last 3 logged points
  (every {ZERO_GP_STEPS // 20} steps).
- The judge calls the run "not testable here" while every arm covers at most {EARLY_MODES:.0f} of the 8
  modes on average. That threshold was set during a first full run of 1,200 steps, after its first 12
  runs (no GP, 1-GP, R1) had finished covering 0–2 modes and hopping between them; the judge written
  before that run called "not testable" only an average below one mode in every arm, and gave that run
  "reproduced in part" (modes, tail-averaged: 0-GP 1.2, no GP 0.7, 1-GP 0.6, R1 1.1; 0-GP − 1-GP +0.6
  [+0.1, +1.1], the other two intervals across 0). The 2,000-step run and this {ZERO_GP_STEPS:,}-step
  one were judged by the threshold set before they started. It withholds a verdict either way (a
  "reproduced" as well as a "not reproduced") while the arms are in that phase; the comparisons are
  reported regardless.

**Earlier regime, for context** (rounds 1–2: 64-unit MLPs with 3 Linear layers, Adam with lr 3e-3 / 1e-3,
λ = 1 on the logit's gradient, radius 10, std 0.2, 6,000 steps, 5 seeds): no GP 2.2 ± 0.8 modes, 1-GP
5.2 ± 1.8, R1 8.0 ± 0.0, 0-GP 8.0 ± 0.0 — R1 kept every mode there, which is why this run uses the
paper's own regime.
"""
# The paper's Fig. 2 regime, as its Appendix E and the authors' code (htt210/GeneralizationAndStabilityInGANs,
# GradientPenaltiesGAN.py defaults, Datasets.py) give it; see ZERO_GP_SETTING for each choice.
ZERO_GP_BASE = {
    "data.name": "8gaussians",
    "data.scale": 10 / 1.414,  # the code's ToyDataset(scale=10) divides its sample by 1.414
    "data.std": 0.02 / 1.414,
    "noise.dim": 2,
    "model.hidden": 512,
    "model.depth": 3,  # Appendix E's 4 Linear layers (the code's nlayers=2 plus its input layer)
    "loss.name": "non-saturating",  # BCE on a sigmoid D, G trained with BCE(D(G(z)), 1)
    "optim.name": "sgd",
    "optim.lr_d": 3.0e-3,
    "optim.lr_g": 3.0e-3,
    "optim.n_dis": 1,
    "batch_size": 128,
    "ema.decay": 0.0,  # the paper shows G itself
    f"{PENALTY}.weight": 10.0,
    f"{PENALTY}.output": "probability",  # the code penalizes the gradient of D's sigmoid output
    "data.hq_radius": ZERO_GP_HQ_RADIUS,  # see ZERO_GP_SETTING
    "log.diag_every": 0,  # no metric here needs the Jacobian diagnostics
}

ZERO_GP_ARMS = ("none", "one-gp", "r1")


def zero_gp_judge(results: dict) -> str:
    """The verdict of zero-gp from its paired comparisons on modes covered: 0-GP against no GP,
    1-GP and R1. Reproduced only if 0-GP covers more modes than all three (the paper's Fig. 2
    claim, R1 included); in part if it beats some; not reproduced if it beats none; not testable
    while no arm covers more than a quarter of the modes on average (the run stopped in the early
    phase, before collapse and coverage part ways)."""
    comps = {c["b"]: c for c in results["comparisons"] if c["a"] == "zero-gp" and c["key"] == "modes"}
    missing = [b for b in ZERO_GP_ARMS if b not in comps]
    if missing:
        raise ValueError(f"zero-gp's judge needs the comparisons of zero-gp with {', '.join(missing)} on modes")
    means = {s["name"]: s["summary"]["modes"]["mean"] for s in results["settings"]}
    shown = ", ".join(f"{ZERO_GP_NAMES[n]} {means[n]:.1f}" for n in ("zero-gp", *ZERO_GP_ARMS) if means.get(n) is not None)
    steps = results["steps"]

    def diff(b):
        c = comps[b]
        if c["mean"] is None:
            return f"{ZERO_GP_NAMES[b]} —"
        interval = "" if c["lo"] is None else f" [{c['lo']:+.1f}, {c['hi']:+.1f}]"
        return f"{ZERO_GP_NAMES[b]} {c['mean']:+.1f}{interval}"

    numbers = (f" (modes covered after {steps} steps, {steps / PAPER_STEPS:.0%} of the paper's {PAPER_STEPS:,}: "
               f"{shown} of 8; 0-GP minus " + ", ".join(diff(b) for b in ZERO_GP_ARMS) + ").")
    if not any(m is not None and m > EARLY_MODES for m in means.values()):
        return (f"not testable here: every arm still covers at most {EARLY_MODES:.0f} of the 8 modes on average, the "
                "early phase in which GANs sit on one or two modes, so collapse cannot be told from not having "
                "spread out yet" + numbers)
    won = [b for b in ZERO_GP_ARMS if comps[b]["outcome"] == stats.AS_CLAIMED]
    lost = [b for b in ZERO_GP_ARMS if comps[b]["outcome"] == stats.OPPOSITE]
    rest = [b for b in ZERO_GP_ARMS if b not in won]
    if len(won) == len(ZERO_GP_ARMS):
        return ("reproduced: 0-GP covers more modes than no GP, 1-GP and R1, each paired difference's 95 % interval "
                "above 0" + numbers)
    if won:
        part = " and ".join(ZERO_GP_NAMES[b] for b in won)
        others = " and ".join(ZERO_GP_NAMES[b] for b in rest)
        how = "R1 covers more modes than 0-GP" if lost == ["r1"] else (
            f"against {others} the interval " + ("lies below 0" if set(rest) <= set(lost) else "includes 0"))
        return f"reproduced in part: 0-GP covers more modes than {part}, not more than {others} ({how})" + numbers
    return ("not reproduced: 0-GP covers no more modes than any of no GP, 1-GP and R1 (no paired interval above 0)"
            + numbers)


ZERO_GP_NAMES = {"zero-gp": "0-GP", "none": "no GP", "one-gp": "1-GP", "r1": "R1"}


def modes_at_half(records: list) -> float | None:
    """Modes covered at the middle of the run: the last record at or before half of its last step."""
    present = [r for r in records if r.get("modes") is not None]
    if not present:
        return None
    half = present[-1]["step"] / 2
    return float(([r for r in present if r["step"] <= half] or present[:1])[-1]["modes"])


def modes_peak(records: list) -> float | None:
    """The most modes covered at any logged point of the run (above the final value: it lost modes)."""
    values = [r["modes"] for r in records if r.get("modes") is not None]
    return float(max(values)) if values else None


ZERO_GP_TREND = "zero-gp-trend.png"


def trend(key: str, what: str, file: str, ylim: tuple[float, float] | None = None,
          line: tuple[float, str] | None = None):
    """An experiment's ``figure``: ``key`` of the metrics records against the step for each arm,
    each seed thin and the mean over seeds thick, so the reader sees where each arm was going when
    the run stopped (and, for a curve claimed "during training", the whole course). ``line``:
    (value, label) of a dashed horizontal reference line."""
    def figure(results: dict, out_dir: str) -> str:
        from ..train.plots import _pyplot
        from .runner import read_records

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 3.8))
        for i, s in enumerate(results["settings"]):
            curves = [[(r["step"], r[key]) for r in read_records(os.path.join(out_dir, run["dir"])) if key in r]
                      for run in s["runs"]]
            for curve in curves:
                ax.plot(*zip(*curve), color=f"C{i}", alpha=0.25, linewidth=0.8)
            steps = sorted({step for curve in curves for step, _ in curve})
            mean = [sum(dict(c).get(step, math.nan) for c in curves) / len(curves) for step in steps]
            ax.plot(steps, mean, color=f"C{i}", linewidth=2, label=s["label"])
        ax.set_xlabel("generator step")
        ax.set_ylabel(what)
        if ylim is not None:
            ax.set_ylim(*ylim)
        if line is not None:
            ax.axhline(line[0], color="grey", linestyle="--", linewidth=1, label=line[1])
        ax.legend(fontsize=7, loc="upper left")
        quick = "\n[QUICK: smoke run, not a result]" if results["quick"] else ""
        ax.set_title(f"{results['experiment']}: {what} during training, {len(results['seeds'])} seeds (thin: each "
                     f"seed, thick: mean){quick}", fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, file), dpi=100)
        plt.close(fig)
        return file
    return figure


ZERO_GP = Experiment(
    name="zero-gp",
    title="gradient penalties on 8 Gaussians ×10 in the paper's Fig. 2 regime (SGD, 512 units, λ = 10)",
    claim=(
        "Thanh-Tung et al. (ICLR 2019), Fig. 2: on 8 Gaussians scaled ×10, GANs with no GP, 1-GP and the "
        "zero-centred GP on samples (R1) collapse onto some modes; only the zero-centred GP at interpolates "
        "(0-GP) learns every mode."
    ),
    quote=ZERO_GP_QUOTE,
    setting_note=ZERO_GP_SETTING,
    base=ZERO_GP_BASE,
    settings=(
        Setting("none", "no GP", {f"{PENALTY}.kind": "none"}),
        Setting("one-gp", "1-GP at interpolates (wgan-gp kind, non-saturating loss)", {f"{PENALTY}.kind": "wgan-gp"}),
        Setting("r1", "R1: zero-centred GP on real samples (0-GP-sample)", {f"{PENALTY}.kind": "r1"}),
        Setting("zero-gp", "0-GP: zero-centred GP at interpolates", {f"{PENALTY}.kind": "zero-gp"}),
    ),
    metrics=(
        MODES,
        HQ,
        Metric("modes_half", "modes covered at mid-run (G)", ".1f", over_run=modes_at_half),
        Metric("modes_peak", "most modes covered at any logged step (G)", ".1f", over_run=modes_peak),
    ),
    steps=ZERO_GP_STEPS,
    seeds=5,
    records=20,
    tail=3,
    # The smoke run's networks are tiny (the tests train zero-gp quick, in two processes too).
    quick={"model.hidden": 16, "model.depth": 2, "batch_size": 32},
    comparisons=tuple(
        Comparison("zero-gp", b, "modes", ">", f"0-GP > {ZERO_GP_NAMES[b]}") for b in ZERO_GP_ARMS
    ),
    judge=zero_gp_judge,
    figure=trend("modes", "modes covered (of 8)", ZERO_GP_TREND, ylim=(-0.3, 8.3)),
    own_files=(ZERO_GP_TREND,),
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
FAR_KEY = "regularizers.fake-as-real"
FAR_TAIL = 5
FAR_STEPS = 100_000

FAR = Experiment(
    name="far",
    title="Fake-As-Real on a finite sample of a Gaussian: generalization and loss levels",
    claim=(
        "Tao et al. (CVPR 2020): on 64 points of a Gaussian, GANs with no penalty or with the zero-centred penalty "
        "on samples overfit (G neither covers the Gaussian nor fits the points), worse with longer training; with "
        "Fake-As-Real G generalizes, and D's and G's losses stay near 2·log 2 and log 2 (Fig. 5)."
    ),
    quote=far_claim.QUOTE,
    setting_note=(
        "**Paper:** 64-point batches from a finite sample of a 2-D Gaussian, MLP GANs, λ = 10 for every penalty, "
        "M0 = 16 of M1 = 256 fakes trained as real, learning rate 0.003 for G and D; pictures at 100,000 and "
        "200,000 iterations (Fig. 1), judged by eye. Fig. 5 (the losses) is on CIFAR-10 with a ResNet "
        "GAN-0GP-sample, RMSProp at 1e-4, M0 = 32, 500k iterations.\n\n"
        "**Run here:** the same finite-sample setting (64 points of N(0, I), batch 64, λ = 10, M0 = 16, "
        "M1 = 256, lr 0.003 for both, Adam — the paper does not name the toy optimizer), MLPs with 2 hidden "
        "layers of 64 LeakyReLU units (the paper does not give its widths), four arms: no penalty, "
        "GAN-0GP-sample, GAN-0GP-interpolation (λ = 10 on the gradient at random interpolates of the real and fake "
        "batch, the paper's Fig. 1c/g) and GAN-0GP-sample + FAR. GAN-0GP-sample is the zero-centred penalty on the real batch "
        "(R1, Mescheder et al.), which is what the paper's Eq. 12 and its code base (Mescheder et al.'s) use; "
        "with FAR it is taken on real ∪ FAR, as Eq. 12 says. 5 seeds (each seed its own 64 points).\n\n"
        f"**Deviations and why:** {FAR_STEPS:,} iterations (G steps, one D step each): the paper's first "
        "horizon, not its second (200,000), so that the 20 runs fit about 50 minutes of both shared cores (a "
        "round-3 run stopped at 25,000); \"100k against 200k\" is tested as the run's half-way point (50,000) "
        "against its end, at half the paper's scale. The pictures are "
        "replaced by numbers, each the mean over the last 5 of 40 logged points of a run: `mmd`, the unbiased "
        "squared MMD with a Gaussian kernel of bandwidth 1 (the Gaussian's std) between 1,024 samples of G and "
        "2,048 fresh draws of N(0, I) never trained on (generalization: fits the distribution); `mmd_train`, the "
        "same against the 64 training points (fits the finite sample); the share of G's samples within 0.15 "
        "of a training point (copies: memorization; a sample of the true Gaussian scores about 0.3 there); "
        "the training points covered. On constructed samples (tests/test_repro_far.py) a true sample scores "
        "MMD ≈ 0, copies of the 64 points about 0.015, samples on 3 of them about 0.15. Fig. 5's claim is "
        "tested on this setting, not on CIFAR-10: |d_loss − 2·log 2| and |g_loss − log 2| averaged over the "
        "last 5 logged points; `d_loss` is the trainer's main D loss without the penalty (the penalty is "
        "logged apart), as in Fig. 5, and under FAR it counts the FAR fakes among the reals, as Eq. 12 does. "
        "The judge counts Fig. 5's comparison only where the baseline's D loss drifts at all (mean "
        f"|d_loss − 2 log 2| >= {far_claim.LOSS_DRIFT}): where 0GP-sample's loss already sits at 2 log 2 there is "
        "no drift for FAR to prevent. "
        "Left out: the 8-Gaussians arms of the earlier rounds (the paper's Fig. 2 runs to 500k iterations; "
        "compute)."
    ),
    base={
        **FINITE,
        "batch_size": 64,
        "model.activation": "leaky-relu",
        "optim.lr_d": 3.0e-3,
        "optim.lr_g": 3.0e-3,
        f"{PENALTY}.weight": 10.0,
        f"{FAR_KEY}.n_candidates": 256,
        "log.eval_samples": 1024,
    },
    settings=(
        Setting("finite-none", "no penalty", {f"{PENALTY}.kind": "none", f"{FAR_KEY}.n_far": 0}),
        Setting("finite-r1", "GAN-0GP-sample (R1, λ = 10)", {f"{PENALTY}.kind": "r1", f"{FAR_KEY}.n_far": 0}),
        Setting("finite-0gp", "GAN-0GP-interpolation (λ = 10)", {f"{PENALTY}.kind": "zero-gp", f"{FAR_KEY}.n_far": 0}),
        Setting("finite-far", "GAN-0GP-sample + FAR (M0 = 16 of 256)",
                {f"{PENALTY}.kind": "r1", f"{FAR_KEY}.n_far": 16}),
    ),
    metrics=(
        Metric("mmd", "MMD² to fresh Gaussian samples (G)", ".4f"),
        Metric("mmd_mid", "same, at half the run", ".4f", over_run=far_claim.at_half("mmd", FAR_TAIL)),
        Metric("ema_mmd", "MMD² to fresh samples (EMA)", ".4f"),
        Metric("mmd_train", "MMD² to the 64 training points (G)", ".4f"),
        Metric("hq", "share of copies (within 0.15 of a training point)", ".2f"),
        Metric("modes", "training points covered (of 64)", ".1f"),
        Metric("d_dev", "|d_loss − 2 log 2|", ".3g", over_run=far_claim.loss_gap("d_loss", far_claim.D_OPTIMUM, FAR_TAIL)),
        Metric("g_dev", "|g_loss − log 2|", ".3g", over_run=far_claim.loss_gap("g_loss", far_claim.G_OPTIMUM, FAR_TAIL)),
        Metric("grad_d_x", "‖∂D/∂x‖ at real", ".3g"),
    ),
    steps=FAR_STEPS,
    seeds=5,
    records=40,
    tail=FAR_TAIL,
    comparisons=(
        Comparison("finite-far", "finite-r1", "mmd", "<", "fit: FAR nearer the true Gaussian than 0GP-sample (Fig. 1h vs 1f)"),
        Comparison("finite-far", "finite-0gp", "mmd", "<",
                   "fit: FAR nearer the true Gaussian than 0GP-interpolation (Fig. 1h vs 1g)"),
        Comparison("finite-far", "finite-r1", "d_dev", "<", "loss-d: D's loss nearer 2 log 2 with FAR (Fig. 5)"),
        Comparison("finite-far", "finite-r1", "g_dev", "<", "loss-g: G's loss nearer log 2 with FAR (Fig. 5)"),
        Comparison("finite-r1", "finite-none", "mmd", "<", "premise: 0GP-sample nearer the Gaussian than no GP (Fig. 1f vs 1e)"),
        Comparison("finite-r1", "finite-r1", "mmd", ">", "premise: 0GP-sample farther from the Gaussian at the end than "
                   "half-way (Fig. 1f vs 1b)", b_key="mmd_mid"),
        Comparison("finite-none", "finite-none", "mmd", ">", "premise: no GP farther from the Gaussian at the end than "
                   "half-way (Fig. 1e vs 1a)", b_key="mmd_mid"),
        Comparison("finite-0gp", "finite-0gp", "mmd", ">", "premise: 0GP-interpolation farther from the Gaussian at the "
                   "end than half-way (Fig. 1g vs 1c)", b_key="mmd_mid"),
        Comparison("finite-far", "finite-none", "mmd", "<", "context: FAR nearer the true Gaussian than no GP"),
        Comparison("finite-far", "finite-none", "d_dev", "<", "context: D's loss nearer 2 log 2 with FAR than with no GP"),
        Comparison("finite-r1", "finite-none", "d_dev", "<", "context: D's loss nearer 2 log 2 with 0GP-sample than with no GP"),
    ),
    judge=far_claim.judge,
)

def run_mean(records: list, key: str) -> float | None:
    """The mean of ``key`` over a run's metrics records that have it (None if none has)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(values) / len(values) if values else None


def late_std(key: str):
    """over_run: the sample standard deviation of ``key`` over the records of the run's second half
    (how much a logged loss still swings once the run is under way; None with fewer than 2)."""
    def value(records: list) -> float | None:
        steps = [r["step"] for r in records if r.get(key) is not None]
        if not steps:
            return None
        late = [float(r[key]) for r in records if r.get(key) is not None and r["step"] > max(steps) / 2]
        if len(late) < 2:
            return None
        mean = sum(late) / len(late)
        return math.sqrt(sum((v - mean) ** 2 for v in late) / (len(late) - 1))
    return value


def share_positive(records: list, key: str) -> float | None:
    """The share of a run's metrics records whose ``key`` is > 0 (None if none has it)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return sum(v > 0 for v in values) / len(values) if values else None


# The columns pcr-sc and sc-photos share: memorization and how much sample correction acted.
SC_METRICS = (
    Metric("nn_dist", "distance to nearest training image (G)", ".3g"),
    Metric("sc_replaced_run", "SC: share of fakes replaced, whole run", ".3f",
           over_run=lambda records: run_mean(records, "sc_replaced")),
    Metric("sc_fired", "SC: share of log intervals where it fired", ".2f",
           over_run=lambda records: share_positive(records, "sc_replaced")),
)

PCR_SC_QUOTE = """As shown in Figure 1 (right), compared to the vanilla approach, the SC approach (SC) almost eliminates \
the anomalous generalization and the proportion of correct images (rectangle number is 2) goes up to 97%. The \
Pixel-wise Combination Regularization (PCR) approach also improves the proportion but is stuck at 70%. [...] \
Combining these two methods, the SC+PCR approach converges to 99%, much more quickly than other approaches, showing \
the existences of the two problems and the effects of our methods.
— anomalous-generalization-pcr-sc.txt, Sec. 5.2 (Figure 1, right)

The samples with true rectangle number is discarded. The selection can be implemented efficiently by counting the \
number of rectangle using straight forward counting algorithm. [...] for each 3-number-rectangle image, we randomly \
remove one rectangle out of the three. The remove is done twice for each 3-number-rectangle image. [...] we could \
obtain the pixel-wisely average images easily, *i.e.* pixel-wise logic-or or logic-and, which are \
3-number-rectangle or 1-number-rectangle respectively. These precomputed additional images are used as additional \
negative training samples for the PCR approach.
— anomalous-generalization-pcr-sc.txt, Appendix F"""

PCR_SC_STEPS, PCR_SC_BATCH, PCR_SC_LR = 600, 32, 1.0e-3

PCR_SC_NOTE = f"""**Paper (Fig. 1, Sec. 5.2, Appendix F).** 25,600 binary 32×32 images, each with exactly two 8×8 \
rectangles, made in pairs from 3-rectangle images (one rectangle removed, twice). Vanilla GAN against SC (the \
generated samples with the correct count are discarded from D's negative batch, found by counting), PCR (the \
pixel-wise AND, 1 rectangle, and OR, 3 rectangles, of each pair as extra negatives, D loss E_real f1 + \
½[E_fake f2 + E_comb f2], Eq. 13) and SC+PCR. Fig. 1 plots the proportion of generated images with 2 rectangles \
during training: about 97 % (SC), 70 % (PCR), 99 % (SC+PCR), vanilla far lower ("improve the proportion of \
correct generated images by almost 80%", Sec. 1). The paper names no architecture, batch size, number of steps \
or learning rate for this experiment; its only stated optimizer is Adam (α = 2e-4, β1 = 0.5, β2 = 0.9, Sec. 5.3, \
natural images).

**Here.** The same data (25,600 images, `data.siblings=true`: the Appendix F pairs; their AND / OR hold exactly 1 \
/ 3 squares), Adam with the paper's β (0.5, 0.9) at learning rate {PCR_SC_LR:g} for G and D, the trainer's DCGAN \
pair with 16 base channels, batch {PCR_SC_BATCH}, {PCR_SC_STEPS} generator steps, 5 seeds, no EMA of G (Fig. 1 \
plots G). Counting (the metric and SC's measure): pixels > 0, 4-connected components \
(`fastgp.correction.count_components`; touching squares count as one, a stray pixel as one more). PCR: \
`combine.source=siblings`, `mode=and-or` — {PCR_SC_BATCH} combinations per D step, the first half ANDs of random \
sibling pairs, the second half ORs. SC: `correction.measure=count`; the realistic fakes are replaced by fakes with \
another count from {PCR_SC_BATCH} extra fakes per D step (the paper's Sec. 5.1 "replace"; where no extra fake \
qualifies, nothing is replaced). The metric: the share of 512 fixed-noise samples of G with exactly 2 \
components, averaged over each run's last 3 of 6 logged points (steps {PCR_SC_STEPS * 4 // 6}, \
{PCR_SC_STEPS * 5 // 6}, {PCR_SC_STEPS}).

**Deviations and why.** (1) Compute: the whole run has to fit about 40 minutes of one CPU core shared with four \
other engineers' runs (it got 13–20 % of a core while this was sized; the recorded run took 513 CPU-s, 26 \
minutes of wall time at 32 % of a core), so the model is narrow (16 channels), the \
batch 32 and each run {PCR_SC_STEPS} steps — {PCR_SC_STEPS * PCR_SC_BATCH:,} images seen, \
{PCR_SC_STEPS * PCR_SC_BATCH / 25600:.2f} epochs. The paper's curves run much longer: this tests the early part \
of Fig. 1 (where SC+PCR "converges [...] much more quickly"), not the final 97 / 70 / 99 %. (2) Learning rate \
{PCR_SC_LR:g}, not 2e-4: at 2e-4 a probe's vanilla G drew no image with the correct count in 600 steps (batch 32) \
and an earlier one none in 2,700 (batch 16, no penalty), so SC, which acts only on fakes with the correct count, \
would have had nothing to discard within the budget; at {PCR_SC_LR:g} the probes drew 14 % (vanilla, step 700) \
and 37 % (SC+PCR, step 500). (3) Every arm has a lazy R1 penalty (γ = 5 every 4 D steps), as in the earlier \
rounds: without it the 2,700-step probe's D won outright. The paper does not say whether it used a penalty. \
(4) The natural-image variant of SC (nearest distance < 0.1, 32 training images, batch 2; Sec. 5.3, Fig. 5) is \
its own experiment, `sc-photos` (32 tiles of scikit-learn's photographs; a first probe on 32 digits never came \
within the paper's 0.1 of a training digit in 1,500 steps)."""


def judge_pcr_sc(results: dict) -> str:
    """The verdict from the paired comparisons of SC, PCR and SC+PCR against vanilla on the share of
    correct counts: all three as claimed: reproduced; some: reproduced in part; none: not reproduced,
    or not testable here where sample correction never acted (a G that never draws the correct count
    leaves SC nothing to discard)."""
    arms = ("sc", "pcr", "pcr-sc")
    by = {c["a"]: c for c in results["comparisons"] if c["key"] == "correct" and c["b"] == "vanilla"}
    fired = {s["name"]: (s["summary"].get("sc_replaced_run") or {}).get("mean") for s in results["settings"]}
    numbers = "; ".join(f"{n} − vanilla {stats.fmt_interval(by[n], '.3f')}, {by[n]['outcome']}" for n in arms)
    claimed = [n for n in arms if by[n]["outcome"] == stats.AS_CLAIMED]
    idle = [n for n in ("sc", "pcr-sc") if not fired.get(n)]
    if len(claimed) == len(arms):
        return f"reproduced: SC, PCR and SC + PCR each raise the share of correct counts over vanilla ({numbers})"
    if claimed:
        why = f"; SC never acted in {', '.join(idle)}" if idle else ""
        rest = [n for n in arms if n not in claimed]
        verb = "raises" if len(claimed) == 1 else "raise"
        return (f"reproduced in part: {' and '.join(claimed)} {verb} the share of correct counts over vanilla, "
                f"{' and '.join(rest)} not ({numbers}{why})")
    if idle:
        return (f"not testable here: sample correction never acted in {', '.join(idle)} (G drew no image with the "
                f"correct count to discard), and no remedy raised the share of correct counts ({numbers})")
    return f"not reproduced: no remedy raises the share of correct counts over vanilla ({numbers})"


RECTANGLES = {
    "data.name": "rectangles", "data.n_rect": 2, "data.n_images": 25600, "data.siblings": True, "model.name": "dcgan",
    "model.channels": 16, "noise.dim": 64, "batch_size": PCR_SC_BATCH, "optim.lr_d": PCR_SC_LR,
    "optim.lr_g": PCR_SC_LR, "optim.beta1": 0.5, "optim.beta2": 0.9, f"{PENALTY}.kind": "r1", f"{PENALTY}.weight": 5.0,
    f"{PENALTY}.interval": 4, "ema.decay": 0.0, "log.eval_samples": 512, "log.diag_every": 0,
}
PCR = {"regularizers.combine.mode": "and-or", "regularizers.combine.source": "siblings",
       "regularizers.combine.n_pairs": 0}
SC = {"regularizers.correction.enabled": True, "regularizers.correction.measure": "count",
      "regularizers.correction.pool": PCR_SC_BATCH}

PCR_SC = Experiment(
    name="pcr-sc",
    title="sample correction (by count) and pixel-wise combinations (AND/OR of sibling pairs) on rectangles",
    claim=(
        "Xuan et al. (Fig. 1): on images of exactly 2 rectangles the share of generated images with 2 rectangles "
        "goes up to 97 % with SC (fakes with the correct count discarded), 70 % with PCR (AND/OR of pairs as "
        "negatives) and 99 % with both, far above vanilla."
    ),
    quote=PCR_SC_QUOTE,
    setting_note=PCR_SC_NOTE,
    base=RECTANGLES,
    settings=(
        Setting("vanilla", "vanilla (R1 only)", {}),
        Setting("pcr", "PCR (AND/OR of sibling pairs)", PCR),
        Setting("sc", "SC (count measure)", SC),
        Setting("pcr-sc", "SC + PCR", {**PCR, **SC}),
    ),
    metrics=(
        Metric("correct", "correct count (G)", ".3f"),
        Metric("fewer", "fewer than 2 (G)", ".3f"),
        Metric("more", "more than 2 (G)", ".3f"),
        *SC_METRICS,
    ),
    comparisons=(
        Comparison("sc", "vanilla", "correct", ">", "SC raises the share of correct counts"),
        Comparison("pcr", "vanilla", "correct", ">", "PCR raises the share of correct counts"),
        Comparison("pcr-sc", "vanilla", "correct", ">", "SC + PCR raises the share of correct counts"),
        Comparison("pcr-sc", "pcr", "correct", ">", "SC + PCR above PCR alone (PCR \"stuck at 70%\")"),
    ),
    judge=judge_pcr_sc,
    steps=PCR_SC_STEPS,
    seeds=5,
    tail=3,
    records=6,
    quick={"data.n_images": 256},  # the smoke run: a small training set is made in a blink
)

SC_PHOTOS_QUOTE = """For the Sample Correction method. We randomly select a small portion of the images as training data \
(M-CELEB-A and M-CIFAR). Dataset size is kept small (*e.g.* 32) so that the learned data distribution could \
approximate the target data distribution well. The measure of reality of a sample in this case is the normalized \
minimum $L_2$ distance of the sample to all the training data (DIF, between 0 and 1). We train GANs in two different \
ways, namely Vanilla and Sample Correction. The latter approach differs in that the realistic samples in the \
negative batch (DIF less than 0.1) are replaced with less realistic ones. The batchsize is kept small to better \
demonstrate the problem of sample insufficiency (*e.g.* 2). As shown in Figure 5, the Sample Correction approach \
outperforms the vanilla one by a large margin. FID and DIF scores are both better during training.
— anomalous-generalization-pcr-sc.txt, Sec. 5.3

Figure 5: Left: The final generated samples for the M-CIFAR10 and M-CELEB-A, where the Sample Correction (SC) \
approach achieves better performance. Right: The FID and DIF curves during training for the vanilla and the Sample \
Correction (SC) approaches.
— anomalous-generalization-pcr-sc.txt, Figure 5"""

SC_PHOTOS_STEPS, SC_PHOTOS_RECORDS, SC_PHOTOS_TAIL, SC_PHOTOS_POOL = 6000, 24, 6, 8
SC_PHOTOS_FIGURE = "sc-photos-dif.png"  # Fig. 5's DIF curve

SC_PHOTOS_NOTE = f"""**Paper (Sec. 5.3, Fig. 5).** 32 images drawn from CelebA or CIFAR-10 (M-CELEB-A, M-CIFAR), \
batch 2, vanilla GAN against sample correction: the fakes of D's negative batch whose DIF (the normalized nearest \
L2 distance to the 32 training images, in [0, 1]) is below 0.1 are replaced by less realistic ones. Fig. 5 plots \
FID and DIF during training (no numbers in the text) and shows final samples. The only optimizer the section \
states is Adam (α = 2e-4, β1 = 0.5, β2 = 0.9); the architecture, loss and number of steps are not given.

**Here.** 32 natural images with nothing downloaded: `data.name=photos`, `data.subset=32` — 32 of the 48 \
non-overlapping 96×96 tiles of scikit-learn's two bundled colour photographs, resized to 32×32 RGB (each \
tile's DIF to the other 31 is 0.03–0.32, mean 0.17; the mean image is at 0.20, mid-grey at 0.23 and uniform noise at \
about 0.37). The \
trainer's DCGAN pair (32 base channels, 64-dimensional noise), the non-saturating loss, no penalty, no EMA of G \
(Fig. 5 plots G), Adam with the paper's α and β, batch 2, {SC_PHOTOS_STEPS:,} generator steps, 5 seeds. SC: \
`correction.measure=nearest`, threshold 0.1, DIF as the paper defines it (`fastgp.correction`: \
sqrt(d²/D)/2 for pixels in [−1, 1]); the realistic fakes are replaced by fakes with DIF ≥ 0.1 from \
{SC_PHOTOS_POOL} extra fakes drawn per D step (where none qualifies, nothing is replaced). Metrics of 256 fixed-noise \
samples of G, logged every {SC_PHOTOS_STEPS // SC_PHOTOS_RECORDS} steps: `dif`, the paper's DIF (mean over the \
samples; lower is more realistic), averaged over the last {SC_PHOTOS_TAIL} logged points and over the whole run (Fig. \
5's "during training"); and `nn_coverage`, the share of the 32 training images that are the nearest image of at \
least one sample (a stand-in for the diversity half of FID: a G that draws one training image well has a low DIF \
and a coverage of 1/32).

**Deviations and why.** (1) No FID: it needs the Inception network's weights, a download this machine does not \
make; DIF is the paper's own second metric, and coverage only guards against a DIF bought by collapse. (2) Photo \
tiles instead of CelebA / CIFAR faces and objects (no download; the paper's point, 32 natural images, is kept). \
(3) {SC_PHOTOS_STEPS:,} steps (= {SC_PHOTOS_STEPS * 2 // 32:,} passes over the 32 images), what 2 shared cores allow \
next to the other reproductions (the paper does not give its number of steps). (4) The \
replacements come from a pool of {SC_PHOTOS_POOL} extra fakes: the paper says "replaced with less realistic ones", \
not where they come from."""


def judge_sc_photos(results: dict) -> str:
    """The verdict from the paired comparisons of SC against vanilla on DIF (late and over the run,
    Fig. 5's curve) and coverage: DIF lower with SC at both: reproduced in part (FID is not
    measured here, so never "reproduced"); at one: in part, naming it; at neither: not reproduced;
    SC never replaced a fake: not testable here. Lower coverage with SC is named in the verdict."""
    by = {c["key"]: c for c in results["comparisons"] if c["a"] == "sc" and c["b"] == "vanilla"}
    dif = [by["dif"], by["dif_run"]]
    numbers = "; ".join(f"{c['label']}: {stats.fmt_interval(c, '.3f')}, {c['outcome']}" for c in dif + [by["nn_coverage"]])
    fired = next((s["summary"].get("sc_replaced_run") or {}).get("mean") for s in results["settings"] if s["name"] == "sc")
    if not fired:
        return f"not testable here: sample correction never replaced a fake ({numbers})"
    held = [c for c in dif if c["outcome"] == stats.AS_CLAIMED]
    collapse = (" — but at a lower coverage of the training images, so not a better FID either"
                if by["nn_coverage"]["outcome"] == stats.OPPOSITE else "")
    if len(held) == len(dif):
        return (f"reproduced in part: SC lowers DIF late in training and over the whole run, as Fig. 5 shows; FID "
                f"is not measured here{collapse} ({numbers})")
    if held:
        return (f"reproduced in part: SC lowers DIF only {'late in training' if held[0] is dif[0] else 'over the run'}"
                f"{collapse}; FID is not measured here ({numbers})")
    return f"not reproduced: SC does not lower DIF, late in training or over the run ({numbers})"


SC_PHOTOS = Experiment(
    name="sc-photos",
    title="sample correction by nearest distance on 32 natural images (photo tiles), batch 2",
    claim=(
        "Xuan et al. (Sec. 5.3, Fig. 5): on 32 training images with batch 2, replacing the fakes within DIF 0.1 of "
        "the training set in D's negative batch gives better FID and DIF than vanilla training, by a large margin."
    ),
    quote=SC_PHOTOS_QUOTE,
    setting_note=SC_PHOTOS_NOTE,
    base={
        "data.name": "photos", "data.subset": 32, "data.resolution": 32, "model.name": "dcgan", "model.channels": 32,
        "noise.dim": 64, "batch_size": 2, "loss.name": "non-saturating", "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4,
        "optim.beta1": 0.5, "optim.beta2": 0.9, f"{PENALTY}.kind": "none", "ema.decay": 0.0,
        "log.eval_samples": 256, "log.diag_every": 0,
    },
    settings=(
        Setting("vanilla", "vanilla", {}),
        Setting("sc", "SC (DIF < 0.1 replaced)", {
            "regularizers.correction.enabled": True, "regularizers.correction.measure": "nearest",
            "regularizers.correction.threshold": 0.1, "regularizers.correction.pool": SC_PHOTOS_POOL}),
    ),
    metrics=(
        Metric("dif", "DIF (G), late", ".3f"),
        Metric("dif_run", "DIF (G), whole run", ".3f", over_run=lambda records: run_mean(records, "dif")),
        Metric("nn_coverage", "training images nearest to a sample (G)", ".3f"),
        *SC_METRICS,
    ),
    comparisons=(
        Comparison("sc", "vanilla", "dif", "<", "SC lowers DIF (late)"),
        Comparison("sc", "vanilla", "dif_run", "<", "SC lowers DIF (whole run)"),
        Comparison("sc", "vanilla", "nn_coverage", ">", "SC covers more training images (FID stand-in)"),
    ),
    judge=judge_sc_photos,
    figure=trend("dif", "DIF of G's samples", SC_PHOTOS_FIGURE, line=(0.1, "SC's threshold (DIF 0.1)")),
    own_files=(SC_PHOTOS_FIGURE,),
    steps=SC_PHOTOS_STEPS,
    seeds=5,
    tail=SC_PHOTOS_TAIL,
    records=SC_PHOTOS_RECORDS,
    quick={"data.subset": 8, "model.channels": 8},
)

AUGMENT_QUOTE = """Table 1: Some behaviors of GAN when changing the size (Bz) of the noise domain. Spectral \
normalization was used for D, LVg was estimated by max ||∂Vg/∂z|| from 5000 random noises. The lower the better.
Bz 10^-2: LVgBz 5.020, loss Vg -0.657 ± 0.065, -D(G(Z)) -0.480 ± 0.033; Bz 10^0: 2.738, -0.667 ± 0.054, \
-0.486 ± 0.027; Bz 10^2: 2.370, -0.696 ± 0.045, -0.500 ± 0.022. (our note: the table's rows, its columns Bz, LVgBz, loss Vg, \
-D(G(Z)), written out; the text file renders the exponents as 10-2, 100, 102) [...] We observe further from Table 1 that the \
generalization of G, indicated by the loss Vg and the score D(G(z)), increases as LVgBz decreases.
— augmentation-generalization-stability.txt, Sec. 4.3, Table 1

Table 2: Some behaviors of GAN when changing σ for data augmentation, by random translation. Spectral \
normalization was used for D, the statistics were estimated from 5000 random noises. [...] Table 2 shows some \
statistics from our simulation on MNIST data, where 15 random translations were applied to each image. We \
observed that increasing σ often results in smaller norms of the Jacobian of both G and D.
— augmentation-generalization-stability.txt, Sec. 5, Table 2"""

AUGMENT_STEPS, AUGMENT_SEEDS, AUGMENT_TAIL = 600, 5, 3

AUGMENT_NOTE = f"""**Paper (Sec. 4.3 Table 1, Sec. 5 Table 2).** A GAN on MNIST with spectral normalization on D \
(the architecture, steps, batch and optimizer of these tables are not given in the text; its Fig. 1 uses the \
minimax loss and MLP players). Table 1: noise uniform on a box of size B_z = 1e-2, 1, 1e2; L_Vg = max over 5,000 \
noises of ‖∂V_g/∂z‖ with V_g = log(1 − D(G(z))); L_Vg·B_z falls 5.020 → 2.738 → 2.370 as B_z grows, and the loss \
V_g with it. Table 2: 15 random translations of every image, two shift sizes σ; ‖∂D/∂x‖ and ‖∂G/∂z‖ (and V_g) are \
smaller at the larger σ.

**Here.** scikit-learn's 1,797 8×8 digits upsampled to 28×28 (an MNIST stand-in: no download on this machine), \
the trainer's MLP GAN (G 100→128→256→512→1024→784, D 784→512→256→1, LeakyReLU 0.2) with spectral norm on D, no \
penalty, Adam (2e-4, β = 0.5, 0.999), batch 64, {AUGMENT_STEPS} generator steps, {AUGMENT_SEEDS} seeds. Table 1: \
noise uniform on [−s, s]^100 with s = B_z ∈ {{0.01, 1, 100}}; after training, L_Vg is measured on 5,000 noise \
vectors drawn from the run's box (`fastgp.repro.augment.measure`, `fastgp.diagnostics.loss_lipschitz`) with the \
paper's V_g = log(1 − σ(D(G(z)))), and also with the generator loss the run trained with (non-saturating). \
Table 2: no augmentation vs translation of every real and fake image into 15 copies with shifts of up to 2 and 8 \
pixels (zero padding; `regularizers.augment`), noise N(0, I); ‖∂D/∂x‖ at real images and ‖∂G/∂z‖ (mean Frobenius \
norms over 64 evaluation samples, the trainer's `grad_d_x` / `jac_g_z`) averaged over each run's last \
{AUGMENT_TAIL} logged points, and ‖∂D/∂x‖ at G(z) over the 5,000 noises at the end.

**Deviations and why.** (1) Compute: the whole run (6 settings × {AUGMENT_SEEDS} seeds) has to fit 25 minutes \
of one shared CPU core, so each run is {AUGMENT_STEPS} generator steps (the recorded run: 863 CPU-s, 22 minutes of wall time at 65 % of \
a core) (about {AUGMENT_STEPS * 64 / 1797:.0f} \
epochs of the digits): these are early-training GANs, not converged ones, and the paper's numbers (its L_Vg \
is measured on its converged MNIST models) are not comparable in size, only in direction. (2) The digits are \
8×8 images upsampled, far smoother than MNIST. (3) G has no batch norm (`model.g_norm=none`): the MLP G's batch \
norm right after its first layer removes the scale of z in training mode (G(c·z) = G(z)), so with it Table 1's \
B_z would not reach G at all. (4) The paper's two σ are not legible in the text we have; shifts of 2 and 8 pixels \
of 28 stand for a small and a large σ. (5) The trainer's ‖∂G/∂z‖ and ‖∂D/∂x‖ are means over 64 samples, not \
5,000. (6) G is trained with the non-saturating loss, the paper's V_g is the minimax term: both are measured."""


def judge_augment(results: dict) -> str:
    """The verdict from the paired comparisons: Table 1 (L_Vg·B_z falling with B_z, two comparisons)
    and Table 2 (‖∂D/∂x‖ and ‖∂G/∂z‖ smaller at the larger shift, against no augmentation and
    between the shifts: four comparisons). Every comparison of a table as claimed: that table
    reproduced; a comparison the other way counts as against the claim. Both tables reproduced:
    reproduced; one, or some comparisons of either: reproduced in part (naming which); none as
    claimed: not reproduced; a comparison with fewer than two paired seeds: not testable here."""
    comps = results["comparisons"]
    table1 = [c for c in comps if c["key"] == "l_vg_bz"]
    table2 = [c for c in comps if c["key"] in ("grad_d_x", "jac_g_z")]
    thin = [c["label"] for c in table1 + table2 if c["n"] < 2]
    if not table1 or not table2 or thin:
        return f"not testable here: no interval without two paired seeds ({', '.join(thin) or 'no comparisons'})"

    def said(group):
        return "; ".join(f"{c['label']}: {stats.fmt_interval(c)}, {c['outcome']}" for c in group)

    def held(group):
        return [c for c in group if c["outcome"] == stats.AS_CLAIMED]

    numbers = f"Table 1 — {said(table1)}. Table 2 — {said(table2)}"
    ok1, ok2 = len(held(table1)) == len(table1), len(held(table2)) == len(table2)
    against = [c["label"] for c in comps if c["outcome"] == stats.OPPOSITE]
    rises = any(c["outcome"] == stats.OPPOSITE for c in table1)
    note = " L_Vg·B_z rises with B_z where the paper's falls." if rises else ""
    if ok1 and ok2:
        return f"reproduced: L_Vg·B_z falls as B_z grows and both Jacobian norms shrink with the shift ({numbers})"
    some = held(table1) + held(table2)
    if some:
        parts = ", ".join(c["label"] for c in some)
        return (f"reproduced in part: as claimed only {parts}; against the claim: {', '.join(against) or 'none'}."
                f"{note} ({numbers})")
    return f"not reproduced: no comparison as claimed.{note} ({numbers})"


AUG = "regularizers.augment"
TRANSLATE = {f"{AUG}.kind": "translate", f"{AUG}.copies": 15}
AUGMENT = Experiment(
    name="augment",
    title="noise-box size vs L_Vg·B_z, and translation vs the Jacobian norms, on digits (MLP GAN, spectral norm on D)",
    claim=(
        "the augmentation paper (Tables 1, 2): L_Vg·B_z (L_Vg the largest ‖∂V_g/∂z‖ through D and the loss) falls as "
        "the noise box B_z grows; random translation makes ‖∂D/∂x‖ and ‖∂G/∂z‖ smaller, more with a larger shift."
    ),
    quote=AUGMENT_QUOTE,
    setting_note=AUGMENT_NOTE,
    base={
        "data.name": "digits", "data.resolution": 28, "model.name": "mlp-gan", "model.g_norm": "none",
        "noise.dim": 100, "batch_size": 64, "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4, "optim.beta1": 0.5,
        "optim.beta2": 0.999, f"{PENALTY}.kind": "none", "regularizers.spectral-norm.d": True, "log.eval_samples": 1000,
    },
    settings=(
        Setting("none", "no augmentation", {}),
        Setting("translate-2", "translation, 15 copies, shift ≤ 2", {**TRANSLATE, f"{AUG}.max_shift": 2}),
        Setting("translate-8", "translation, 15 copies, shift ≤ 8", {**TRANSLATE, f"{AUG}.max_shift": 8}),
        Setting("uniform-0.01", "noise uniform, B_z = 0.01", {"noise.dist": "uniform", "noise.scale": 0.01}),
        Setting("uniform-1", "noise uniform, B_z = 1", {"noise.dist": "uniform", "noise.scale": 1.0}),
        Setting("uniform-100", "noise uniform, B_z = 100", {"noise.dist": "uniform", "noise.scale": 100.0}),
    ),
    metrics=(
        Metric("l_vg_bz", "L_Vg·B_z (paper's V_g)", ".4g"),
        Metric("l_vg_bz_train", "L_Vg·B_z (trained loss)", ".4g"),
        Metric("l_vg", "L_Vg", ".4g"),
        Metric("v_g", "loss V_g", ".3f"),
        Metric("neg_d_gz", "−D(G(z))", ".3f"),
        Metric("grad_d_x", "‖∂D/∂x‖ at real", ".3g"),
        Metric("grad_d_gz", "‖∂D/∂x‖ at G(z)", ".3g"),
        Metric("jac_g_z", "‖∂G/∂z‖", ".3g"),
    ),
    comparisons=(
        Comparison("uniform-0.01", "uniform-1", "l_vg_bz", ">", "L_Vg·B_z: B_z 0.01 > 1"),
        Comparison("uniform-1", "uniform-100", "l_vg_bz", ">", "L_Vg·B_z: B_z 1 > 100"),
        Comparison("none", "translate-2", "grad_d_x", ">", "‖∂D/∂x‖: none > shift 2"),
        Comparison("translate-2", "translate-8", "grad_d_x", ">", "‖∂D/∂x‖: shift 2 > shift 8"),
        Comparison("none", "translate-2", "jac_g_z", ">", "‖∂G/∂z‖: none > shift 2"),
        Comparison("translate-2", "translate-8", "jac_g_z", ">", "‖∂G/∂z‖: shift 2 > shift 8"),
    ),
    judge=judge_augment,
    measure=augment.measure,
    steps=AUGMENT_STEPS,
    seeds=AUGMENT_SEEDS,
    tail=AUGMENT_TAIL,
    records=6,
)

SN_PLAYERS_QUOTE = """Figure 1: Some statistics when training the vanilla GAN on MNIST. When no penalty was applied, \
the training algorithm was unstable and unconvergent as shown in the last two subfigures. When spectral normalization \
was used for G only, the vanishing gradient problem appeared and G did not learn anything from D, and hence the \
training process stopped early. In contrast, the training behaved very well when spectral normalization was used for \
D. It can be seen from the middle subfigure that the Lipschitz constant of G can be much smaller if we use spectral \
normalization for both Players.
— augmentation-generalization-stability.txt, Sec. 4.1, Figure 1 (the text file spells its caption with stray \
capitals, e.g. "both Players"; quoted with them)

It is also worth observing that when spectral normalization is applied to G, there is a significant improvement in \
the Jacobian norm of G.
— augmentation-generalization-stability.txt, Sec. 4.1"""

SN_PLAYERS_STEPS, SN_PLAYERS_RECORDS, SN_PLAYERS_TAIL = 1000, 10, 3
SN = "regularizers.spectral-norm"

SN_PLAYERS_NOTE = f"""**Paper (Sec. 4.1, Fig. 1).** The vanilla GAN on MNIST in four cases — no penalty, spectral \
normalization on G only, on D only, on both — with curves of ‖∂G/∂z‖_F and of the losses during training (no numbers \
in the text; architecture, steps and optimizer not given; the paper's GAN losses are the minimax ones, V_g = \
log(1 − D(G(z))), as in its Table 1).

**Here.** The `augment` experiment's family: scikit-learn's 1,797 digits at 28×28, the trainer's MLP GAN (G \
100→128→256→512→1024→784, D 784→512→256→1, LeakyReLU 0.2) without batch norm in G (`model.g_norm=none`: with it, \
spectral norm on G's Linear layers would be undone by the normalization after each of them), the minimax \
(`saturating`) loss, no penalty, Adam (2e-4, β = 0.5, 0.999), batch 64, {SN_PLAYERS_STEPS:,} generator steps, 5 \
seeds; spectral norm (`regularizers.spectral-norm.d` / `.g`, one power iteration per forward) on every Linear layer \
of the player(s) it names. Measured: ‖∂G/∂z‖_F (`jac_g_z`, mean over 64 samples) and the digit classifier's \
confidence and class count of G's samples, averaged over the last {SN_PLAYERS_TAIL} of {SN_PLAYERS_RECORDS} logged \
points; the swing of G's logged loss over the second half of the run (its standard deviation: \
"unstable and unconvergent"); and at the end (`fastgp.repro.augment.measure_players`, 1,000 noise vectors) \
‖∂V_g/∂φ‖_F, the gradient of the paper's V_g with respect to G's parameters ("the vanishing gradient problem"), and \
D(G(z)).

**Deviations and why.** (1) Digits upsampled from 8×8 instead of MNIST (no download here). (2) \
{SN_PLAYERS_STEPS:,} steps (about {SN_PLAYERS_STEPS * 64 // 1797} epochs of the digits), so that the 20 runs fit a \
quarter of an hour of both cores: the start of training, where Fig. 1's four cases part. (3) No batch norm in G \
(above)."""

SN_CLAIMS = (
    ("sn-both", "sn-d", "jac_g_z", "<", "Fig. 1 middle: ‖∂G/∂z‖ smaller with SN on both players than on D only"),
    ("sn-g", "sn-d", "grad_g_params", "<", "SN on G only: G's gradient ‖∂V_g/∂φ‖ vanishes (smaller than with SN on D)"),
    ("sn-g", "sn-d", "confidence", "<", "SN on G only: G learns no digits (classifier confidence below SN on D's)"),
    ("none", "sn-d", "g_loss_swing", ">", "no penalty: unstable (G's loss swings more than with SN on D)"),
    ("none", "sn-d", "confidence", "<", "no penalty: unconvergent (classifier confidence below SN on D's)"),
)


def judge_sn_players(results: dict) -> str:
    """The verdict from Fig. 1's five comparisons (``SN_CLAIMS``): all as claimed: reproduced; some:
    reproduced in part, naming which; none: not reproduced; fewer than 2 seed pairs: not testable."""
    comps = [_outcome(results, a, b, key) for a, b, key, _, _ in SN_CLAIMS]
    if _too_few_seeds(comps):
        return "not testable here: fewer than 2 seed pairs, so no interval (a quick run)"
    held = [c for c in comps if c["outcome"] == stats.AS_CLAIMED]
    detail = "; ".join(map(_said, comps))
    if len(held) == len(comps):
        return f"reproduced: every case of Fig. 1 behaves as the paper says. {detail}"
    if held:
        return f"reproduced in part: as claimed {len(held)} of {len(comps)}. {detail}"
    return f"not reproduced: no case of Fig. 1 behaves as the paper says. {detail}"


SN_PLAYERS = Experiment(
    name="sn-players",
    title="spectral normalization on G, D, both or neither: the vanilla GAN on digits (MLP GAN)",
    claim=(
        "the augmentation paper (Fig. 1): without a penalty the vanilla GAN is unstable and does not converge; with "
        "spectral norm on G only G's gradient vanishes and it learns nothing; with it on D training behaves well, "
        "and on both players ‖∂G/∂z‖ is much smaller."
    ),
    quote=SN_PLAYERS_QUOTE,
    setting_note=SN_PLAYERS_NOTE,
    base={
        "data.name": "digits", "data.resolution": 28, "model.name": "mlp-gan", "model.g_norm": "none",
        "noise.dim": 100, "batch_size": 64, "loss.name": "saturating", "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4,
        "optim.beta1": 0.5, "optim.beta2": 0.999, f"{PENALTY}.kind": "none", "ema.decay": 0.0,
        "log.eval_samples": 1000, "log.diag_every": SN_PLAYERS_STEPS // SN_PLAYERS_RECORDS,
    },
    settings=(
        Setting("none", "no penalty", {}),
        Setting("sn-g", "spectral norm on G only", {f"{SN}.g": True}),
        Setting("sn-d", "spectral norm on D only", {f"{SN}.d": True}),
        Setting("sn-both", "spectral norm on G and D", {f"{SN}.d": True, f"{SN}.g": True}),
    ),
    metrics=(
        Metric("jac_g_z", "‖∂G/∂z‖", ".3g"),
        Metric("grad_g_params", "‖∂V_g/∂φ‖ (final)", ".3g"),
        Metric("d_gz", "D(G(z)) (final)", ".3f"),
        Metric("confidence", "classifier confidence (G)", ".3f"),
        Metric("classes", "classes (G)", ".1f"),
        Metric("g_loss_swing", "std of G's loss, second half", ".3g", over_run=late_std("g_loss")),
        Metric("d_loss_swing", "std of D's loss, second half", ".3g", over_run=late_std("d_loss")),
        Metric("grad_d_x", "‖∂D/∂x‖ at real", ".3g"),
    ),
    comparisons=tuple(Comparison(a, b, key, expect, label) for a, b, key, expect, label in SN_CLAIMS),
    judge=judge_sn_players,
    measure=augment.measure_players,
    steps=SN_PLAYERS_STEPS,
    seeds=5,
    tail=SN_PLAYERS_TAIL,
    records=SN_PLAYERS_RECORDS,
)


def _outcome(results: dict, a: str, b: str, key: str, b_key: str | None = None) -> dict:
    """The comparison of ``results`` between settings ``a`` and ``b`` on ``key`` (and ``b_key``)."""
    for c in results["comparisons"]:
        if (c["a"], c["b"], c["key"], c.get("b_key", c["key"])) == (a, b, key, b_key or key):
            return c
    raise ReproError(f"no comparison {a} vs {b} on {key} in the results")


def _said(c: dict) -> str:
    """A comparison in words: its label, a − b with the interval and the outcome."""
    return f"{c['label']}: {stats.fmt_interval(c)} ({c['outcome']})"


def _too_few_seeds(comparisons: list[dict]) -> bool:
    return any(c["n"] < 2 for c in comparisons)


LECAM_KEY = "regularizers.lecam"
# Sized by a measured seed so that the lecam and latent-path full runs together fit 50 minutes of one core.
LECAM_STEPS, LATENT_STEPS = 1000, 6000
LECAM_PREMISE = ("none", "none", "d_train", "d_held")
LECAM_REMEDY = (("none", "lecam", "d_overfit"), ("none", "lecam", "d_auc"))


def judge_lecam(results: dict) -> str:
    """The premise first (without LeCam, D scores its training reals above held-out reals), then
    the remedy (LeCam narrows that gap, in logits and in the scale-free AUC)."""
    premise = _outcome(results, *LECAM_PREMISE[:3], b_key=LECAM_PREMISE[3])
    remedy = [_outcome(results, *r) for r in LECAM_REMEDY]
    if _too_few_seeds([premise, *remedy]):
        return "not testable here: fewer than 2 seed pairs, so no interval (a quick run)"
    if premise["outcome"] != stats.AS_CLAIMED:
        return (f"not reproduced: the premise does not show — without LeCam D does not score its training reals "
                f"above the held-out reals ({_said(premise)}), so there is no gap for LeCam to narrow; "
                + "; ".join(map(_said, remedy)))
    held = [c for c in remedy if c["outcome"] == stats.AS_CLAIMED]
    if len(held) == len(remedy):
        return (f"reproduced: without LeCam D scores its training reals above held-out reals ({_said(premise)}), "
                "and LeCam narrows that gap: " + "; ".join(map(_said, remedy)))
    remedy_text = "LeCam narrows the gap only in part" if held else "LeCam does not narrow the gap"
    return (f"reproduced in part: the premise shows — without LeCam D scores its training reals above held-out reals "
            f"({_said(premise)}) — but {remedy_text}: " + "; ".join(map(_said, remedy)))


LECAM = Experiment(
    name="lecam",
    title="LeCam regularization on 200 digits: D's outputs on training vs held-out reals",
    claim=(
        "Tseng et al. (CVPR 2021): under limited data D overfits its training set (its outputs on training reals and "
        "on unseen reals drift apart); the LeCam penalty improves D's generalization."
    ),
    quote=(
        "\"However, the success of the GAN models hinges on a large amount of training data. This work proposes a "
        "regularization approach for training robust GAN models on limited data. [...] Extensive experiments on several "
        "benchmark datasets demonstrate that the proposed regularization scheme 1) improves the generalization "
        "performance and stabilizes the learning dynamics of GAN models under limited training data, and 2) "
        "complements the recent data augmentation methods.\"\n"
        "— Tseng, Jiang, Liu, Yang, Yang, \"Regularizing Generative Adversarial Networks under Limited Data\", CVPR "
        "2021, abstract (https://research.google/pubs/pub50362). The paper is not among /work/shared/papers, and its "
        "full text was not available here: the abstract is quoted, and the premise tested — D's outputs on its "
        "training reals and on held-out reals diverge under limited data, and LeCam narrows that — is the "
        "overfitting of D the paper's regularizer is built against, in our words, not a quoted figure."
    ),
    setting_note=(
        "**Paper:** BigGAN and StyleGAN2 on 10–20 % of CIFAR-10/100 and on limited ImageNet, 100k+ iterations, "
        "LeCam with λ = 0.3 and anchors that are EMAs (decay 0.99 in the BigGAN code) of D's mean outputs on reals "
        "and fakes; quality measured by FID.\n\n"
        "**Here:** limited data is a fixed subset of 200 of scikit-learn's 1,797 8×8 digits (11 %, upsampled to "
        "28×28; the same subset for every seed, `data.subset`); the other 1,597 digits are the held-out reals "
        "(`Digits.held_out`). The MLP GAN of the `augment` experiment (G 100→…→784 with batch norm, D 784→512→256→1 "
        "with LeakyReLU) with spectral normalization on D (as BigGAN's D) and the hinge loss of the authors' BigGAN "
        "code; Adam 2e-4, β = (0.5, 0.999), batch 64. Settings: LeCam λ = 0.3 (anchors averaged from G step 99 with "
        "decay 0.99) vs none (LeCam's switch on with λ = 0: D's outputs are tracked and logged, training is that "
        "without LeCam). Measured on the final D of each run (`fastgp.repro.lecam_gap`, D in eval mode on all 200 "
        "training and all 1,597 held-out digits): the mean output on each (`d_train`, `d_held`), their difference "
        "(`d_overfit`, the premise's gap) and the AUC of telling them apart by D's output (`d_auc`, 0.5 = no "
        "difference; unlike the gap it does not shrink when LeCam merely shrinks D's outputs). The trainer's "
        "metrics (the real − fake gap on training batches `d_gap`, the classifier's KL and confidence, the "
        "distance to the nearest training image) are averaged over each run's last 3 logged points; the held-out "
        "measurement is one point (the final D; its spread over seeds is in the intervals).\n\n"
        "**Deviations and why:** an MLP GAN on 200 digits instead of BigGAN on CIFAR (2 shared CPU cores); "
        "{steps} G steps (≈ {epochs} epochs of the subset) instead of 100k+ iterations, sized so that this run and "
        "the `latent-path` run fit 50 CPU-minutes of one core: D sees each training digit ≈ {epochs} times, enough to "
        "learn them, but a longer run would overfit more, so a gap that does not show here could still show later; "
        "no FID (the classifier's KL and confidence stand in for image quality, context only); 5 seeds."
    ).replace("{steps}", f"{LECAM_STEPS:,}").replace("{epochs}", f"{LECAM_STEPS * 64 // 200:,}"),
    base={
        "data.name": "digits", "data.resolution": 28, "data.subset": 200, "model.name": "mlp-gan",
        "noise.dim": 100, "batch_size": 64, "loss.name": "hinge", "optim.lr_d": 2.0e-4, "optim.lr_g": 2.0e-4,
        "optim.beta1": 0.5, "optim.beta2": 0.999, f"{PENALTY}.kind": "none", "regularizers.spectral-norm.d": True,
        # start 99 with the iteration counted from 0 (the authors' itr) is start 100 counted from 1;
        # decay 0.99 as the authors' BigGAN code (the trainer's default 0.9 is their PyTorch ema_losses).
        "log.eval_samples": 1000, f"{LECAM_KEY}.enabled": True, f"{LECAM_KEY}.start": 99,
        f"{LECAM_KEY}.decay": 0.99,
        # No metric here uses the Jacobian diagnostics (exact ‖∂G/∂z‖ of a 784-pixel G is most of a run's time).
        "log.diag_every": 0,
    },
    settings=(
        # Weight 0: the anchors and D's outputs are tracked and logged, training is that without LeCam.
        Setting("none", "no LeCam (λ = 0, outputs logged)", {f"{LECAM_KEY}.weight": 0.0}),
        Setting("lecam", "LeCam, λ = 0.3", {f"{LECAM_KEY}.weight": 0.3}),
    ),
    metrics=(
        Metric("d_train", "D on training reals (final D)", ".3g"),
        Metric("d_held", "D on held-out reals (final D)", ".3g"),
        Metric("d_overfit", "gap: D(training reals) − D(held-out reals)", ".3g"),
        Metric("d_auc", "AUC training vs held-out reals by D", ".3f"),
        Metric("d_gap", "D(real) − D(fake), training batches", ".3g"),
        Metric("kl", "KL(classes ‖ uniform) (G)", ".3f"),
        Metric("ema_confidence", "classifier confidence (EMA)", ".3f"),
        Metric("ema_nn_dist", "distance to nearest training image (EMA)", ".3g"),
    ),
    steps=LECAM_STEPS,
    seeds=5,
    tail=3,
    quick={f"{LECAM_KEY}.start": 1, "data.subset": 64},
    records=10,
    measure=lecam_gap.measure,
    comparisons=(
        Comparison("none", "none", "d_train", ">", b_key="d_held",
                   label="premise: without LeCam, D scores training reals above held-out reals"),
        Comparison("none", "lecam", "d_overfit", ">", label="LeCam narrows the training − held-out gap"),
        Comparison("none", "lecam", "d_auc", ">", label="LeCam: D tells training from held-out reals less"),
        Comparison("none", "lecam", "d_gap", ">", label="context: LeCam narrows D's real − fake gap"),
    ),
    judge=judge_lecam,
)

LATENT_FIG9 = (("r1", "linear", "jump"), ("r1", "linear", "jump_share"))
LATENT_ALG1 = (("latent", "r1", "jump"), ("latent", "linear", "jump"))


def judge_latent_path(results: dict) -> str:
    """Figure 9 (R1 jumps more than 0-GP along latent lines: both jumpiness measures of G) first,
    then Algorithm 1 (the latent-path penalty jumps less than R1 and than the straight line)."""
    fig9 = [_outcome(results, *c) for c in LATENT_FIG9]
    alg1 = [_outcome(results, *c) for c in LATENT_ALG1]
    if _too_few_seeds(fig9 + alg1):
        return "not testable here: fewer than 2 seed pairs, so no interval (a quick run)"
    fig9_ok = [c["outcome"] == stats.AS_CLAIMED for c in fig9]
    alg1_ok = [c["outcome"] == stats.AS_CLAIMED for c in alg1]
    if all(fig9_ok):
        fig9_text = ("Figure 9 reproduces: more of R1's straight latent lines mode-jump (one step more than half "
                     "the line's length) than 0-GP's, and its lines are jumpier")
    elif fig9_ok[0]:
        fig9_text = ("Figure 9 reproduces only in part: R1's straight latent lines are jumpier than 0-GP's (their "
                     "largest step a larger share of the path), but no more of them mode-jump")
    elif fig9_ok[1]:
        fig9_text = ("Figure 9 reproduces only in part: more of R1's straight latent lines mode-jump than 0-GP's, "
                     "but they are not jumpier on average")
    elif any(c["outcome"] == stats.OPPOSITE for c in fig9):
        fig9_text = "Figure 9 does not reproduce: R1 jumps less than 0-GP along straight latent lines"
    else:
        fig9_text = "Figure 9 does not reproduce: R1 and 0-GP jump alike along straight latent lines"
    better = [b for (_, b, _), ok in zip(LATENT_ALG1, alg1_ok) if ok]
    alg1_text = ("the latent-path penalty (Algorithm 1) jumps less than " + " and ".join(better) if better
                 else "the latent-path penalty (Algorithm 1) jumps no less than R1 or the straight line")
    detail = "; ".join(map(_said, fig9 + alg1))
    if all(fig9_ok) and all(alg1_ok):
        word = "reproduced"
    elif any(fig9_ok) or any(alg1_ok):
        word = "reproduced in part"
    else:
        word = "not reproduced"
    return f"{word}: {fig9_text}; {alg1_text}. {detail}"


LATENT_PATH = Experiment(
    name="latent-path",
    title="mode jumps along straight latent lines: R1 vs 0-GP vs the latent-path penalty, 8 Gaussians ×10",
    claim=(
        "Thanh-Tung et al. (ICLR 2019, Sec. 6.2, Fig. 9): with R1-like penalties on samples G mode-jumps along a "
        "straight latent line (a small change of z, a large change of G(z)); with 0-GP at interpolates it "
        "interpolates smoothly. Appendix F, Algorithm 1: the penalty on G's latent path between real and fake."
    ),
    quote=(
        "\"The original GAN collapses to some disconnected modes and cannot perform smooth interpolation between "
        "modes: small change in the input result in large, unpredictable change in the output. GAN with "
        "zero-centered GP on real/fake samples only also exhibits the same ”mode jumping” behavior.\"\n"
        "— zero-centered-gp-thanh-tung.txt, Sec. 6.2 (Synthetic data)\n\n"
        "\"Figure 9: Linear latent space interpolation between two random samples. (a) GAN with 0-GP-sample cannot "
        "perform smooth interpolation between modes. Small changes in input latent variable result in big difference "
        "in the output (red boxes). [...] (b) GAN with our 0-GP can perform smooth interpolation between modes.\"\n"
        "— zero-centered-gp-thanh-tung.txt, Appendix D, Figure 9\n\n"
        "\"A path C from y to x can be found by transforming the straight line between the two corresponding latent "
        "codes, to the data space using the generator G. [...] 2 Calculate the interpolated latent code: "
        "Z = αzχ + (1 - α)z 3 Generate the interpolated datapoint: X = G(Z)\"\n"
        "— zero-centered-gp-thanh-tung.txt, Appendix F, Algorithm 1 (given without an experiment)"
    ),
    setting_note=(
        "**Paper:** Figure 9 is on MNIST (no numbers: two rows of images); the text of Sec. 6.2 says the same of the "
        "8-Gaussians run of Fig. 2 (the mixture scaled by 10, the authors' MLPs, non-saturating loss). Algorithm 1 "
        "has no experiment.\n\n"
        "**Here:** the `zero-gp` experiment's task (8 Gaussians ×10, std 0.2; G and D 2-hidden-layer ReLU MLPs of 64 "
        "units; non-saturating loss; λ = 1; Adam at 1e-3 (G) / 3e-3 (D), batch 256, EMA of G). Settings: R1 "
        "(zero-centred on real samples: the issue's stand-in for the paper's \"0-GP-sample\"), 0-GP at straight-line "
        "interpolates (the paper's 0-GP), and 0-GP on the latent path (Algorithm 1, with the trainer's encoder E, "
        "`regularizers.penalty.path=latent`; E's objective is ours: the authors' public code has no encoder). The "
        "measure of Figure 9's claim is **jumpiness** (`fastgp.repro.latent_path.jumpiness`): 256 pairs of codes "
        "drawn from the noise distribution (the same for every run), each joined by a straight latent line of 65 "
        "points; per line the largest step ‖G(z_{t+1}) − G(z_t)‖ over the line's length (the sum of the steps): "
        "`jump` is its mean over lines (1/64 = 0.016 for a G moving at constant speed, near 1 for a jump in one "
        "step), `jump_share` the share of lines whose largest step is more than half their length; both for G "
        "(what Figure 9 shows) and its EMA. The earlier line measures between two modes (off-mode share, mode "
        "switches) are kept. Mode metrics are averaged over each run's last 3 logged points; jumpiness is measured "
        "on the final G.\n\n"
        "**Deviations and why:** 2-D data instead of MNIST (what 2 shared CPU cores allow; the paper's Sec. 6.2 "
        "makes the same claim for it); R1 on reals only rather than the paper's penalty on real and fake samples "
        "(`r1+r2` here), as the issue asks — one arm fewer to fit the budget; {steps} generator steps of batch 256 as "
        "in `zero-gp` (the authors' code defaults to 20,000 iterations of batch 128 with λ = 10), so that this run "
        "and the `lecam` run fit 50 CPU-minutes of one core: jumpiness is that of G at {steps} steps (a first run at "
        "2,000 steps, G still spreading between the modes, gave 0.03–0.08 on every arm and no jumping line); "
        "5 seeds."
    ).replace("{steps}", f"{LATENT_STEPS:,}"),
    base={**ADAM_8G, f"{PENALTY}.kind": "zero-gp"},
    settings=(
        Setting("r1", "R1 (0-GP on real samples)", {f"{PENALTY}.kind": "r1"}),
        Setting("linear", "0-GP at interpolates (straight line)", {f"{PENALTY}.path": "linear"}),
        Setting("latent", "0-GP on the latent path (Algorithm 1)", {f"{PENALTY}.path": "latent"}),
    ),
    metrics=(
        MODES, HQ, EMA_MODES,
        Metric("jump", "jumpiness: largest step / path length (G)", ".3f"),
        Metric("jump_share", "share of lines with a step > half their length (G)", ".2f"),
        Metric("ema_jump", "jumpiness (EMA)", ".3f"),
        Metric("ema_jump_share", "share of jumping lines (EMA)", ".2f"),
        Metric("line_off", "off-mode share along lines between modes", ".2f"),
        Metric("line_switches", "mode switches per line between modes", ".2f"),
    ),
    steps=LATENT_STEPS,
    seeds=5,
    tail=3,
    measure=latent_path.measure,
    figure=latent_path.figure,
    own_files=(latent_path.FIGURE,),
    comparisons=(
        Comparison("r1", "linear", "jump", ">", label="Fig. 9: R1 jumps more than 0-GP"),
        Comparison("r1", "linear", "jump_share", ">", label="Fig. 9: more R1 lines jump than 0-GP lines"),
        Comparison("latent", "r1", "jump", "<", label="Alg. 1: the latent path jumps less than R1"),
        Comparison("latent", "linear", "jump", "<", label="Alg. 1: the latent path jumps less than the straight line"),
        Comparison("r1", "linear", "ema_jump", ">", label="Fig. 9 on the EMA of G (context)"),
    ),
    judge=judge_latent_path,
)

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (ZERO_GP, LIPSCHITZ, FAR, PCR_SC, SC_PHOTOS, AUGMENT, SN_PLAYERS, LECAM, LATENT_PATH)
}


def get(name: str) -> Experiment:
    """The experiment called ``name``; a ReproError listing the valid names otherwise."""
    if name not in EXPERIMENTS:
        raise ReproError(f"unknown experiment {name!r}; valid names: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]
