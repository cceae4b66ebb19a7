"""The Lipschitz-GAN claim tested where it is stated: the optimal D for FIXED real and fake samples.

Zhou et al., "Lipschitz Generative Adversarial Nets" (ICML 2019), Theorem 3 and §3: let D minimize
E_fake φ(D(x)) + E_real ϕ(D(x)) under a Lipschitz constraint. If φ is strictly convex (e.g. the
``lgan-combined`` pair, φ(x) = x − (α/β)·log σ(−βx)), the optimal D* is unique on the supports and
at every fake point x its gradient points at a real sample y: ∇D*(x) = k·(y − x)/‖y − x‖. With the
Wasserstein objective (φ linear) D* is not unique and this is not guaranteed. The statement is about
D* for GIVEN distributions, not about a training run, where G moves and D never converges; so
here nothing moves but D:

1. a frozen set of real samples (8 Gaussians ×10, std 0.2, the trainer's dataset) and a frozen set
   of fakes (N(0, FAKE_STD²·I): inside, across and outside the ring), drawn from the seed;
2. D (the trainer's 2-D MLP, ``fastgp.train.models.mlp``, HIDDEN units, ReLU) trained on exactly
   those samples, full batch, for D_STEPS Adam steps (lr 10⁻³, betas (0.5, 0.9)) with
   :mod:`fastgp.losses` and :func:`fastgp.gradient_penalty`, as the ``lipschitz`` training runs:
   ``lgan-combined`` (α = β = 1) + max-GP (λ = 0.1), or the Wasserstein loss + WGAN-GP (λ = 10);
3. at every fake, the cosine between ∇D and the direction to its nearest real sample
   (:func:`fastgp.diagnostics.gradient_direction`), averaged over all fakes and over the fakes
   farther than 3 std from every real sample, the share of fakes with cosine > 0.9, and, as a
   convergence check, how much the mean cosine moved over the last quarter of the steps.

The theorem's y is *some* real sample (the one D* transports x to), not necessarily the nearest:
a cosine below 1 to the nearest sample does not by itself contradict it, but for fakes off a
ring of 8 separated modes the two mostly coincide. :func:`field_plot` draws ∇D's direction over
the plane with the real and fake samples (``lipschitz-field.png``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .. import losses
from ..diagnostics import gradient_direction
from ..penalty import gradient_penalty
from ..train.data import Toy2D
from ..train.models import mlp
from .runner import Metric, aggregate, cell

__all__ = ["FIELD_PNG", "SETTINGS", "Setting", "frozen_samples", "study", "train_discriminator"]

N_REAL = 512
N_FAKE = 512
FAKE_STD = 6.0  # the fakes' spread: the ring has radius 10, so they lie inside, across and beyond it
HIDDEN = 128
D_STEPS = 2000
QUICK_D_STEPS = 10
LR = 1.0e-3
BETAS = (0.5, 0.9)
RECORDS = 8  # cosine records per training (the last quarter's change is read from them)
FIELD_PNG = "lipschitz-field.png"


@dataclass(frozen=True)
class Setting:
    """One D objective: a :func:`fastgp.losses.get` loss and a :func:`fastgp.gradient_penalty` kind."""

    name: str
    label: str
    loss: str
    kind: str
    weight: float
    params: dict = field(default_factory=dict)


SETTINGS = (
    Setting("lgan-max-gp", "max-GP (λ = 0.1) + lgan-combined loss", "lgan-combined", "max-gp", 0.1,
            {"alpha": 1.0, "beta": 1.0}),
    # The same objective under a penalty as strong as WGAN-GP's: separates the effect of φ from
    # that of the penalty's weight (at λ = 0.1 the slope D settles at grows like 1/λ, slowly).
    Setting("lgan-max-gp-10", "max-GP (λ = 10) + lgan-combined loss", "lgan-combined", "max-gp", 10.0,
            {"alpha": 1.0, "beta": 1.0}),
    Setting("wgan-gp", "WGAN-GP (Wasserstein loss, λ = 10)", "wasserstein", "wgan-gp", 10.0),
)

METRICS = (
    Metric("cos", "cos(∇D, to nearest real), all fakes", ".2f"),
    Metric("cos_far", "same, fakes > 3 std off the data", ".2f"),
    Metric("aligned", "share of fakes with cos > 0.9", ".2f"),
    Metric("cos_drift", "change of the mean cos over the last quarter", ".3f"),
)


def frozen_samples(seed: int, n_real: int = N_REAL, n_fake: int = N_FAKE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(real, fake)``: [n_real, 2] samples of 8 Gaussians ×10 (std 0.2) and [n_fake, 2] fakes from
    N(0, FAKE_STD²·I), float32, drawn from their own generator seeded by ``seed``."""
    for name, n in (("n_real", n_real), ("n_fake", n_fake)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    real = Toy2D("8gaussians", 10.0, 0.2, 1, seed).sample(n_real, g)
    fake = FAKE_STD * torch.randn(n_fake, 2, generator=g)
    return real, fake


def train_discriminator(D, real: torch.Tensor, fake: torch.Tensor, setting: Setting, steps: int, *,
                        generator: torch.Generator | None = None, on_record=None, records: int = RECORDS) -> list:
    """Train ``D`` on the fixed ``real`` and ``fake`` batches (full batch, every step) for ``steps``
    Adam steps of ``setting``'s loss + penalty; returns the D loss (penalty included) of every
    step. ``real`` and ``fake`` need the same shape (the penalty interpolates between them, one α
    per pair, drawn from ``generator``). ``on_record(step)`` is called ``records`` times, evenly
    spaced, the last at the final step."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {list(real.shape)} and {list(fake.shape)}")
    d_loss, _ = losses.get(setting.loss, **setting.params)
    opt = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS)
    every = max(1, steps // records)
    history = []
    for step in range(1, steps + 1):
        loss = d_loss(D(real), D(fake)) + gradient_penalty(D, real, fake, kind=setting.kind, weight=setting.weight,
                                                            generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if on_record is not None and (step % every == 0 or step == steps):
            on_record(step)
    return history


def measure(D, real: torch.Tensor, fake: torch.Tensor, far: float = 3 * 0.2) -> dict:
    """The cosine metrics of ``D`` at the fakes (see the module docstring)."""
    cos, _, distance = gradient_direction(D, fake, real, return_nearest=True)
    off = distance > far
    return {
        "cos": float(cos.nanmean()),
        "cos_far": float(cos[off].nanmean()) if bool(off.any()) else None,
        "aligned": float((cos > 0.9).float().mean()),
    }


def one_run(setting: Setting, seed: int, steps: int) -> tuple[dict, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Values of one (setting, seed): frozen samples, a fresh D (initialized from the seed),
    trained, measured; also D and the samples, for the picture."""
    real, fake = frozen_samples(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        D = mlp(2, HIDDEN, 1, "relu")
    trace = []
    history = train_discriminator(D, real, fake, setting, steps, generator=torch.Generator().manual_seed(seed + 1),
                                  on_record=lambda step: trace.append((step, measure(D, real, fake)["cos"])))
    values = measure(D, real, fake)
    quarter = [c for s, c in trace if s <= steps - steps // 4] or [trace[0][1]]
    values["cos_drift"] = values["cos"] - quarter[-1]
    values["d_loss"] = history[-1]
    return {"values": values, "trace": trace}, D, real, fake


def field_plot(panels: list, path: str, title: str) -> None:
    """One panel per (label, D, real, fake): ∇D's direction on a grid over [−16, 16]² (arrows of
    unit length, coloured by ‖∇D‖), the real samples (black dots) and the fakes (red, each with
    its own gradient direction)."""
    from ..train.plots import _pyplot

    plt = _pyplot()
    lim = 16.0
    axis = torch.linspace(-lim, lim, 25)
    grid = torch.cartesian_prod(axis, axis)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 6.2), squeeze=False)
    for ax, (label, D, real, fake) in zip(axes[0], panels):
        for points, colour, width in ((grid, None, 0.003), (fake[:160], "tab:red", 0.004)):
            x = points.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(D(x).sum(), x)
            norm = g.norm(dim=1, keepdim=True).clamp_min(1e-12)
            u = (g / norm).detach()
            args = (points[:, 0], points[:, 1], u[:, 0], u[:, 1])
            if colour is None:  # the grid: coloured by the gradient's norm
                ax.quiver(*args, norm.squeeze(1).detach(), cmap="viridis", angles="xy", scale=32, width=width)
            else:
                ax.quiver(*args, color=colour, angles="xy", scale=32, width=width)
        ax.plot(real[:, 0], real[:, 1], "k.", markersize=2, label="real (frozen)")
        ax.plot(fake[:160, 0], fake[:160, 1], "rx", markersize=3, label="fake (frozen), with ∇D")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(label, fontsize=9)
        ax.legend(loc="lower left", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # room for the title
    fig.savefig(path, dpi=90)
    plt.close(fig)


def study(out_dir: str, seeds: int, quick: bool, log=print, steps: int | None = None,
          previous: dict | None = None) -> dict:
    """Every setting × seed of the fixed-G study; writes ``FIELD_PNG`` (seed 0) into ``out_dir``
    and returns ``{"steps", "settings": [{name, label, summary, runs}], "markdown", "files"}``.

    ``previous``: an earlier study's results (same steps): the runs of its settings are taken
    from it instead of being trained again, except seed 0, which the picture needs; its values
    must come out as recorded (the study is deterministic per seed), else ValueError."""
    steps = steps if steps is not None else (QUICK_D_STEPS if quick else D_STEPS)
    if previous is not None and previous["steps"] != steps:
        raise ValueError(f"previous: a study of {previous['steps']} steps, not {steps}")
    done = {p["name"]: p for p in (previous or {}).get("settings", ())}
    results = {"steps": steps, "n_real": N_REAL, "n_fake": N_FAKE, "fake_std": FAKE_STD, "hidden": HIDDEN,
               "settings": []}
    panels = []
    for s in SETTINGS:
        recorded = {r["seed"]: r for r in done[s.name]["runs"]} if s.name in done else {}
        runs = []
        for seed in range(seeds):
            if seed in recorded and seed != 0:
                runs.append(recorded[seed])
                continue
            run, D, real, fake = one_run(s, seed, steps)
            if seed in recorded and recorded[seed]["values"] != run["values"]:
                raise ValueError(f"previous: {s.name} seed {seed} gave {run['values']}, recorded "
                                 f"{recorded[seed]['values']}")
            runs.append({"seed": seed, **run})
            if seed == 0:
                panels.append((s.label, D, real, fake))
            shown = ", ".join(f"{k}={v:.3f}" for k, v in run["values"].items() if v is not None)
            log(f"[fixed G] {s.name} seed {seed}: {shown}")
        results["settings"].append({"name": s.name, "label": s.label, "loss": s.loss, "kind": s.kind,
                                    "weight": s.weight, "params": s.params, "summary": aggregate(runs, METRICS),
                                    "runs": runs})
    os.makedirs(out_dir, exist_ok=True)
    field_plot(panels, os.path.join(out_dir, FIELD_PNG),
               f"fixed G, seed 0: ∇D of the trained D ({steps} D steps) — arrows: direction; colour: ‖∇D‖, "
               "each panel its own scale")
    lines = [
        "## Fixed G: the trained D for frozen real and fake samples (the paper's statement)",
        "",
        f"{N_REAL} real samples of 8 Gaussians ×10 and {N_FAKE} fakes from N(0, {FAKE_STD:g}²·I), frozen per seed; "
        f"D (MLP 2→{HIDDEN}→{HIDDEN}→1, ReLU) trained on them alone for {steps} full-batch Adam steps; mean ± std "
        f"over seeds {_seed_text(seeds)}. Picture: `{FIELD_PNG}`.",
        "",
        "| D objective | " + " | ".join(m.label for m in METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for s in results["settings"]:
        lines.append(f"| {s['label']} | " + " | ".join(cell(s["summary"][m.key], m.fmt, seeds) for m in METRICS) + " |")
    results["markdown"] = "\n".join(lines + [""])
    results["files"] = [FIELD_PNG]
    return results


def _seed_text(seeds: int) -> str:
    return "0" if seeds == 1 else f"0–{seeds - 1}"
