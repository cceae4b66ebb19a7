"""Image data of the reference trainer: the ``rectangles`` geometry dataset and its metrics, and
``ImageData``, the in-memory image set every image dataset (rectangles, digits, user data) builds on.

``rectangles`` (the anomalous-generalization paper's dataset): 32×32 single-channel images, each
holding exactly ``n_rect`` filled 8×8 squares that neither overlap nor touch (a gap of at least
one pixel, so each is its own 4-connected component), generated deterministically from the seed.
Pixels are −1 (background) or +1 (rectangle), the range of a tanh generator.

Metrics of a generated batch (thresholded at 0): ``correct``, the share of images with exactly
``n_rect`` connected components; ``nn_dist``, the mean L2 distance of a generated image to its
nearest training image (a memorization check: 0 means copies of training images), over the
first 256 samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIZE, RECT = 32, 8
NN_SAMPLES = 256


def rectangles(n: int, n_rect: int, seed: int) -> torch.Tensor:
    """[n, 1, 32, 32] float images in {−1, 1}: n_rect separated 8×8 squares each, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
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
    rows = torch.arange(SIZE)
    y, x = pos[..., 0, None], pos[..., 1, None]  # [n, k, 1]
    in_y = (rows >= y) & (rows < y + RECT)  # [n, k, 32]
    in_x = (rows >= x) & (rows < x + RECT)
    mask = (in_y[..., :, None] & in_x[..., None, :]).any(1)  # [n, 32, 32]
    return (mask.float() * 2 - 1)[:, None]


def count_components(images: torch.Tensor) -> torch.Tensor:
    """Number of 4-connected components of pixels > 0, per image of [B, 1, H, W]."""
    on = images[:, 0] > 0
    B, H, W = on.shape
    labels = torch.where(on, torch.arange(1, H * W + 1, dtype=torch.float32).reshape(1, H, W), 0.0)
    cross = torch.tensor([[0.0, 1, 0], [1, 1, 1], [0, 1, 0]]).bool()
    while True:
        # Propagate the largest label over 4-neighbours, within the foreground.
        padded = F.pad(labels[:, None], (1, 1, 1, 1))
        patches = F.unfold(padded, 3)[:, cross.flatten()]  # [B, 5, H*W]
        new = torch.where(on, patches.max(1).values.reshape(B, H, W), 0.0)
        if torch.equal(new, labels):
            break
        labels = new
    # A component keeps the label of its largest pixel index: count pixels holding their own index.
    own = torch.arange(1, H * W + 1, dtype=torch.float32).reshape(1, H, W)
    return ((labels == own) & on).flatten(1).sum(1)


class ImageData:
    """A training set of images [N, C, H, W] in [-1, 1] held in memory, sampled uniformly with
    replacement. Its metric, ``nn_dist``, is the memorization check every image dataset shares."""

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

    @torch.no_grad()
    def metrics(self, fake: torch.Tensor) -> dict:
        return {"nn_dist": self.nn_dist(fake.detach().float().cpu())}


class Rectangles(ImageData):
    """The training set and the metrics of generated images."""

    main_metric = "correct"

    def __init__(self, n_images: int, n_rect: int, seed: int):
        self.n_rect = n_rect
        super().__init__(rectangles(n_images, n_rect, seed))

    @torch.no_grad()
    def metrics(self, fake: torch.Tensor) -> dict:
        fake = fake.detach().float().cpu()
        correct = (count_components(fake) == self.n_rect).float().mean()
        return {"correct": float(correct), "nn_dist": self.nn_dist(fake)}
