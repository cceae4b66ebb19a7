"""Image data of the reference trainer: the ``rectangles`` geometry dataset and its metrics, and
``ImageData``, the in-memory image set every image dataset (rectangles, digits, user data) builds on.

``rectangles`` (the anomalous-generalization paper's dataset): 32×32 single-channel images, each
holding exactly ``n_rect`` filled 8×8 squares that neither overlap nor touch (a gap of at least
one pixel, so each is its own 4-connected component), generated deterministically from the seed.
Pixels are −1 (background) or +1 (rectangle), the range of a tanh generator.

With ``data.siblings`` the images are made in sibling pairs from images of ``n_rect + 1`` squares
(``sibling_rectangles``, the paper's Appendix F construction), so that the AND and the OR of a pair
hold ``n_rect − 1`` and ``n_rect + 1`` squares: the paper's PCR negatives.

Metrics of a generated batch (thresholded at 0, counted by ``fastgp.correction.count_components``):
``correct``, the share of images with exactly ``n_rect`` 4-connected components (the paper's Fig. 1
measure), ``fewer`` / ``more`` the shares with fewer / more; ``nn_dist``, the mean L2 distance of a generated image to its
nearest training image (a memorization check: 0 means copies of training images), over the
first 256 samples.
"""

from __future__ import annotations

import torch

from ..correction import count_components, nearest_distance

SIZE, RECT = 32, 8
NN_SAMPLES = 256


def rectangles(n: int, n_rect: int, seed: int) -> torch.Tensor:
    """[n, 1, 32, 32] float images in {−1, 1}: n_rect separated 8×8 squares each, from ``seed``."""
    return _draw(_positions(n, n_rect, torch.Generator().manual_seed(seed)))


