"""Every ```python block of README.md runs as written.

The blocks are found by scanning the README (not by position or by a list kept here), so a block
that is added or edited later is tested too. Each block runs in a fresh namespace that holds the
stand-ins of ``PRELUDE`` — the objects a README snippet assumes from the user's training loop (D,
G, real, fake, an optimizer, ...) — and nothing of the block itself is rewritten: it is compiled
with its README line numbers, so a failure points at README.md's line. A block that uses a name
the prelude lacks fails with a NameError: add the stand-in to PRELUDE (with a comment).

The stand-ins live on the CPU; a snippet that chooses its device from its data (the AMP one:
``real.device.type``) therefore runs its CPU form here and its CUDA form on a GPU.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

import fastgp  # noqa: F401  (imported here: its one-time warning when the extension is not built is not a block's)

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")

PRELUDE = """
import torch
from torch import nn
import fastgp

torch.manual_seed(0)
B, nz = 4, 8                                    # batch size and noise dimension
C, H, W = 3, 8, 8                               # small images keep every block fast
G = nn.Sequential(nn.Linear(nz, C * H * W), nn.Tanh(), nn.Unflatten(1, (C, H, W)))
D = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))  # logits [N, 1]
d_opt = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.99))
z = torch.randn(B, nz)                          # a batch of noise
z_set = torch.randn(6, nz)                      # fixed noise for loss_lipschitz
z_extra = torch.randn(2 * B, nz)                # noise of the replacement pool of sample correction
real = torch.rand(B, C, H, W) * 2 - 1           # a real batch in G's tanh range
fake = G(z)
x = real.clone()                                # the batch an augmentation snippet transforms
img, mask = real.clone(), (real > 0).float()    # an image and its paired mask
real_bank = torch.rand(32, C, H, W) * 2 - 1     # the training images sample correction compares to
gen = torch.Generator().manual_seed(0)
step, gamma = 0, 10.0                           # the training step and R1's gamma
loader = [torch.rand(64, C, H, W) * 2 - 1]      # one batch of 64, as the FAR snippet's comment says
"""


def python_blocks(text: str) -> list[tuple[int, str, str]]:
    """(first code line number, nearest heading above, code) of every ```python / ```py block."""
    blocks, heading, code, start = [], "", None, 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if code is None:
            if stripped.startswith("#") and not stripped.startswith("#!"):
                heading = stripped.lstrip("#").strip()
            elif re.fullmatch(r"```\s*(python|py)\s*", stripped):
                code, start = [], number + 1
        elif stripped.startswith("```"):
            blocks.append((start, heading, "\n".join(code) + "\n"))
            code = None
        else:
            code.append(line)
    assert code is None, f"README.md: the ```python block at line {start} is not closed"
    return blocks


with open(README, encoding="utf-8") as f:
    BLOCKS = python_blocks(f.read())


def _id(block) -> str:
    start, heading, _ = block
    return f"L{start}-" + re.sub(r"[^A-Za-z0-9]+", "-", heading).strip("-")[:40]


def test_the_readme_has_python_blocks():
    # Guards the scanner itself: the README's examples (WGAN-GP swap, lazy R1 and AMP, losses,
    # diagnostics, spectral norm, augmentation, FAR, combinations, correction) are all found.
    assert len(BLOCKS) >= 9
    assert any("spectral_norm(" in code for _, _, code in BLOCKS)
    assert any("torch.autocast" in code for _, _, code in BLOCKS)


def test_scanner_finds_blocks_and_their_line_numbers():
    text = "# Title\n\n```bash\nls\n```\n\n## Part\n```python\na = 1\n\nb = a\n```\n```py\nc = 2\n```\n"
    assert python_blocks(text) == [(9, "Part", "a = 1\n\nb = a\n"), (14, "Part", "c = 2\n")]


# A warning is an error: the CUDA-only AMP snippet "ran" on the CPU with autocast and the scaler
# disabled, saying so only in a warning. Except one that Dynamo itself means to hide (it probes
# `.grad` of the non-leaf tensors a graph break hands to the next frame: the compiled D step).
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")
# torch 2.11's own modules warn about their use of torch.jit when torch.compile first imports them
# (torch.utils.mkldnn): torch's internals, nothing a README block can act on.
@pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script(_method)?` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("error")  # the mark above takes precedence over this one
@pytest.mark.parametrize("block", BLOCKS, ids=[_id(b) for b in BLOCKS])
def test_readme_block_runs(block):
    start, _, code = block
    namespace: dict = {}
    exec(compile(PRELUDE, "<test_readme prelude>", "exec"), namespace)
    given = dict(namespace)
    # Padding with blank lines gives the block its README line numbers in tracebacks.
    exec(compile("\n" * (start - 1) + code, README, "exec"), namespace)
    # Whatever tensors the block computed (new or rebound names) are finite: a snippet that runs
    # but shows NaN is not an example that works.
    for name, value in namespace.items():
        if isinstance(value, torch.Tensor) and value is not given.get(name) and value.is_floating_point():
            assert torch.isfinite(value).all(), f"README.md line {start}: {name} is not finite"
