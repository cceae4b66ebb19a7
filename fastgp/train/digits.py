"""``digits``: scikit-learn's bundled 8×8 handwritten digits as a small MNIST stand-in, and the
classifier that measures generated digits.

The 1,797 images (values 0..16, nothing is downloaded) are mapped to [-1, 1] (x/8 − 1) and resized
to ``resolution`` × ``resolution`` with bilinear interpolation (``align_corners=False``; the
antialiasing filter only matters below 8×8, when the images shrink): [N, 1, R, R].

The classifier is a small CNN trained by fastgp on 80% of the digits at the same resolution (a
fixed split and seed, a few seconds on 2 CPU cores; its accuracy on the held-out 20% is stored with
it), with random blobs as outliers trained towards the uniform prediction, and cached as
``digits-classifier-r{R}-v{VERSION}.pt`` under ``$FASTGP_CACHE_DIR`` (default ``~/.cache/fastgp``). The file is written atomically; a corrupt or foreign cache file is retrained
with a warning, and an unwritable cache directory only costs the retraining next time.
Training or loading it never touches the global random state, so a run is the same whether the
classifier came from the cache or not. Training it prints one line to stderr (what, where it is cached,
how long it took).

Metrics of a generated batch of n images (each classified by its most likely class):
``classes``, the classes that get at least a quarter of their fair share n/10 (as the 2-D modes);
``kl``, KL(class histogram ‖ uniform) — 0 for a perfectly balanced batch, log 10 ≈ 2.30 when every
image is one class; ``confidence``, the mean largest softmax probability; and ``nn_dist``, the
distance to the nearest training image shared by every image dataset.
"""

from __future__ import annotations

import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import save_atomically
from .images import ImageData
from .options import ConfigError

VERSION = 2  # bump when the classifier's architecture, data or training changes: old caches are ignored
N_CLASSES = 10
CACHE_ENV = "FASTGP_CACHE_DIR"
HELD_OUT = 0.2
SEED = 0
SUBSET_SEED = 1  # data.subset: which images a limited-data run keeps
EPOCHS, BATCH, LR = 20, 64, 3e-3
OUTLIER_WEIGHT = 0.5


def require_sklearn():
    """``sklearn.datasets``, or an ImportError that says how to install it."""
    try:
        import sklearn.datasets
    except ImportError:
        raise ImportError(
            "the digits dataset needs scikit-learn (its bundled 8×8 digits): pip install 'fastgp[digits]'"
        ) from None
    return sklearn.datasets


