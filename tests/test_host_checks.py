"""Bad arguments never reach a kernel: the public layer refuses them first.

On a GPU a condition a kernel asserts (``CUDA_KERNEL_ASSERT``) poisons the whole CUDA context when
it fails, so every later call in the process fails too. fastgp checks such conditions before any
launch: user errors in the public layer (fastgp/<family>.py, a ValueError naming the argument),
memory safety of the raw ops in their host functions (csrc/host/*.cpp), and no CUDA kernel
asserts. These tests run on CPU tensors with the backend's kernels replaced by a stub that fails
if it is called, so they show that the refusal happens before any kernel of any backend.
"""

import pathlib
import re

import pytest
import torch

import fastgp
from fastgp import augment, backend

ROOT = pathlib.Path(__file__).resolve().parents[1]


class _NoKernels:
    """Stands in for a backend's family module: calling any of its kernels fails the test."""

    def __getattr__(self, name):
        def kernel(*args, **kwargs):
            raise AssertionError(f"kernel {name} was reached with arguments the public layer must refuse")

        return kernel


@pytest.fixture
def no_kernels(monkeypatch):
    monkeypatch.setattr(backend, "kernels", lambda family, device: _NoKernels())


X = torch.zeros(2, 1, 8, 8)

# Every condition a CUDA kernel of main once asserted, reached through the public API.
REFUSED = [
    pytest.param(lambda: augment.translate(X, shifts=torch.full((2, 1, 2), 8), padding="reflect"), ValueError,
                 r"reflect padding needs \|dy\| < H = 8", id="reflect-shift-equal-to-size"),
    pytest.param(lambda: augment.translate(X, shifts=torch.tensor([[[0, -(2**63)]], [[0, 0]]]), padding="reflect"),
                 ValueError, r"reflect padding needs", id="reflect-shift-int64-min"),
    pytest.param(lambda: augment.translate(X.clone().requires_grad_(), shifts=torch.tensor([[[-9, 0]], [[0, 0]]]),
                                           padding="reflect"), ValueError, r"reflect padding needs", id="reflect-grad"),
    pytest.param(lambda: fastgp.combine.pixelwise(torch.zeros(4, 3), pairs=torch.tensor([[0, 4]])), ValueError,
                 r"indices in \[0, 4\), got 4", id="pair-index-too-large"),
    pytest.param(lambda: fastgp.combine.pixelwise(torch.zeros(4, 3), pairs=torch.tensor([[-1, 2]])), ValueError,
                 r"indices in \[0, 4\), got -1", id="pair-index-negative"),
]


@pytest.mark.parametrize("call,error,match", REFUSED)
def test_public_layer_refuses_before_any_kernel(no_kernels, call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_stub_would_catch_a_kernel_call(no_kernels):
    # The good call reaches the (stub) kernel: the refusals above happen in the public layer.
    with pytest.raises(AssertionError, match="kernel translate was reached"):
        augment.translate(X, shifts=torch.full((2, 1, 2), 7), padding="reflect")
    with pytest.raises(AssertionError, match="kernel pixelwise_combine was reached"):
        fastgp.combine.pixelwise(torch.zeros(4, 3), pairs=torch.tensor([[0, 3]]))


def test_no_cuda_kernel_asserts():
    """The conditions are checked on the host (csrc/host/augment.cpp check_reflect_range_on_device,
    csrc/host/combine.cpp check_pair_range_on_device): a kernel assert would poison the context."""
    asserts = [f"{path.relative_to(ROOT)}:{number}"
               for path in sorted((ROOT / "csrc").rglob("*.cu*"))
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.search(r"\bCUDA_KERNEL_ASSERT\b|\bassert\s*\(", line) and not line.lstrip().startswith("//")]
    assert asserts == []


@pytest.mark.parametrize("source,check", [
    ("csrc/host/augment.cpp", "check_reflect_range_on_device(op, shifts, g);\n  FASTGP_LAUNCH"),
    ("csrc/host/combine.cpp", "check_pair_range_on_device(\"pixelwise_combine\", pairs, x.size(0));\n  FASTGP_LAUNCH"),
], ids=["augment", "combine"])
def test_host_functions_check_before_every_cuda_launch(source, check):
    text = (ROOT / source).read_text()
    launches = text.count("FASTGP_LAUNCH(")
    assert launches >= 1 and text.count(check) == launches
