"""The trainer's datasets (nothing is downloaded): ``build`` makes the one ``data.name`` names.

==============  ==================================================================================
2-D             ``8gaussians``, ``ring``, ``swissroll``, ``finite-gaussian``: this module (below)
``rectangles``  32×32 images of N separated squares: ``images.py``
``digits``      scikit-learn's 8×8 digits resized to ``data.resolution``: ``digits.py``
``photos``      48 tiles of scikit-learn's two sample photographs (RGB): ``photos.py``
``folder``      the user's images (.png/.jpg/.jpeg/.bmp) under ``data.path``: ``userdata.py``
``array``       the user's .npy/.npz images at ``data.path``: ``userdata.py``
==============  ==================================================================================

Every image dataset yields float32 images [N, C, H, W] with values in [-1, 1], the tanh range of
the generators. User data is mapped there: 8-bit images and uint8 arrays as x/127.5 − 1 (0 → −1,
255 → 1); float arrays must already lie in [-1, 1] and are refused (with their min and max)
otherwise. User images are centre-cropped to a square and resized to ``data.resolution``.

2-D toy datasets
----------------

Each dataset samples points with a ``torch.Generator`` and describes where the data lies by
reference points grouped into modes:

==================  =====================================================  =====================
name                samples                                                modes
==================  =====================================================  =====================
8gaussians          8 Gaussians (std ``std``) centred on a circle of       the 8 centres
                    radius ``scale`` at angles k·45° (default radius 10,
                    std 0.2: see "8 Gaussians and the paper's code")
ring                angle ~ U(0, 2π), radius ``scale`` + N(0, std²)         8 arcs of 45°
swissroll           the curve t·(cos t, sin t)·scale/(4.5π), t ∈ [1.5π,    8 equal pieces of t
                    4.5π], + N(0, std²) noise
finite-gaussian     a fixed sample of ``n_points`` from N(0, scale²·I)      each point
                    (seed-determined; the Fake-As-Real setting)
==================  =====================================================  =====================

8 Gaussians and the paper's code
--------------------------------

The zero-centred-GP paper's code (htt210/GeneralizationAndStabilityInGANs, ``Datasets.py``,
``ToyDataset('8Gaussians', scale=10)``, the default of ``GradientPenaltiesGAN.py``) puts the
centres at ``scale`` times the 8 unit vectors at angles k·45°, adds N(0, 0.02²) noise per
coordinate, and divides the whole sample by 1.414: radius 10/1.414 = 7.0721, std 0.02/1.414 =
0.014144 (``PAPER_8GAUSSIANS``; ``configs/8gaussians-paper-data.yaml`` trains on exactly that, with
a mode drawn uniformly per sample as its ``random.choice``). The trainer's default keeps radius 10
and std 0.2, deliberately: the metrics call a sample high quality within 3·std of a centre, and with
std 0.014 (a 0.042 radius, 1/170 of the circle's radius) the default 6,000-step run cannot show a
difference between penalties — measured on the paper's data at 3,000 steps, the zero-centred
penalty covered 0 of 8 modes with 2% high-quality samples (5% for the EMA), no penalty 0 (EMA 3),
where the paper's code trains 20,000 steps. Only the numbers differ (the same 8 centre directions,
the same isotropic noise); ``data.scale`` and ``data.std`` are the radius and the std of the data
as sampled, with or without the paper's division.

Metrics of a generated batch: a sample is *high quality* when it lies within 3·std of the data
(of a mode centre, of the ring's circle, of the roll's curve, of a training point), or within
``data.hq_radius`` where that is set (> 0: the paper's std 0.014 asks a precision that a run of a
few thousand SGD steps does not reach, while which modes G covers shows long before); a mode is
*covered* when it receives at least a quarter of its fair share of the batch (n / (4·modes)) of
high-quality samples, so a few stray points do not count as covering it. For finite-gaussian
``hq`` is the share of copies (within 3·std of a training point, i.e. memorization), and two more
measure generalization: ``mmd``, the unbiased squared MMD (Gaussian kernel, bandwidth
``data.scale``) between the batch and 2,048 fresh draws of the true Gaussian that are never
trained on, and ``mmd_train``, the same against the training points (fitting the finite sample).
"""

