"""``photos``: a small natural-image set cut from scikit-learn's two bundled sample photographs.

The anomalous-generalization paper runs its natural-image sample correction on "a small portion of
the images" of CelebA / CIFAR-10 ("Dataset size is kept small (*e.g.* 32)", Sec. 5.3). Nothing is
downloaded here, so the natural images are the two colour photographs that ship inside
scikit-learn (``sklearn.datasets.load_sample_images``: ``china.jpg`` and ``flower.jpg``, 427×640
RGB, read with Pillow): each is cut into a centred grid of non-overlapping 96×96 tiles (4 rows × 6
columns, 48 tiles in all, photo by photo, row by row), each tile resized to ``data.resolution``
(bilinear, antialiased) and mapped from 0..255 to [-1, 1] as x/127.5 − 1: [N, 3, R, R].

Tiles do not overlap, so no training image contains another (overlapping crops would put
near-copies in the set and make the nearest-distance measure meaningless). ``data.subset`` N keeps
a fixed random subset of N tiles (its own seed, the same for every run seed); 0 keeps all 48.

Metrics: those of every image dataset (``ImageData``): ``nn_dist``, the paper's ``dif`` and the
share of the training images that some sample is nearest to, ``nn_coverage``.
"""

from __future__ import annotations

import numpy as np
import torch

from .images import ImageData
from .options import ConfigError
from .userdata import fit_square, to_unit_range

TILE = 96
N_TILES = 48  # 4 × 6 tiles of 96 px from each 427×640 photograph
SUBSET_SEED = 1  # data.subset: which tiles a run keeps


def require_sample_images():
    """``sklearn.datasets.load_sample_images``, or an ImportError that says how to install it."""
    try:
        from sklearn.datasets import load_sample_images
        import PIL  # noqa: F401  (scikit-learn reads the JPEG files with Pillow)
    except ImportError:
        raise ImportError(
            "the photos dataset needs scikit-learn (its bundled sample photographs) and Pillow: "
            "pip install 'fastgp[photos]'"
        ) from None
    return load_sample_images


def tiles() -> torch.Tensor:
    """The 48 tiles as uint8 [48, 3, 96, 96], photo by photo, row by row."""
    out = []
    for photo in require_sample_images()().images:  # [427, 640, 3] uint8 each
        H, W = photo.shape[:2]
        rows, cols = H // TILE, W // TILE
        top, left = (H - rows * TILE) // 2, (W - cols * TILE) // 2
        for r in range(rows):
            for c in range(cols):
                y, x = top + r * TILE, left + c * TILE
                out.append(photo[y:y + TILE, x:x + TILE])
    grid = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()
    if grid.shape[0] != N_TILES:  # another scikit-learn shipping other photographs
        raise ConfigError(f"data.name: scikit-learn's sample photographs gave {grid.shape[0]} tiles of {TILE} px, "
                          f"not the {N_TILES} this dataset is defined by")
    return grid


class Photos(ImageData):
    """The tiles at ``resolution``, all of them or a fixed subset of ``subset``."""

    def __init__(self, resolution: int, subset: int = 0):
        images = tiles()
        if subset:
            if subset > N_TILES:
                raise ConfigError(f"data.subset: the photos have {N_TILES} tiles, got {subset}")
            keep = torch.randperm(N_TILES, generator=torch.Generator().manual_seed(SUBSET_SEED))[:subset]
            images = images[keep.sort().values]
        super().__init__(fit_square(to_unit_range(images), resolution))
