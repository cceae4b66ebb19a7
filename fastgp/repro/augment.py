"""The ``augment`` experiment's own measurement (Table 1 and 2 of "Generalization and Stability of
GANs: A theory and promise from data augmentation", the text in
../shared/papers/augmentation-generalization-stability.txt).

Table 1's metric is L_Vg = max over 5,000 noise vectors of ‖∂V_g(z)/∂z‖, where V_g(z) is the
generator's objective of one noise vector *through D and the loss*, log(1 − D(G(z))) in the
paper's minimax GAN; ‖∂G/∂z‖ alone (what the trainer logs as ``jac_g_z``) leaves out D and the
loss. For a finished run, :func:`measure` draws ``N_NOISE`` noise vectors from the run's noise
distribution (a fixed generator of their own: every run and setting is measured on the same
draws of the unit box, scaled by the run's s) and reports, with G and D (spectral norm included)
in eval mode:

- ``l_vg``: L_Vg with the paper's V_g = log(1 − σ(D(G(z)))) (the ``saturating`` generator loss,
  −softplus(f), whose gradient norm is that of log(1 − σ(f))), by
  :func:`fastgp.diagnostics.loss_lipschitz`;
- ``l_vg_train``: the same with the generator loss the run trained with (non-saturating here);
- ``l_vg_bz`` / ``l_vg_bz_train``: those times B_z, the size of the noise box [−s, s]^d as the
  paper's Table 1 lists it (B_z = s: 1e-2, 1, 1e2); None for unbounded (normal) noise;
- ``v_g``: the mean of V_g = log(1 − D(G(z))) over the noise set and ``neg_d_gz`` = −mean
  σ(D(G(z))), Table 1's and 2's "loss V_g" and "−D(G(z))" columns;
- ``grad_d_gz``: the mean ‖∂D/∂x‖ at x = G(z) over the noise set (Table 2's statistics are
  "estimated from 5000 random noises").
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

from .. import diagnostics

N_NOISE, SEED = 5000, 20210101
DISTS = ("uniform", "normal")


def _check_noise(noise_cfg) -> None:
    if not isinstance(noise_cfg, dict) or noise_cfg.get("dist") not in DISTS:
        raise ValueError(f"noise_cfg must be a trainer noise config with dist in {DISTS}, got {noise_cfg!r}")
    scale, dim = noise_cfg.get("scale"), noise_cfg.get("dim")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
        raise ValueError(f"noise_cfg['scale'] must be a positive number, got {scale!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"noise_cfg['dim'] must be an int >= 1, got {dim!r}")


def bound(noise_cfg: dict) -> float | None:
    """B_z of the run's noise: s for uniform noise on [−s, s]^d (Table 1's B_z), None for normal."""
    _check_noise(noise_cfg)
    return float(noise_cfg["scale"]) if noise_cfg["dist"] == "uniform" else None


def noise_set(noise_cfg: dict, n: int = N_NOISE) -> torch.Tensor:
    """``n`` noise vectors of the run's distribution from a fixed generator (the same unit draws for
    every run): uniform on [−s, s]^d or normal with std s."""
    _check_noise(noise_cfg)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (noise vectors), got {n!r}")
    g = torch.Generator().manual_seed(SEED)
    shape = (n, noise_cfg["dim"])
    if noise_cfg["dist"] == "uniform":
        return (torch.rand(shape, generator=g) * 2 - 1) * noise_cfg["scale"]
    return torch.randn(shape, generator=g) * noise_cfg["scale"]


def paper_vg(fake_logits: torch.Tensor) -> torch.Tensor:
    """The paper's V_g per batch: mean log(1 − σ(f)) = −mean softplus(f) (minimax GAN)."""
    return -F.softplus(fake_logits).mean()


def measure_models(G, D, noise_cfg: dict, g_loss, n: int = N_NOISE) -> dict:
    """The quantities of the module docstring for a G and D in eval mode (on the CPU)."""
    z = noise_set(noise_cfg, n)
    b_z = bound(noise_cfg)
    # Spectral norm's σ is recomputed on every call of D unless cached; the weights are fixed here.
    with parametrize.cached():
        l_vg, _ = diagnostics.loss_lipschitz(paper_vg, G, D, z)
        l_vg_train, _ = diagnostics.loss_lipschitz(g_loss, G, D, z)
        with torch.no_grad():
            fake = G(z)
        grad_d = diagnostics.jacobian_norm(D, fake)
        with torch.no_grad():
            logits = D(fake).reshape(-1).double()
    return {
        "l_vg": float(l_vg),
        "l_vg_train": float(l_vg_train),
        "l_vg_bz": None if b_z is None else float(l_vg) * b_z,
        "l_vg_bz_train": None if b_z is None else float(l_vg_train) * b_z,
        "v_g": float(-F.softplus(logits).mean()),
        "neg_d_gz": float(-torch.sigmoid(logits).mean()),
        "grad_d_gz": float(grad_d.mean()),
    }


def measure(run) -> dict:
    """Experiment.measure: the module docstring's quantities for a finished fastgp.train Run (copies
    of its G and D on the CPU in eval mode; the run is left as is)."""
    G = copy.deepcopy(run.G).cpu().eval()
    D = copy.deepcopy(run.D).cpu().eval()
    return measure_models(G, D, run.cfg["noise"], run.g_loss_fn)


# The sn-players experiment (the same paper's Fig. 1): how much G can still learn from D.
N_PLAYERS = 1000


def measure_players(run) -> dict:
    """Experiment.measure of ``sn-players`` for a finished Run, on copies of its G and D in eval mode
    over ``N_PLAYERS`` noise vectors of the run's distribution (``noise_set``):

    - ``grad_g_params``: ‖∂V_g/∂φ‖_F, the norm of the gradient of the paper's V_g = mean
      log(1 − σ(D(G(z)))) with respect to all of G's parameters φ (with spectral norm: the
      unnormalized weights it is parametrized by). Small means the vanishing gradient of Fig. 1:
      G "did not learn anything from D";
    - ``d_gz``: mean σ(D(G(z))), D's probability that G's samples are real."""
    G = copy.deepcopy(run.G).cpu().eval()
    D = copy.deepcopy(run.D).cpu().eval().requires_grad_(False)
    z = noise_set(run.cfg["noise"], N_PLAYERS)
    params = [p for p in G.parameters() if p.requires_grad]
    with parametrize.cached():
        logits = D(G(z)).reshape(-1)
        grads = torch.autograd.grad(paper_vg(logits), params)
    norm = torch.sqrt(sum(g.double().pow(2).sum() for g in grads))
    return {"grad_g_params": float(norm), "d_gz": float(torch.sigmoid(logits.detach().double()).mean())}
