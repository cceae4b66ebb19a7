"""Every ```python block of README.md runs as written (the scanner, the prelude of stand-ins and the
conventions are in tests/markdown_blocks.py; tests/test_docs.py runs the docs pages' blocks)."""

from __future__ import annotations

import os

import pytest

import fastgp  # noqa: F401  (imported here: its one-time warning when the extension is not built is not a block's)
from markdown_blocks import ROOT, block_id, block_marks, file_blocks, python_blocks, run_block

README = os.path.join(ROOT, "README.md")
BLOCKS = file_blocks(README)


def test_the_readme_has_python_blocks():
    # Guards the scanner itself: the README's 30-second tour (WGAN-GP swap, R1, spectral norm,
    # DiffAugment) is found. The longer examples live on the docs pages (tests/test_docs.py).
    codes = [code for _, _, _, code in BLOCKS]
    assert len(codes) >= 4
    assert any('kind="wgan-gp"' in code for code in codes)
    assert any('kind="r1"' in code for code in codes)
    assert any("spectral_norm(" in code for code in codes)
    assert any("DiffAugment(" in code for code in codes)


def test_scanner_finds_blocks_and_their_line_numbers():
    text = "# Title\n\n```bash\nls\n```\n\n## Part\n```python\na = 1\n\nb = a\n```\n```py\nc = 2\n```\n"
    assert python_blocks(text) == [(9, "Part", "a = 1\n\nb = a\n"), (14, "Part", "c = 2\n")]


@block_marks
@pytest.mark.parametrize("block", BLOCKS, ids=[block_id(b) for b in BLOCKS])
def test_readme_block_runs(block):
    path, start, _, code = block
    run_block(path, start, code)
