"""PNG pictures of a run (matplotlib, from the ``train`` extra).

``samples.png``: for 2-D data, real vs generated points over the discriminator's value surface
D(x) with its gradient field ∇ₓD — the picture of the zero-centred-GP and Lipschitz-GAN papers: a
well-behaved D's gradients point from the fakes towards the data; for images, a grid of
generated images beside training images (grayscale or RGB, any size). ``curves.png``: losses and
metrics against the step, read back from metrics.jsonl.
"""

from __future__ import annotations

import json
import os

import torch


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the trainer's pictures need matplotlib: pip install 'fastgp[train]' (or set log.plots=false)"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save_palette_png(fig, path: str, dpi: int, colors: int = 256) -> None:
    """Save ``fig`` as a PNG of at most ``colors`` colours (Pillow's median cut, no dithering).
    For pictures full of noise images or dense arrows, which barely compress in 24-bit colour,
    this is a third of the size (the two lipschitz pictures: 0.75 MB -> 0.23 MB), with no
    visible change at these sizes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    palette.save(path, optimize=True)


def tile(x: torch.Tensor, cols: int = 8) -> torch.Tensor:
    """[n, C, H, W] images (C = 1 or 3) -> one [rows·(H+1), cols·(W+1), C] picture, images
    separated by 1-pixel gaps of value 0 (grey in the [-1, 1] range)."""
    n, C, H, W = x.shape
    rows = (n + cols - 1) // cols
    canvas = torch.zeros(rows * (H + 1), cols * (W + 1), C)
    for i, img in enumerate(x):
        r, c = divmod(i, cols)
        canvas[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = img.permute(1, 2, 0)
    return canvas


def image_grid(run, n: int = 64):
    """The figure of samples.png for image data."""
    plt = _pyplot()
    G = run.G_ema if run.G_ema is not None else run.G
    was_training = G.training
    G.eval()
    with torch.no_grad():
        fake = G(run.z_eval[:n]).cpu()
    G.train(was_training)
    real = run.real_eval[:n].cpu()

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    key = "ema_" if run.G_ema is not None else ""
    metric = run.data.main_metric
    value = run.last.get(key + metric, float("nan"))
    shown = f"{value:.2f}" if isinstance(value, float) else str(value)
    for ax, x, title in ((axes[0], fake, f"generated{' (EMA)' if key else ''}, step {run.step}: {metric} {shown}"),
                         (axes[1], real, "training images")):
        canvas = tile(x.clamp(-1, 1))
        if canvas.shape[-1] == 3:  # RGB: imshow wants values in [0, 1]
            ax.imshow(((canvas + 1) / 2).numpy(), interpolation="nearest")
        else:
            ax.imshow(canvas[..., 0].numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    return fig


def samples(run):
    """The figure of samples.png for 2-D data."""
    plt = _pyplot()
    G = run.G_ema if run.G_ema is not None else run.G
    with torch.no_grad():
        fake = G(run.z_eval).cpu()
    real = run.real_eval.cpu()
    both = torch.cat([real, fake[torch.isfinite(fake).all(1)]])
    lo, hi = both.min(0).values, both.max(0).values
    pad = 0.1 * (hi - lo).clamp_min(1e-3)
    lo, hi = lo - pad, hi + pad
    n = 60
    xs, ys = torch.linspace(float(lo[0]), float(hi[0]), n), torch.linspace(float(lo[1]), float(hi[1]), n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1).to(run.device).requires_grad_(True)
    value = run.D(grid).reshape(-1)
    (grad,) = torch.autograd.grad(value.sum(), grid)
    value, grad = value.detach().cpu().reshape(n, n), grad.cpu().reshape(n, n, 2)

    fig, ax = plt.subplots(figsize=(7, 6))
    surface = ax.contourf(gx, gy, value, levels=30, cmap="coolwarm", alpha=0.8)
    fig.colorbar(surface, ax=ax, label="D(x) (logit)")
    step = 4  # a sparser grid for the arrows
    ax.quiver(gx[::step, ::step], gy[::step, ::step], grad[::step, ::step, 0], grad[::step, ::step, 1],
              color="k", alpha=0.6, width=0.003)
    ax.scatter(real[:, 0], real[:, 1], s=3, c="tab:green", label="real", alpha=0.5)
    ax.scatter(fake[:, 0], fake[:, 1], s=3, c="tab:orange", label="generated" + (" (EMA)" if run.G_ema is not None else ""), alpha=0.5)
    ax.set_xlim(float(lo[0]), float(hi[0]))
    ax.set_ylim(float(lo[1]), float(hi[1]))
    ax.set_aspect("equal")
    last = run.last
    key = "ema_" if run.G_ema is not None else ""
    ax.set_title(
        f"{run.cfg['data']['name']}, step {run.step}: {last.get(key + 'modes', '?')}/{run.data.n_modes} modes, "
        f"high quality {last.get(key + 'hq', float('nan')):.2f}\narrows: ∇ₓD"
    )
    ax.legend(loc="upper right", markerscale=4)
    fig.tight_layout()
    return fig


def _panel(title: str, metric: str) -> tuple[str, list[str]]:
    return title, [metric, "ema_" + metric]


NEAREST = _panel("distance to the nearest training image", "nn_dist")
# The metric panels of each dataset family, recognized by a metric only it logs (first match wins).
METRIC_PANELS = [
    ("correct", [_panel("share with exactly N rectangles", "correct"), NEAREST]),
    ("classes", [_panel("digit classes covered", "classes"), _panel("KL(class histogram ‖ uniform)", "kl"),
                 _panel("classifier confidence", "confidence"), NEAREST]),
    ("hq", [_panel("high-quality share", "hq"), _panel("modes covered", "modes"),
            ("cos ∠(∇ₓD(fake), nearest real − fake)", ["grad_cos", "grad_cos_far"])]),
    ("nn_dist", [NEAREST]),  # user data
]


def curves(metrics_path: str, path: str) -> None:
    plt = _pyplot()
    with open(metrics_path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    last = records[-1]
    metrics = next(panels for marker, panels in METRIC_PANELS if marker in last)
    panels = [("losses", ["d_loss", "g_loss", "penalty"])] + metrics + [("Jacobian norms", ["grad_d_x", "jac_g_z"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (title, keys) in zip(axes, panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in records if key in r]
            if pts:
                ax.plot(*zip(*pts), label=key, marker="." if len(pts) < 30 else None)
        ax.set_title(title)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_all(run, events=None) -> None:
    """samples.png and curves.png; the samples figure also into the run's TensorBoard ``events``
    (a tensorboard_log.EventLog) when given."""
    fig = (samples if run.data.kind == "2d" else image_grid)(run)
    fig.savefig(os.path.join(run.out_dir, "samples.png"), dpi=100)
    if events is not None:
        events.figure("samples", fig, run.step)
    _pyplot().close(fig)
    curves(os.path.join(run.out_dir, "metrics.jsonl"), os.path.join(run.out_dir, "curves.png"))
