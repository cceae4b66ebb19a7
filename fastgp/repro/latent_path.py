"""The ``latent-path`` experiment (``python -m fastgp.repro latent-path``): Thanh-Tung, Tran &
Venkatesh, "Improving Generalization and Stability of GANs" (ICLR 2019), Appendix F, Algorithm 1
take the zero-centred penalty at G(α·E(x) + (1 − α)·z), on G's manifold between a real sample x
and a fake G(z), instead of at the straight-line interpolates α·x + (1 − α)·G(z). Compared on the
``zero-gp`` experiment's task (8 Gaussians ×10, std 0.2, the paper's 2-hidden-layer ReLU MLPs of
64 units, the non-saturating loss, λ = 1): 0-GP on real samples (R1), 0-GP at straight-line
interpolates, and 0-GP on the latent path with the trainer's encoder (``regularizers.penalty.path:
latent``; its objective in ``fastgp.train.regularizers.LatentPathEncoder``: the authors' public
code has no encoder). Metrics: modes covered and high-quality share (G and EMA), and the two line
measurements below. Reduced: 4,000 generator steps of batch 256 and 3 seeds; no image experiment.

Its own measurement and picture: samples of G along straight lines
in latent space between two modes (Thanh-Tung et al., ICLR 2019, Figure 9's question: what G
makes of the latent space between the codes of two modes).

For a finished 2-D run, ``N_CODES`` latent codes are drawn from the run's noise distribution (a
fixed generator of their own, so every run and setting is measured on the same draws) and mapped
by G; a code is *on mode m* when its sample lies within 3·data.std of mode m (the trainer's
high-quality radius). ``N_PAIRS`` random pairs of codes on two different modes are joined by
straight latent lines of ``N_T`` points, and each line's samples G((1 − t)·z_a + t·z_b) are
classified the same way. Reported per run:

- ``line_off``: the share of the lines' interior points (0 < t < 1) whose sample is off every
  mode (farther than 3·std from all of them): samples G draws in the empty space between modes;
- ``line_switches``: the mean number of changes of the nearest mode along a line (1 for a clean
  jump from one mode to the other; more when the line visits other modes on the way).

Jumpiness (Figure 9's "small changes in input latent variable result in big difference in the
output"): ``N_PAIRS`` pairs of codes drawn at random from the noise distribution (Figure 9 joins
"two random samples"; no conditioning on modes, so it is defined for any G) are joined by straight
latent lines of ``N_T`` points, and each line's steps ``‖G(z_{t+1}) − G(z_t)‖`` are measured:

- ``jump``: the mean over lines of the largest step divided by the line's length in data space
  (the sum of its steps): 1/(N_T − 1) = 0.016 for a G that moves at a constant speed along the
  line (a linear G), near 1 for a G that jumps from one place to another in one step;
- ``jump_share``: the share of lines whose largest step is more than ``JUMP_FRACTION`` (half) of
  the line's length: lines that "mode-jump".

Both are measured for G and for its EMA (``ema_jump``, ``ema_jump_share``).
"""

from __future__ import annotations

import os

import torch

N_CODES, N_PAIRS, N_T, SEED = 4096, 256, 65, 20190101
JUMP_FRACTION = 0.5
FIGURE = "latent-path-lines.png"


def _codes(cfg: dict, n: int, generator: torch.Generator) -> torch.Tensor:
    noise = cfg["noise"]
    if noise["dist"] == "normal":
        return torch.randn(n, noise["dim"], generator=generator) * noise["scale"]
    return (torch.rand(n, noise["dim"], generator=generator) * 2 - 1) * noise["scale"]


@torch.no_grad()
def lines(G, data, cfg: dict) -> dict | None:
    """The lines of one trained G (in eval mode, on the CPU): their codes' samples [P, T, 2], the
    mode of each point ([P, T], −1 when off every mode), and ``line_off`` / ``line_switches``;
    None when G's samples sit on fewer than two modes (no pair to join)."""
    g = torch.Generator().manual_seed(SEED)
    z = _codes(cfg, N_CODES, g)
    dist, nearest = torch.cdist(G(z).float(), data.ref).min(dim=1)
    on = dist <= 3 * data.std
    mode = data.ref_mode[nearest]
    idx = on.nonzero().squeeze(1)
    if idx.numel() < 2 or mode[idx].unique().numel() < 2:
        return None
    a = idx[torch.randint(0, idx.numel(), (4 * N_PAIRS,), generator=g)]
    b = idx[torch.randint(0, idx.numel(), (4 * N_PAIRS,), generator=g)]
    keep = mode[a] != mode[b]
    a, b = a[keep][:N_PAIRS], b[keep][:N_PAIRS]
    t = torch.linspace(0, 1, N_T)[None, :, None]
    path = (1 - t) * z[a][:, None] + t * z[b][:, None]  # [P, T, d]
    samples = G(path.reshape(-1, path.shape[-1])).float()
    d, n = torch.cdist(samples, data.ref).min(dim=1)
    point_mode = torch.where(d <= 3 * data.std, data.ref_mode[n], -1).reshape(len(a), N_T)
    switches = (data.ref_mode[n].reshape(len(a), N_T).diff(dim=1) != 0).sum(dim=1).float()
    return {
        "samples": samples.reshape(len(a), N_T, -1),
        "mode": point_mode,
        "line_off": float((point_mode[:, 1:-1] < 0).float().mean()),
        "line_switches": float(switches.mean()),
    }


