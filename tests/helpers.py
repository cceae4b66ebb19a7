"""Shared test helpers: input layouts and the device x backend parametrization.

Fixtures (registered in conftest.py):

``backend_name``    the backend forced for the test (``fastgp.use_backend``), one case per device
                    and backend: ``cpu-extension``, ``cpu-reference`` always; ``cuda-extension``,
                    ``cuda-triton``, ``cuda-reference`` marked ``cuda`` (``pytest -m cuda``),
                    skipped with a reason where no GPU is visible;
``device``          the device of that case (``"cpu"`` or ``"cuda"``): create every tensor on it;
``on_device``       ``device``, also made torch's default device for the whole test (modules and
                    factory calls without ``device=`` land on it; draws from a CPU generator
                    must be made with ``device="cpu"`` and moved, as ``make`` does);
``kernel_backend``  the same cases without the reference (``cpu-extension``, ``cuda-extension``,
                    ``cuda-triton``), for tests that compare a backend against the reference: the
                    reference itself is checked against an independent oracle instead.

Triton runs on CPU tensors only under its interpreter, in its own process (tests/triton_kernels/).
"""

from __future__ import annotations

import gc
import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp

BACKENDS_BY_DEVICE = {"cpu": ("extension", "reference"), "cuda": ("extension", "triton", "reference")}
CPU_BACKENDS = BACKENDS_BY_DEVICE["cpu"]
NO_GPU = "no CUDA device visible: the cuda cases run on a GPU machine (pytest -m cuda)"
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
LAYOUTS = ("contiguous", "channels_last", "strided")


def make(shape, dtype=torch.float32, layout="contiguous", seed=0, scale=1.0, device="cpu") -> torch.Tensor:
    """A random tensor of ``shape`` in the given memory layout, on ``device``.

    ``strided`` is a non-contiguous view (every other element of a wider last dimension);
    ``channels_last`` needs rank 4. The values are drawn on the CPU, so every device gets the same.
    """
    gen = torch.Generator().manual_seed(seed)
    if layout == "strided":
        wide = torch.randn(*shape[:-1], 2 * shape[-1], generator=gen, dtype=torch.float64, device="cpu") * scale
        out = wide.to(dtype).to(device)[..., ::2]
        assert out.numel() <= 1 or not out.is_contiguous()
        return out
    out = (torch.randn(*shape, generator=gen, dtype=torch.float64, device="cpu") * scale).to(dtype).to(device)
    if layout == "channels_last":
        out = out.to(memory_format=torch.channels_last)
    return out


def rng_states(device) -> torch.Tensor:
    """The CPU default generator's state, followed by ``device``'s default generator's state for a
    CUDA device: one tensor to compare with ``torch.equal`` (on a CUDA case this checks both that
    the device's generator is consumed as expected and that the CPU generator is left alone)."""
    states = [torch.get_rng_state()]
    if torch.device(device).type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return torch.cat(states)


def shapes_for(layout):
    """Shapes covering rank 2, 3 and 4, a single sample and single-element rows."""
    if layout == "channels_last":
        return [(4, 3, 5, 7), (1, 2, 3, 3), (3, 5, 1, 1)]
    return [(5, 37), (3, 4, 9), (4, 3, 5, 7), (1, 1), (2, 1)]


def tolerances(dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-12)
    if dtype == torch.float32:
        return dict(rtol=1e-5, atol=1e-6)
    if dtype == torch.float16:
        return dict(rtol=2e-3, atol=1e-3)
    return dict(rtol=1.6e-2, atol=1e-2)


def _translate_source(i, d, n, padding):
    """The source index of output index i under shift d, or None outside the image (zeros)."""
    s = i - d
    if 0 <= s < n:
        return s
    if padding == "zeros":
        return None
    if padding == "replicate":
        return min(max(s, 0), n - 1)
    return -s if s < 0 else 2 * (n - 1) - s  # reflect (|d| < n)


def translate_oracle(x, shifts, boxes=None, padding="zeros"):
    """translate by its definition, one output pixel at a time, in float64 on the CPU:
    out[b·K + k, :, i, j] = x[b, :, i − dy, j − dx] inside the image, the padding outside, then the
    box of (b, k) zeroed (an oracle independent of every backend, the reference included)."""
    x = x.double().cpu()
    shifts = shifts.cpu()
    boxes = None if boxes is None else boxes.cpu()
    batch, channels, height, width = x.shape
    copies = shifts.shape[1]
    out = torch.zeros(batch * copies, channels, height, width, dtype=torch.float64)
    for b in range(batch):
        for k in range(copies):
            dy, dx = shifts[b, k].tolist()
            for i in range(height):
                for j in range(width):
                    si, sj = _translate_source(i, dy, height, padding), _translate_source(j, dx, width, padding)
                    if si is not None and sj is not None:
                        out[b * copies + k, :, i, j] = x[b, :, si, sj]
            if boxes is not None:
                top, left, box_h, box_w = boxes[b, k].tolist()
                out[b * copies + k, :, max(top, 0):max(top + box_h, 0), max(left, 0):max(left + box_w, 0)] = 0
    return out


