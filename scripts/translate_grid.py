"""Draw docs/translate_grid.png: one image and its translated copies, one row per padding mode.

    python scripts/translate_grid.py [--out docs/translate_grid.png]

Column 0 is the original (``include_original=True``); the other columns are random translations
with shifts up to ±12 pixels on a 48×48 image. Every row replays the same shifts (``shifts=``), so
the rows differ only in the padding: zeros, reflect, replicate. The PNG is written with torch and
the standard library (zlib) only; the test image is synthetic, so the script needs no data.
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import torch

import fastgp

SIZE, COPIES, MAX_SHIFT, SCALE, GAP = 48, 8, 12, 3, 4


def test_image(size: int = SIZE) -> torch.Tensor:
    """[1, 3, size, size] in [0, 1]: a colour gradient, a disc, a bar and a corner marker."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([0.25 + 0.5 * x, 0.3 + 0.4 * y, 0.8 - 0.5 * x * y])
    disc = ((x - 0.62) ** 2 + (y - 0.4) ** 2) < 0.04
    img[:, disc] = torch.tensor([0.95, 0.75, 0.1]).view(3, 1)
    bar = (x > 0.15) & (x < 0.3) & (y > 0.3) & (y < 0.85)
    img[:, bar] = torch.tensor([0.7, 0.1, 0.2]).view(3, 1)
    corner = (x < 0.15) & (y < 0.15)
    img[:, corner] = torch.tensor([0.1, 0.1, 0.1]).view(3, 1)
    return img.unsqueeze(0)


def grid(rows: list[torch.Tensor]) -> torch.Tensor:
    """Tiles [K, 3, H, W] rows into one [3, h, w] picture on a white background, upscaled SCALE×."""
    k, _, h, w = rows[0].shape
    height = len(rows) * (h * SCALE + GAP) + GAP
    width = k * (w * SCALE + GAP) + GAP
    canvas = torch.ones(3, height, width)
    for r, row in enumerate(rows):
        big = row.repeat_interleave(SCALE, dim=2).repeat_interleave(SCALE, dim=3)
        for c in range(k):
            top, left = GAP + r * (h * SCALE + GAP), GAP + c * (w * SCALE + GAP)
            canvas[:, top : top + h * SCALE, left : left + w * SCALE] = big[c]
    return canvas


def write_png(path: Path, image: torch.Tensor) -> None:
    """An 8-bit RGB PNG from a [3, H, W] tensor in [0, 1]."""
    pixels = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous()
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[i].numpy().tobytes() for i in range(height))  # filter 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "translate_grid.png")
    args = parser.parse_args()
    x = test_image()
    generator = torch.Generator().manual_seed(4)
    _, shifts = fastgp.augment.translate(
        x, copies=COPIES, max_shift=MAX_SHIFT, include_original=True, generator=generator, return_shifts=True
    )
    rows = [fastgp.augment.translate(x, shifts=shifts, padding=p) for p in ("zeros", "reflect", "replicate")]
    write_png(args.out, grid(rows))
    labels = ", ".join(f"({dy:+d}, {dx:+d})" for dy, dx in shifts[0].tolist())
    print(f"wrote {args.out}; shifts (dy, dx) per column: {labels}")


if __name__ == "__main__":
    main()
