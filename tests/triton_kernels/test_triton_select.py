"""Triton kernels of the select family (fastgp.triton.select) against the C++ op and the reference.

Run in its own process: ``TRITON_INTERPRET=1 python -m pytest tests/triton_kernels``. Selection and gather
are exact (integer ranks and copies), so everything is compared bit for bit.
"""

import os

import pytest
import torch

import fastgp
from fastgp.reference import select as ref
from fastgp.triton import select as ts

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cpu" if INTERPRETED else "cuda"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def logits_with_ties(m, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randint(-4, 5, (m,), generator=gen).to(torch.float64) / 2
    values[1] = values[m // 2] = float("nan")
    values[2], values[3], values[4], values[5] = float("-inf"), float("inf"), -0.0, 0.0
    return values.to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [7, 64, 130])  # 130 > _BLOCK_I and _BLOCK_J: several tiles, masked tails
def test_far_select_exact(dtype, m):
    candidates = torch.randn(m, 3, 5, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    logits = logits_with_ties(m, dtype)
    for k in (1, 5, m):
        selected, indices = ts.far_select(logits, candidates, k)
        expected, expected_indices = ref.far_select(logits, candidates, k)
        assert torch.equal(indices, expected_indices)
        assert torch.equal(selected, expected)
        if INTERPRETED:  # the C++ op runs on the same CPU tensors
            got, got_indices = torch.ops.fastgp.far_select(logits, candidates, k)
            assert torch.equal(got_indices, indices) and torch.equal(got, selected)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_far_batch_exact(layout):
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    candidates = torch.randn(20, 3, 5, 7).to(DEVICE).contiguous(memory_format=fmt)
    real = torch.randn(6, 3, 5, 7).to(DEVICE).contiguous(memory_format=fmt)
    logits = torch.randn(20).to(DEVICE)
    batch, indices = ts.far_batch(real, logits, candidates, 4)
    expected, expected_indices = ref.far_batch(real, logits, candidates, 4)
    assert torch.equal(indices, expected_indices) and torch.equal(batch, expected)
    assert batch.is_contiguous(memory_format=fmt)
    # R = 0 and a column count above the tile (1024).
    wide = torch.randn(5, 1500).to(DEVICE)
    wide_logits = torch.randn(5).to(DEVICE)
    batch, _ = ts.far_batch(wide[:0], wide_logits, wide, 2)
    assert torch.equal(batch, ref.far_select(wide_logits, wide, 2)[0])


def test_large_candidate_count_uses_stable_sort(monkeypatch):
    monkeypatch.setattr(ts, "_MAX_RANK_CANDIDATES", 8)
    logits = logits_with_ties(30, torch.float32)
    candidates = torch.randn(30, 4).to(DEVICE)
    selected, indices = ts.far_select(logits, candidates, 10)
    expected, expected_indices = ref.far_select(logits, candidates, 10)
    assert torch.equal(indices, expected_indices) and torch.equal(selected, expected)


def test_public_api_on_triton_backend_gradients():
    candidates = torch.randn(9, 2, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    logits = torch.randn(9, dtype=torch.float64, device=DEVICE)
    with fastgp.use_backend("triton"):
        fn = lambda c: fastgp.select.far_select(logits, c, 3, detach=False)[0]  # noqa: E731
        assert torch.autograd.gradcheck(fn, (candidates,), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (candidates,), fast_mode=True)


@pytest.mark.triton_compile_early
def test_registered_as_custom_ops():
    if not hasattr(torch.library, "triton_op"):
        pytest.skip("torch.library.triton_op needs torch >= 2.6")
    candidates = torch.randn(9, 2, 3, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    logits = logits_with_ties(9, torch.float32)
    real = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    for got, expected in zip(torch.ops.fastgp_triton.far_batch(real, logits, candidates, 3), ref.far_batch(real, logits, candidates, 3)):
        assert torch.equal(got, expected)
    for got, expected in zip(torch.ops.fastgp_triton.far_select(logits, candidates, 2), ref.far_select(logits, candidates, 2)):
        assert torch.equal(got, expected)


@pytest.mark.triton_compile_early
@pytest.mark.skipif(INTERPRETED, reason="fake tensors cannot run interpreted kernels; needs a GPU")
def test_opcheck_and_compile_on_gpu():
    candidates = torch.randn(40, 3, 4, 4, device=DEVICE)
    logits, real = torch.randn(40, device=DEVICE), torch.randn(5, 3, 4, 4, device=DEVICE)
    torch.library.opcheck(torch.ops.fastgp_triton.far_select.default, (logits, candidates, 6))
    torch.library.opcheck(torch.ops.fastgp_triton.far_batch.default, (real, logits, candidates, 6))
    compiled = torch.compile(lambda r, l, c: torch.ops.fastgp_triton.far_batch(r, l, c, 6)[0], fullgraph=True)
    assert torch.equal(compiled(real, logits, candidates), ref.far_batch(real, logits, candidates, 6)[0])
