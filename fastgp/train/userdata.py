"""User data: ``data.name: folder`` (a directory of images) and ``data.name: array`` (a .npy/.npz).

Both become float32 images [N, C, R, R] in [-1, 1] held in memory (R = ``data.resolution``):

- ``folder``: every .png/.jpg/.jpeg/.bmp file under ``data.path`` (subdirectories included, in
  sorted path order), read with Pillow, rotated by its EXIF orientation, converted to
  ``data.channels`` (1: Pillow's "L" grayscale, 3: "RGB"; an alpha channel is dropped),
  centre-cropped to a square and resized to R×R (bilinear, antialiased when shrinking), then
  mapped from 0..255 to [-1, 1] as x/127.5 − 1.
- ``array``: ``data.path`` is a .npy file or a .npz archive (``data.key`` picks its array; by
  default the only, or the first, one). Layout [N, C, H, W] or [N, H, W, C] with C = 1 or 3 is
  detected from which axis has size 1 or 3 ([N, H, W] is one channel). uint8 arrays are mapped
  to [-1, 1] as x/127.5 − 1; float arrays must already lie in [-1, 1] (the tanh range of the
  generators) and are rejected otherwise, with their actual min and max; other dtypes are
  rejected. Images that are not R×R are centre-cropped and resized like folder images.

Anything wrong (missing path, empty folder, an unreadable image, a wrong rank or dtype, values
out of range, an unknown key) is a ConfigError naming the config key, raised while the dataset is
built — before training starts.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from .options import ConfigError
from .images import ImageData

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """0..255 values -> [-1, 1] float32."""
    return pixels.float() / 127.5 - 1


def fit_square(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop [N, C, H, W] to a square and resize it to resolution² (bilinear, antialiased)."""
    H, W = images.shape[-2:]
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    images = images[..., top:top + side, left:left + side]
    if side != resolution:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                               antialias=True)
    # Bilinear weights are a convex combination: the range stays [-1, 1] up to rounding.
    return images.clamp(-1, 1).contiguous()


# ----------------------------------------------------------------------------------------------
# folder
# ----------------------------------------------------------------------------------------------


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise ConfigError("data.name: 'folder' reads images with Pillow: pip install 'fastgp[train]'") from None
    return Image, ImageOps


def image_files(root: str) -> list[str]:
    if not os.path.exists(root):
        raise ConfigError(f"data.path: {root} does not exist (data.name 'folder' needs a directory of images)")
    if not os.path.isdir(root):
        raise ConfigError(f"data.path: {root} is not a directory (data.name 'folder' needs a directory of images)")
    files = sorted(
        os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not files:
        raise ConfigError(f"data.path: no {'/'.join(IMAGE_EXTENSIONS)} images in {root}")
    return files


def load_folder(root: str, channels: int, resolution: int) -> torch.Tensor:
    Image, ImageOps = _pillow()
    mode = {1: "L", 3: "RGB"}[channels]
    files = image_files(root)
    out = torch.empty(len(files), channels, resolution, resolution)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img).convert(mode)
                img = ImageOps.fit(img, (resolution, resolution), method=Image.Resampling.BILINEAR)
                pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        except (OSError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError is an OSError
            raise ConfigError(f"data.path: cannot read image {path}: {e}") from None
        out[i] = to_unit_range(pixels.reshape(resolution, resolution, channels).permute(2, 0, 1))
    return out


# ----------------------------------------------------------------------------------------------
# array
# ----------------------------------------------------------------------------------------------


def read_array(path: str, key: str) -> np.ndarray:
    """The array at ``path`` (.npy, or ``key`` of a .npz), loaded into memory."""
    lower = path.lower()
    if not lower.endswith((".npy", ".npz")):
        raise ConfigError(f"data.path: {path} must be a .npy or .npz file for data.name 'array'")
    if key and not lower.endswith(".npz"):
        raise ConfigError(f"data.key: selects an array of a .npz archive; {path} is a .npy file (drop data.key)")
    if not os.path.isfile(path):
        raise ConfigError(f"data.path: {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ConfigError(f"data.path: cannot read {path}: {e}") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:  # an NpzFile
        names = list(loaded.files)
        if not names:
            raise ConfigError(f"data.path: {path} holds no arrays")
        if key and key not in names:
            raise ConfigError(f"data.key: {key!r} is not in {path}; its arrays: {', '.join(names)}")
        try:
            return loaded[key or names[0]]
        except (OSError, ValueError, EOFError) as e:
            raise ConfigError(f"data.path: cannot read array {key or names[0]!r} of {path}: {e}") from None


def to_nchw(array: np.ndarray, where: str) -> np.ndarray:
    """[N, C, H, W] from [N, C, H, W], [N, H, W, C] (C = 1 or 3) or [N, H, W]."""
    if array.ndim == 3:
        return array[:, None]
    if array.ndim != 4:
        raise ConfigError(f"data.path: {where} has shape {list(array.shape)}; expected images [N, C, H, W], "
                          "[N, H, W, C] (C = 1 or 3) or [N, H, W]")
    first, last = array.shape[1] in (1, 3), array.shape[3] in (1, 3)
    if first and not last:
        return array
    if last and not first:
        return array.transpose(0, 3, 1, 2)
    reason = "is ambiguous (both could be the channel axis)" if first else "has no channel axis of size 1 or 3"
    raise ConfigError(f"data.path: {where} with shape {list(array.shape)} {reason}; "
                      "store it as [N, C, H, W] or [N, H, W, C] with C = 1 or 3")


def load_array(path: str, key: str, resolution: int) -> torch.Tensor:
    array = read_array(path, key)
    where = f"{path}" + (f"[{key!r}]" if key else "")
    array = to_nchw(array, where)
    if array.shape[0] == 0:
        raise ConfigError(f"data.path: {where} holds no images (shape {list(array.shape)})")
    if array.dtype == np.uint8:
        images = to_unit_range(torch.from_numpy(np.ascontiguousarray(array)))
    elif np.issubdtype(array.dtype, np.floating):
        lo, hi = float(array.min()), float(array.max())
        if not (-1.0 <= lo and hi <= 1.0):  # also false for NaN
            raise ConfigError(f"data.path: float images must lie in [-1, 1] (the generator's tanh range); {where} "
                              f"has min {lo:g} and max {hi:g} (store uint8 0..255, or rescale, e.g. x/127.5 - 1)")
        images = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    else:
        raise ConfigError(f"data.path: {where} has dtype {array.dtype}; expected uint8 (0..255) or float in [-1, 1]")
    return fit_square(images, resolution)


class UserImages(ImageData):
    """A folder or array of the user's images; metrics: the memorization check ``nn_dist``, ``dif`` and
    ``nn_coverage`` (``ImageData``)."""

    def __init__(self, name: str, path: str, key: str, channels: int, resolution: int):
        # data.path being set at all is checked with the config (config._check_cross).
        if name == "folder":
            images = load_folder(path, channels, resolution)
        else:
            images = load_array(path, key, resolution)
        super().__init__(images)