def step_ratios(samples: torch.Tensor) -> torch.Tensor:
    """Per line, its largest step over its length: ``samples`` [P, T, ...] are P lines of T ≥ 2
    points; returns [P] in [1/(T − 1), 1] (0 for a line whose points all coincide: no jump)."""
    if not isinstance(samples, torch.Tensor) or samples.dim() < 2 or samples.shape[1] < 2:
        raise ValueError(f"samples: expected a tensor [lines, points >= 2, ...], got "
                         f"{tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__}")
    steps = samples.flatten(2).double().diff(dim=1).norm(dim=2)  # [P, T - 1]
    length = steps.sum(dim=1)
    return torch.where(length > 0, steps.max(dim=1).values / length.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


@torch.no_grad()
def jumpiness(G, cfg: dict) -> dict:
    """``jump`` and ``jump_share`` of G (see the module's docstring) on ``N_PAIRS`` random pairs of
    codes of the run's noise distribution, the same draws for every run."""
    g = torch.Generator().manual_seed(SEED + 2)
    a, b = _codes(cfg, N_PAIRS, g), _codes(cfg, N_PAIRS, g)
    t = torch.linspace(0, 1, N_T)[None, :, None]
    path = (1 - t) * a[:, None] + t * b[:, None]  # [P, T, d]
    samples = G(path.reshape(-1, path.shape[-1])).float().reshape(N_PAIRS, N_T, -1)
    ratios = step_ratios(samples)
    return {"jump": float(ratios.mean()), "jump_share": float((ratios > JUMP_FRACTION).double().mean())}


def _generator_of(run, ema: bool = False):
    """The trained G (or its EMA) of a fastgp.train Run, on the CPU in eval mode (a copy: the run
    is left as is)."""
    import copy

    return copy.deepcopy(run.G_ema if ema else run.G).cpu().eval()


def measure(run) -> dict:
    """Experiment.measure: ``line_off`` and ``line_switches`` of a finished run (None without
    pairs), and the jumpiness of its G and of its EMA (None without an EMA)."""
    G = _generator_of(run)
    found = lines(G, run.data, run.cfg)
    out = {"line_off": None, "line_switches": None} if found is None else {
        "line_off": found["line_off"], "line_switches": found["line_switches"]}
    out.update(jumpiness(G, run.cfg))
    ema = jumpiness(_generator_of(run, ema=True), run.cfg) if run.G_ema is not None else {"jump": None, "jump_share": None}
    out.update({f"ema_{k}": v for k, v in ema.items()})
    return out


def figure(results: dict, out_dir: str) -> str:
    """Experiment.figure: per setting (seed 0), the data, G's samples and four latent lines
    between two modes, each line's points coloured by t; written as ``FIGURE`` in ``out_dir``."""
    from ..train import checkpoint, models
    from ..train import data as datasets
    from ..train.plots import _pyplot

    plt = _pyplot()
    settings = results["settings"]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 4.4), squeeze=False)
    for ax, s in zip(axes[0], settings):
        run_dir = os.path.join(out_dir, s["runs"][0]["dir"])
        payload = checkpoint.load(run_dir)
        cfg = payload["config"]
        data = datasets.build(cfg["data"], cfg["seed"])
        G = models.build(cfg, data.shape)[0]
        G.load_state_dict(payload["models"]["G"])
        G.eval()
        with torch.no_grad():
            cloud = G(_codes(cfg, 2048, torch.Generator().manual_seed(SEED + 1)))
        ax.scatter(*data.ref.T, s=400, c="0.9", zorder=0)
        ax.scatter(*cloud.T, s=1, c="0.6", zorder=1)
        found = lines(G, data, cfg)
        title = s["label"]
        jump = s["runs"][0]["values"].get("jump")
        if jump is not None:
            title += f"\njumpiness (largest step / path length) {jump:.3f}"
        if found is not None:
            # Four example lines, all between the same two modes (those of the first pair).
            first = found["mode"][:, 0] == found["mode"][0, 0]
            last = found["mode"][:, -1] == found["mode"][0, -1]
            shown = (first & last).nonzero().squeeze(1)[:4]
            for i in shown:
                pts = found["samples"][i]
                ax.plot(*pts.T, color="0.3", linewidth=0.5, zorder=2)
                ax.scatter(*pts.T, c=torch.linspace(0, 1, pts.shape[0]), cmap="viridis", s=8, zorder=3)
            title += f"\noff-mode share on lines {found['line_off']:.2f}, mode switches {found['line_switches']:.2f}"
        else:
            title += "\n(G covers fewer than 2 modes: no line)"
        lim = 1.5 * float(data.ref.abs().max())
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=8)
    head = "latent-path: G along straight latent lines between two modes (seed 0; colour: t from 0 to 1)"
    if results["quick"]:
        head += "  [QUICK: smoke run, not a result]"
    fig.suptitle(head, fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, FIGURE), dpi=100)
    plt.close(fig)
    return FIGURE