def sibling_rectangles(n: int, n_rect: int, seed: int) -> torch.Tensor:
    """[n, 1, 32, 32] images of n_rect separated 8×8 squares made in sibling pairs, the paper's
    construction (Appendix F): n/2 images of n_rect + 1 separated squares are drawn, and from each
    two different squares are removed in turn, giving images 2k and 2k+1. The pair shares n_rect − 1
    squares: its pixel-wise AND holds those (1 square for n_rect = 2), its OR the n_rect + 1 squares
    of the image it came from (3). ``n`` must be even."""
    if n % 2:
        raise ValueError(f"data.n_images: sibling pairs need an even number of images, got {n}")
    g = torch.Generator().manual_seed(seed)
    pos = _positions(n // 2, n_rect + 1, g)  # [n/2, n_rect + 1, 2]
    k = n_rect + 1
    first = torch.randint(0, k, (n // 2,), generator=g)
    second = (first + 1 + torch.randint(0, k - 1, (n // 2,), generator=g)) % k  # another square
    keep = torch.arange(k)[None, :]
    pairs = []
    for removed in (first, second):
        kept = keep != removed[:, None]  # [n/2, k], n_rect True per row
        pairs.append(pos[kept].reshape(n // 2, n_rect, 2))
    return _draw(torch.stack(pairs, 1).reshape(n, n_rect, 2))


def _positions(n: int, n_rect: int, g: torch.Generator) -> torch.Tensor:
    """[n, n_rect, 2] top-left corners of separated squares (rejection sampling per image)."""
    span = SIZE - RECT + 1
    pos = torch.randint(0, span, (n, n_rect, 2), generator=g)
    for _ in range(10_000):
        # Squares i and j are separated when their 1-pixel-dilated boxes are disjoint on an axis.
        d = (pos[:, :, None, :] - pos[:, None, :, :]).abs()  # [n, k, k, 2]
        clash = (d <= RECT).all(-1) & ~torch.eye(n_rect, dtype=torch.bool)
        bad = clash.any(-1).any(-1)
        if not bad.any():
            break
        pos[bad] = torch.randint(0, span, (int(bad.sum()), n_rect, 2), generator=g)
    else:
        raise ValueError(f"data.n_rect: cannot place {n_rect} separated 8×8 squares in a 32×32 image")
    return pos


def _draw(pos: torch.Tensor) -> torch.Tensor:
    """[n, 1, 32, 32] images in {−1, 1} with a filled 8×8 square at each corner of ``pos``."""
    rows = torch.arange(SIZE)
    y, x = pos[..., 0, None], pos[..., 1, None]  # [n, k, 1]
    in_y = (rows >= y) & (rows < y + RECT)  # [n, k, 32]
    in_x = (rows >= x) & (rows < x + RECT)
    mask = (in_y[..., :, None] & in_x[..., None, :]).any(1)  # [n, 32, 32]
    return (mask.float() * 2 - 1)[:, None]


class ImageData:
    """A training set of images [N, C, H, W] in [-1, 1] held in memory, sampled uniformly with
    replacement. Its metric, ``nn_dist``, is the memorization check every image dataset shares;
    user images and ``photos`` also get ``dif`` and ``nn_coverage`` (``nearest_metrics``)."""

    kind = "image"
    main_metric = "nn_dist"

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.shape = tuple(images.shape[1:])

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.images[torch.randint(0, self.images.shape[0], (n,), generator=generator)]

    def nn_dist(self, fake: torch.Tensor) -> float:
        """Mean L2 distance of the first NN_SAMPLES generated images to their nearest training image."""
        # The search costs n·N·C·H·W multiply-adds (256·25,600·1,024 for rectangles): 256 samples.
        nearest = torch.cdist(fake[:NN_SAMPLES].flatten(1), self.images.flatten(1)).min(1).values
        return float(nearest.mean())

    def nearest_metrics(self, fake: torch.Tensor) -> dict:
        """``dif``: the mean normalized distance of the first NN_SAMPLES generated images to their
        nearest training image, sqrt(d²/D)/2 in [0, 1] (the anomalous-generalization paper's DIF,
        Sec. 5.3, and the measure its sample correction thresholds: ``fastgp.correction``);
        ``nn_coverage``: the share of the training images that are the nearest one of at least one
        of those samples (1: every image has a sample near it; 1/N: all samples near one image)."""
        distance, index = nearest_distance(fake[:NN_SAMPLES], self.images, normalized=True)
        covered = torch.zeros(self.images.shape[0], dtype=torch.bool)
        covered[index] = True
        return {"dif": float(distance.mean()), "nn_coverage": float(covered.float().mean())}

    @torch.no_grad()
    def metrics(self, fake: torch.Tensor) -> dict:
        """``nn_dist``, ``dif`` and ``nn_coverage`` (``nearest_metrics``) of a generated batch. A
        diverged G's NaN/inf pixels read as grey/white/black, so the record stays finite (JSON)."""
        fake = fake.detach().float().cpu().nan_to_num(0.0, 1.0, -1.0)
        return {"nn_dist": self.nn_dist(fake), **self.nearest_metrics(fake)}


class Rectangles(ImageData):
    """The training set and the metrics of generated images. With ``siblings`` the images come in
    sibling pairs (``sibling_rectangles``: images 2k and 2k+1), whose AND / OR are the paper's
    precomputed PCR negatives (``sibling_pairs``)."""

    main_metric = "correct"

    def __init__(self, n_images: int, n_rect: int, seed: int, siblings: bool = False):
        self.n_rect, self.siblings = n_rect, siblings
        make = sibling_rectangles if siblings else rectangles
        super().__init__(make(n_images, n_rect, seed))

    def sibling_pairs(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(images [2n, 1, 32, 32], pairs [n, 2]): n sibling pairs drawn uniformly with replacement,
        row pairs[p] = (2p, 2p + 1) of the images (the layout ``fastgp.combine.pixelwise`` takes)."""
        if not self.siblings:
            raise ValueError("data.siblings: this rectangles set was not made in sibling pairs")
        k = torch.randint(0, self.images.shape[0] // 2, (n,), generator=generator)
        rows = torch.stack([2 * k, 2 * k + 1], 1).flatten()
        return self.images[rows], torch.arange(2 * n).reshape(n, 2)

    @torch.no_grad()
    def metrics(self, fake: torch.Tensor) -> dict:
        """``correct`` (exactly n_rect components), ``fewer`` and ``more`` (shares with fewer / more
        components: where the AND and the OR of two training images land), ``nn_dist``."""
        fake = fake.detach().float().cpu()
        counts = count_components(fake)
        return {"correct": float((counts == self.n_rect).float().mean()),
                "fewer": float((counts < self.n_rect).float().mean()),
                "more": float((counts > self.n_rect).float().mean()), "nn_dist": self.nn_dist(fake)}
