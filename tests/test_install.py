"""What the build builds (setup.py) and what ``fastgp info`` says about it."""

import importlib.util
from pathlib import Path

import pytest
import torch

import fastgp
from fastgp import backend

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def setup_py(monkeypatch):
    """setup.py as a module (its ``main()`` runs only as a script)."""
    spec = importlib.util.spec_from_file_location("fastgp_setup", REPO / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch_list", [None, ""])
def test_build_without_gpu_is_cpu_only_unless_asked(setup_py, monkeypatch, arch_list):
    monkeypatch.delenv("FASTGP_BUILD_CUDA", raising=False)
    if arch_list is None:
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    else:
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", arch_list)
    monkeypatch.setattr(setup_py, "visible_gpu_archs", lambda: [])
    root, reason = setup_py.configure_cuda()
    assert root is None and reason == "no GPU visible"
    hint = setup_py.how_to_get_cuda(reason)
    assert "FASTGP_BUILD_CUDA=1" in hint and "TORCH_CUDA_ARCH_LIST" in hint


@pytest.mark.skipif(torch.version.cuda is None, reason="needs a CUDA build of torch")
def test_arch_list_asks_for_cuda_kernels_without_gpu(setup_py, monkeypatch):
    monkeypatch.delenv("FASTGP_BUILD_CUDA", raising=False)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setattr(setup_py, "visible_gpu_archs", lambda: [])
    root, found = setup_py.configure_cuda()
    if root is None:  # no matching toolkit here: the reason names the toolkit, not the GPU
        assert "toolkit" in found or "CUDA_HOME" in found
    else:
        assert found[0] == int(torch.version.cuda.split(".")[0])


def test_build_switched_off_says_how_to_switch_on(setup_py, monkeypatch):
    monkeypatch.setenv("FASTGP_BUILD_CUDA", "0")
    root, reason = setup_py.configure_cuda()
    assert root is None and reason == "FASTGP_BUILD_CUDA=0"
    assert "Unset FASTGP_BUILD_CUDA" in setup_py.how_to_get_cuda(reason)


def test_bad_build_switch_is_refused(setup_py, monkeypatch):
    monkeypatch.setenv("FASTGP_BUILD_CUDA", "maybe")
    with pytest.raises(SystemExit, match="FASTGP_BUILD_CUDA must be 0, 1 or unset"):
        setup_py.configure_cuda()


def test_build_temp_is_kept_in_the_source_tree_per_torch_version(setup_py):
    cpu, cuda = Path(setup_py.persistent_build_temp(False)), Path(setup_py.persistent_build_temp(True))
    assert cpu.parent == cuda.parent == REPO / "build" and cpu != cuda
    assert cpu.name.startswith("temp-fastgp-py") and torch.__version__.split("+")[0] in cpu.name


@pytest.mark.parametrize("triton", ["3.6.0", None])
def test_info_says_how_to_rebuild_when_a_gpu_has_no_cuda_kernels(monkeypatch, capsys, triton):
    real = backend.report()
    monkeypatch.setattr(backend, "report", lambda: dict(real, gpu_count=1, extension_cuda_kernels=False, triton=triton))
    text = fastgp.info()
    note = [line for line in text.splitlines() if line.startswith("note:")]
    assert len(note) == 1
    assert "FASTGP_BUILD_CUDA=1 pip install --no-build-isolation -e ." in note[0]
    assert ("Triton serves CUDA tensors" in note[0]) == (triton is not None)


def test_info_has_no_rebuild_note_without_gpu(monkeypatch):
    real = backend.report()
    monkeypatch.setattr(backend, "report", lambda: dict(real, gpu_count=0, extension_cuda_kernels=False))
    assert "note:" not in fastgp.info()