def load_digits(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [1797, 1, R, R] float32 in [-1, 1], labels [1797] int64)."""
    bunch = require_sklearn().load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)[:, None] / 8 - 1
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    if resolution != images.shape[-1]:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                               antialias=True)
    # Bilinear weights are a convex combination: the range stays [-1, 1] up to rounding.
    return images.clamp_(-1, 1), labels


def cache_dir() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "fastgp")


def cache_path(resolution: int) -> str:
    return os.path.join(cache_dir(), f"digits-classifier-r{resolution}-v{VERSION}.pt")


def _net() -> nn.Sequential:
    # Strided convolutions keep it cheap at 28-32 px; adaptive pooling makes one architecture
    # serve every resolution. 97-98% held-out accuracy at 28 and 32 in ~3 s on one thread.
    # The layers' initialisation draws from the global stream, which seeds the GAN: draw it from a
    # forked stream instead, so that neither training nor loading the classifier moves the run's
    # random state (a cached and a fresh classifier give the same run).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        return nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(32 * 4 * 4, N_CLASSES),
        )


class Classifier:
    """The trained network (eval mode, no gradients) and its held-out accuracy."""

    def __init__(self, net: nn.Module, accuracy: float):
        self.net = net.eval().requires_grad_(False)
        self.accuracy = accuracy

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).softmax(1)


def _split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SEED))
    n_held = int(n * HELD_OUT)
    return perm[n_held:], perm[:n_held]


def smooth_noise(n: int, resolution: int, generator: torch.Generator) -> torch.Tensor:
    """Random blobs in [-1, 1]: a 7×7 Gaussian field upsampled and squashed, the kind of shapeless
    image an untrained generator makes."""
    low = torch.randn(n, 1, 7, 7, generator=generator) * 1.5
    return torch.tanh(F.interpolate(low, size=(resolution, resolution), mode="bilinear", align_corners=False) * 2 - 1)


def _train_classifier(resolution: int) -> Classifier:
    images, labels = load_digits(resolution)
    train_idx, held_idx = _split(images.shape[0])
    # Its own random stream: the global state (which seeds the GAN) is the same after as before.
    g = torch.Generator().manual_seed(SEED + 1)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    for _ in range(EPOCHS):
        order = train_idx[torch.randperm(train_idx.numel(), generator=g)]
        for batch in order.split(BATCH):
            # Outlier exposure (Hendrycks et al. 2019): blobs are pushed towards the uniform
            # prediction, so `confidence` separates shapeless samples from digits. Measured at 28×28
            # without -> with it: uniform noise 0.59 -> 0.23, an MLP GAN's blobs after 200 steps
            # 0.84 -> 0.62, its digits after 3,000 steps 0.93 -> 0.82, held-out digits 0.98 -> 0.92.
            outliers = net(smooth_noise(BATCH // 2, resolution, g)).log_softmax(1).mean()
            loss = F.cross_entropy(net(images[batch]), labels[batch]) - OUTLIER_WEIGHT * outliers
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = float((net(images[held_idx]).argmax(1) == labels[held_idx]).float().mean())
    return Classifier(net, accuracy)


def _load_cached(path: str, resolution: int) -> Classifier | None:
    """The cached classifier, or None (with a warning when a file is there but unusable)."""
    if not os.path.exists(path):
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload["version"] != VERSION or payload["resolution"] != resolution:
            raise ValueError(f"it holds version {payload['version']} at resolution {payload['resolution']}")
        net = _net()
        net.load_state_dict(payload["state"])
        return Classifier(net, float(payload["accuracy"]))
    except Exception as e:  # truncated, foreign or mismatched files raise many types: all mean retrain
        warnings.warn(f"digits classifier cache {path} is unusable ({type(e).__name__}: {e}); retraining it",
                      stacklevel=3)
        return None


def classifier(resolution: int) -> Classifier:
    """The digits classifier at ``resolution``: from the cache, or trained and cached."""
    path = cache_path(resolution)
    cached = _load_cached(path, resolution)
    if cached is not None:
        return cached
    # One line, because it takes seconds and writes outside the run's directory.
    print(f"fastgp: training the digits classifier at {resolution}x{resolution} once; it is cached in {path}",
          end="", file=sys.stderr, flush=True)
    started = time.perf_counter()
    trained = _train_classifier(resolution)
    print(f" ({time.perf_counter() - started:.1f} s, held-out accuracy {trained.accuracy:.3f})", file=sys.stderr,
          flush=True)
    payload = {"version": VERSION, "resolution": resolution, "state": trained.net.state_dict(),
               "accuracy": trained.accuracy}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_atomically(payload, path)
    except OSError as e:
        warnings.warn(f"cannot cache the digits classifier in {path} ({e}); set {CACHE_ENV} to a writable "
                      "directory to avoid retraining it", stacklevel=2)
    return trained


class Digits(ImageData):
    """The digits training set at ``resolution`` and the classifier-based metrics."""

    main_metric = "classes"

    def __init__(self, resolution: int, subset: int = 0):
        images, self.labels = load_digits(resolution)
        # The digits a limited-data run never trains on (None without data.subset): what a D's
        # outputs on its training reals are compared with (fastgp.repro's lecam experiment).
        self.held_out = None
        if subset:
            # A limited-data training set: a fixed subset (its own seed), the same for every run seed.
            if subset > images.shape[0]:
                raise ConfigError(f"data.subset: the digits have {images.shape[0]} images, got {subset}")
            keep = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(SUBSET_SEED))[:subset]
            keep = keep.sort().values
            unused = torch.ones(images.shape[0], dtype=torch.bool)
            unused[keep] = False
            self.held_out = images[unused]
            images, self.labels = images[keep], self.labels[keep]
        super().__init__(images)
        self.classifier = classifier(resolution)

    @torch.no_grad()
    def metrics(self, fake: torch.Tensor) -> dict:
        # A diverged G's NaN/inf pixels read as grey/white/black, so the record stays finite (JSON).
        fake = fake.detach().float().cpu().nan_to_num(0.0, 1.0, -1.0)
        return {**class_metrics(self.classifier.probabilities(fake)), "nn_dist": self.nn_dist(fake)}


def class_metrics(probs: torch.Tensor) -> dict:
    """``classes`` covered, ``kl`` from uniform and mean ``confidence`` of softmax rows [n, 10]."""
    n = probs.shape[0]
    counts = torch.bincount(probs.argmax(1), minlength=N_CLASSES).double()
    share = counts / n
    present = share > 0
    kl = float((share[present] * (share[present] * N_CLASSES).log()).sum())
    needed = max(1.0, n / (4 * N_CLASSES))
    return {
        "classes": int((counts >= needed).sum()),
        "kl": max(kl, 0.0),  # rounding can leave -1e-17 for a perfectly balanced batch
        "confidence": float(probs.max(1).values.mean()),
    }