def assert_nearest(samples, bank, d2, index, rtol, atol) -> None:
    """The nearest-distance contract, on any BLAS: ``d2`` is the least squared distance from each
    sample to a bank row, and the row at ``index`` lies at distance ``d2``, both up to rounding
    (distances from exact float64 differences, not from the |a|² + |b|² − 2a·b expansion). Which of
    two rows within rounding of each other is returned is not part of the contract."""
    a = samples.detach().double().cpu().flatten(1)
    b = bank.detach().double().cpu().flatten(1)
    exact = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    got = d2.double().cpu()
    torch.testing.assert_close(got, exact.min(1).values, rtol=rtol, atol=atol)
    torch.testing.assert_close(exact.gather(1, index.cpu()[:, None])[:, 0], got, rtol=rtol, atol=atol)


def _cuda_marks() -> list:
    return [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_GPU)]


def backend_cases(with_reference: bool = True) -> list:
    """pytest params (device, backend) with ids like ``cuda-triton``; CUDA ones marked ``cuda``
    and skipped with a reason where no GPU is visible (on a GPU machine they run, and a backend
    that cannot run there fails loudly rather than skips)."""
    cases = []
    for device, names in BACKENDS_BY_DEVICE.items():
        marks = _cuda_marks() if device == "cuda" else []
        for name in names:
            if with_reference or name != "reference":
                cases.append(pytest.param((device, name), id=f"{device}-{name}", marks=marks))
    return cases


def devices() -> list:
    """pytest params of the devices alone (for tests of the compiled ops: opcheck, torch.compile)."""
    return ["cpu", pytest.param("cuda", marks=_cuda_marks())]


def parametrize_backends(metafunc) -> None:
    """pytest_generate_tests: the backend cases of a test asking for one of the fixtures below."""
    names = set(metafunc.fixturenames)
    if "backend_case" not in names:
        return
    metafunc.parametrize("backend_case", backend_cases(with_reference="kernel_backend" not in names), indirect=True)


@pytest.fixture
def backend_case(request):
    """(device, backend) of this case (parametrized by ``parametrize_backends``)."""
    return request.param


@pytest.fixture
def backend_name(backend_case):
    """The backend of this case, forced for the whole test (a missing backend fails loudly)."""
    import fastgp

    with fastgp.use_backend(backend_case[1]):
        yield backend_case[1]


@pytest.fixture
def kernel_backend(backend_name):
    """``backend_name`` without the reference cases."""
    return backend_name


@pytest.fixture
def device(backend_case, backend_name):
    """The device of this case; asking for it forces the case's backend too."""
    return backend_case[0]


@pytest.fixture
def on_device(device):
    """``device``, and torch's default device inside the test."""
    with torch.device(device):
        yield device


# ----------------------------------------------------------------------------------------------
# Several processes joined in one gloo group (the torch.distributed tests)
# ----------------------------------------------------------------------------------------------


def _gloo_rank(rank, fn, world, init_file, out_dir, args):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = fn(rank, *args)
        # As fastgp.train.distributed.teardown: what fn dropped (DDP reducers) is freed and every
        # rank's collectives are done before the group goes; a gloo thread racing the group's
        # destructor aborts the process at exit ("terminate called without an active exception").
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"{rank}.pt"))


def run_gloo_ranks(fn, world: int = 2, args: tuple = ()) -> list:
    """``fn(rank, *args)`` in ``world`` spawned processes joined in one gloo process group (a file
    rendezvous); returns what each rank returned (tensors, numbers, strings), by rank. ``fn`` must
    be a module-level function (it is pickled into the new processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_gloo_rank, args=(fn, world, os.path.join(tmp, "init"), tmp, args), nprocs=world, join=True)
        return [torch.load(os.path.join(tmp, f"{rank}.pt")) for rank in range(world)]


def train_killed_at(step: int, argv: list) -> None:
    """Run the trainer's command line with ``argv`` until it reaches G step ``step``, then stop it
    as a kill would (a KeyboardInterrupt out of the loop: no final record, no final checkpoint)."""
    from fastgp.train import cli
    from fastgp.train.loop import Run

    real_step = Run.train_step

    def killed(self):
        if self.step == step:
            raise KeyboardInterrupt
        real_step(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Run, "train_step", killed)
        with pytest.raises(KeyboardInterrupt):
            cli.main(argv)


def quick_repro(name: str, tmp_path, capsys) -> dict:
    """Run ``python -m fastgp.repro NAME --quick --steps 2`` into ``tmp_path/NAME`` (its printed
    table swallowed) and return its results.json."""
    import json

    from fastgp.repro.__main__ import main

    out = tmp_path / name
    assert main([name, "--quick", "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    return json.loads((out / "results.json").read_text(encoding="utf-8"))