from __future__ import annotations

import math

import torch

from .config import DATASETS_2D

# The 8 Gaussians of the zero-centred-GP paper's code, ToyDataset('8Gaussians', scale=10): centres
# at 10·(unit vectors), noise N(0, 0.02²), the sample divided by 1.414 (its "stdev" normalisation).
PAPER_8GAUSSIANS = {"scale": 10 / 1.414, "std": 0.02 / 1.414}


# finite-gaussian: fresh samples of the true Gaussian held for the ``mmd`` metric.
FRESH_SAMPLES = 2048


def rbf_mmd2(x: torch.Tensor, y: torch.Tensor, bandwidth: float, y_term: float | None = None) -> float:
    """The unbiased estimate of the squared maximum mean discrepancy between the samples ``x``
    [n, d] and ``y`` [m, d] (n, m >= 2) under the Gaussian kernel exp(−‖a − b‖² / (2·bandwidth²))
    (Gretton et al., JMLR 2012, Eq. 3): 0 in expectation when both come from one distribution, so
    it can be slightly negative. ``y_term``: ``mean_kernel_within(y, bandwidth)`` when it is known
    (a fixed reference sample: computed once instead of at every call)."""
    _check_samples(x, y)
    gamma = _gamma(bandwidth)
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    if y_term is None:
        y_term = mean_kernel_within(y, bandwidth)
    cross = torch.exp(-gamma * torch.cdist(x, y).pow(2)).mean()
    return float(mean_kernel_within(x, bandwidth) + y_term - 2 * cross)


def mean_kernel_within(x: torch.Tensor, bandwidth: float) -> float:
    """The mean Gaussian kernel over the pairs of distinct rows of ``x`` (the U-statistic's
    within-sample term of ``rbf_mmd2``), in float64."""
    _check_samples(x, x)
    gamma = _gamma(bandwidth)
    x = x.detach().double().cpu()
    n = x.shape[0]
    k = torch.exp(-gamma * torch.cdist(x, x).pow(2))
    return float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))


