"""The ```python blocks of README.md and of the docs pages (docs/**/*.md), and how a test runs one.

The blocks are found by scanning the files (not by position or by a list kept here), so a block
that is added or edited later is tested too. Each block runs in a fresh namespace that holds the
stand-ins of ``PRELUDE`` — the objects a snippet assumes from the user's training loop (D, G, real,
fake, an optimizer, ...) — and nothing of the block itself is rewritten: it is compiled with its
file's line numbers, so a failure points at the file's line. A block that uses a name the prelude
lacks fails with a NameError: add the stand-in to PRELUDE (with a comment).

Every ```python / ```py block runs; an example that must not run (it needs a GPU, a dataset, a
long run) is written in another fence (```text, or ```bash for a command), never as ```python.

The stand-ins live on the CPU; a snippet that chooses its device from its data (the AMP one:
``real.device.type``) therefore runs its CPU form here and its CUDA form on a GPU.
"""

from __future__ import annotations

import os
import re

import pytest
import torch

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))

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
loss = torch.zeros(())                          # the D loss a snippet adds a penalty to (docs/r3gan.md)
"""


def python_blocks(text: str, name: str = "README.md") -> list[tuple[int, str, str]]:
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
    assert code is None, f"{name}: the ```python block at line {start} is not closed"
    return blocks


def file_blocks(path: str) -> list[tuple[str, int, str, str]]:
    """(path, line, heading, code) of every python block of the file at ``path``."""
    with open(path, encoding="utf-8") as f:
        return [(path, *block) for block in python_blocks(f.read(), os.path.relpath(path, ROOT))]


def block_id(block) -> str:
    path, start, heading, _ = block
    page = os.path.splitext(os.path.relpath(path, ROOT))[0]
    return f"{page}-L{start}-" + re.sub(r"[^A-Za-z0-9]+", "-", heading).strip("-")[:40]


def block_marks(test):
    """The warning filters every block test runs under (a warning is an error)."""
    # A warning is an error: the CUDA-only AMP snippet "ran" on the CPU with autocast and the scaler
    # disabled, saying so only in a warning. Except one that Dynamo itself means to hide (it probes
    # `.grad` of the non-leaf tensors a graph break hands to the next frame: the compiled D step).
    # torch 2.11's own modules warn about their use of torch.jit when torch.compile first imports
    # them (torch.utils.mkldnn): torch's internals, nothing a block can act on.
    # The "error" mark is applied last, so the two "ignore" marks take precedence over it.
    test = pytest.mark.filterwarnings("error")(test)
    test = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.script(_method)?` is deprecated:DeprecationWarning")(test)
    return pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf Tensor:UserWarning")(test)


def run_block(path: str, start: int, code: str) -> None:
    """Run one block after the prelude; fail if a tensor it computed is not finite."""
    namespace: dict = {}
    exec(compile(PRELUDE, "<markdown_blocks prelude>", "exec"), namespace)
    given = dict(namespace)
    # Padding with blank lines gives the block its file's line numbers in tracebacks.
    exec(compile("\n" * (start - 1) + code, path, "exec"), namespace)
    # Whatever tensors the block computed (new or rebound names) are finite: a snippet that runs
    # but shows NaN is not an example that works.
    for name, value in namespace.items():
        if isinstance(value, torch.Tensor) and value is not given.get(name) and value.is_floating_point():
            assert torch.isfinite(value).all(), f"{os.path.relpath(path, ROOT)} line {start}: {name} is not finite"