def _check_samples(x, y) -> None:
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise TypeError(f"x, y: expected tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1] or x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError(f"x, y: expected [n, d] and [m, d] with n, m >= 2, got {tuple(x.shape)} and {tuple(y.shape)}")


def _gamma(bandwidth) -> float:
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not bandwidth > 0:
        raise ValueError(f"bandwidth: expected a number > 0, got {bandwidth!r}")
    return 1.0 / (2.0 * float(bandwidth) ** 2)


class Toy2D:
    """Samples and metrics of one 2-D dataset."""

    kind = "2d"
    main_metric = "hq"
    shape = (2,)

    def __init__(self, name: str, scale: float, std: float, n_points: int, seed: int, hq_radius: float = 0.0):
        self.name, self.scale, self.std = name, scale, std
        # Metrics only: the data's own 3·std unless asked otherwise (data.hq_radius).
        self.hq_radius = hq_radius if hq_radius > 0 else 3 * std
        if name == "8gaussians":
            angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
            self.ref = torch.stack([angles.cos(), angles.sin()], 1) * scale
            self.ref_mode = torch.arange(8)
        elif name == "ring":
            angles = torch.arange(720, dtype=torch.float64) * (2 * math.pi / 720)
            self.ref = torch.stack([angles.cos(), angles.sin()], 1) * scale
            self.ref_mode = torch.arange(720) // 90
        elif name == "swissroll":
            t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, 2000, dtype=torch.float64)
            self.ref = self._roll(t)
            self.ref_mode = torch.arange(2000) * 8 // 2000
        elif name == "finite-gaussian":
            # Its own generator: the training set depends on the seed only, not on the run's stream.
            g = torch.Generator().manual_seed(seed + 7919)
            self.ref = torch.randn(n_points, 2, generator=g, dtype=torch.float64) * scale
            self.ref_mode = torch.arange(n_points)
            # Fresh draws of the same Gaussian, never trained on: the yardstick of generalization
            # (G fits the distribution) as against memorization (G copies the training points).
            fresh = torch.Generator().manual_seed(seed + 104729)
            self.fresh = (torch.randn(FRESH_SAMPLES, 2, generator=fresh, dtype=torch.float64) * scale).float()
            self._within = {"fresh": mean_kernel_within(self.fresh, scale)}
        else:
            raise ValueError(f"data.name: unknown 2-D dataset {name!r}")
        self.ref = self.ref.float()
        self.n_modes = int(self.ref_mode.max()) + 1

    def _roll(self, t: torch.Tensor) -> torch.Tensor:
        return torch.stack([t * t.cos(), t * t.sin()], 1) * (self.scale / (4.5 * math.pi))

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.name == "8gaussians":
            idx = torch.randint(0, 8, (n,), generator=generator)
            return self.ref[idx] + self.std * torch.randn(n, 2, generator=generator)
        if self.name == "ring":
            angle = torch.rand(n, generator=generator) * (2 * math.pi)
            radius = self.scale + self.std * torch.randn(n, generator=generator)
            return torch.stack([angle.cos(), angle.sin()], 1) * radius[:, None]
        if self.name == "swissroll":
            t = 1.5 * math.pi + 3 * math.pi * torch.rand(n, generator=generator)
            return self._roll(t) + self.std * torch.randn(n, 2, generator=generator)
        idx = torch.randint(0, self.ref.shape[0], (n,), generator=generator)
        return self.ref[idx].clone()

    @torch.no_grad()
    def metrics(self, fake: torch.Tensor) -> dict:
        """``modes`` covered (of ``n_modes``), ``hq`` share, for a batch of generated points."""
        fake = fake.detach().float().cpu()
        dist, nearest = torch.cdist(fake, self.ref).min(dim=1)
        if self.name == "ring":  # exact distance to the circle rather than to its discretization
            dist = (fake.norm(dim=1) - self.scale).abs()
        hq = dist <= self.hq_radius
        counts = torch.bincount(self.ref_mode[nearest[hq]], minlength=self.n_modes)
        needed = max(1.0, fake.shape[0] / (4 * self.n_modes))
        finite = bool(torch.isfinite(fake).all())
        out = {
            "modes": int((counts >= needed).sum()) if finite else 0,
            "hq": float(hq.float().mean()) if finite else 0.0,
        }
        if self.name == "finite-gaussian":
            # Kernel bandwidth: the Gaussian's std (data.scale), the scale on which "fits the
            # distribution" and "collapses onto a few points" differ. A diverged G scores NaN.
            nan = float("nan")
            out["mmd"] = rbf_mmd2(fake, self.fresh, self.scale, self._within["fresh"]) if finite else nan
            out["mmd_train"] = rbf_mmd2(fake, self.ref, self.scale) if finite else nan
        return out


def build(d: dict, seed: int):
    """The dataset of a resolved config's ``data`` section. User data is read here, so every
    problem with it is a ConfigError before training starts."""
    name = d["name"]
    if name in DATASETS_2D:
        return Toy2D(name, d["scale"], d["std"], d["n_points"], seed, d["hq_radius"])
    if name == "rectangles":
        from .images import Rectangles

        return Rectangles(d["n_images"], d["n_rect"], seed, siblings=d["siblings"])
    if name == "digits":
        from .digits import Digits

        return Digits(d["resolution"], d["subset"])
    if name == "photos":
        from .photos import Photos

        return Photos(d["resolution"], d["subset"])
    from .userdata import UserImages

    return UserImages(name, d["path"], d["key"], d["channels"], d["resolution"])
