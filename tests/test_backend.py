"""Backend selection, the fallback when the extension cannot load, and `python -m fastgp info`."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import fastgp
from fastgp import backend


@pytest.fixture(autouse=True)
def _restore_backend(monkeypatch):
    monkeypatch.delenv("FASTGP_BACKEND", raising=False)
    yield
    fastgp.set_backend(None)


def test_extension_is_built_and_loaded():
    # CI builds the extension: if it cannot load, this fails (it is not a skip).
    assert backend.unavailable_reason("extension", "cpu") is None, backend._extension_error
    assert hasattr(torch.ops.fastgp, "grad_norm_penalty_forward")


def test_auto_picks_extension_on_cpu():
    assert fastgp.get_backend() == "auto"
    assert backend.resolve("cpu") == "extension"
    assert backend.kernels("penalty", "cpu") is torch.ops.fastgp


def test_set_backend_and_context_manager():
    fastgp.set_backend("reference")
    assert backend.resolve("cpu") == "reference"
    assert backend.kernels("penalty", "cpu").__name__ == "fastgp.reference.penalty"
    with fastgp.use_backend("extension"):
        assert backend.resolve("cpu") == "extension"
        with fastgp.use_backend("auto"):
            assert backend.resolve("cpu") == "extension"
    assert backend.resolve("cpu") == "reference"
    fastgp.set_backend("auto")
    assert fastgp.get_backend() == "auto"


def test_use_backend_nests_restores_on_error_and_is_per_thread():
    import threading

    with fastgp.use_backend("reference"):
        with pytest.raises(RuntimeError, match="inside"):
            with fastgp.use_backend("extension"):
                assert backend.resolve("cpu") == "extension"
                raise RuntimeError("inside")
        assert backend.resolve("cpu") == "reference"  # the outer choice is back after the error
        seen = []
        worker = threading.Thread(target=lambda: seen.append(fastgp.get_backend()))
        worker.start()
        worker.join()
        assert seen == ["auto"]  # another thread does not see this thread's with block
    assert fastgp.get_backend() == "auto"


def test_backend_table_resolves_every_op():
    assert backend.implementation("reference", "translate") is backend.provider("reference", "augment").translate
    assert backend.implementation("extension", "nearest_distance") is torch.ops.fastgp.nearest_distance
    with pytest.raises(ValueError, match="unknown op 'translat'"):
        backend.implementation("reference", "translat")


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTGP_BACKEND", "reference")
    assert backend.resolve("cpu") == "reference"
    monkeypatch.setenv("FASTGP_BACKEND", "fast")
    with pytest.raises(ValueError, match="environment variable FASTGP_BACKEND must be one of"):
        backend.resolve("cpu")


def test_invalid_backend_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        fastgp.set_backend("cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        with fastgp.use_backend("tritonn"):
            pass


def test_forced_unavailable_backend_explains():
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("under the Triton interpreter, triton is available for CPU tensors")
    with fastgp.use_backend("triton"):
        with pytest.raises(backend.BackendUnavailableError, match="TRITON_INTERPRET=1"):
            fastgp.grad_norm_penalty(torch.randn(2, 3))


def test_cuda_without_gpu_falls_back_with_reasons():
    reasons = {name: backend.unavailable_reason(name, "cuda") for name in backend.BACKENDS}
    if not torch.cuda.is_available():
        assert reasons["triton"] == "no GPU visible" or "Triton not installed" in reasons["triton"]
        assert reasons["extension"] is not None
        assert backend.resolve("cuda") == "reference"


def test_info_lists_every_backend_per_device(capsys):
    text = fastgp.info()
    assert capsys.readouterr().out.strip() == text.strip()
    for word in ("fastgp 0.1.0", "torch", "cpu:", "cuda:", "extension", "triton", "reference", "-> runs: extension"):
        assert word in text


def test_python_m_fastgp_info():
    result = subprocess.run([sys.executable, "-m", "fastgp", "info"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cpu:" in result.stdout and "reference  available" in result.stdout


def test_import_works_and_falls_back_when_extension_is_broken():
    # Simulate a missing/broken extension: importing fastgp._C raises.
    code = (
        "import sys, warnings\n"
        "sys.modules['fastgp._C'] = None\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import fastgp, torch\n"
        "    from fastgp import backend\n"
        "    assert backend.resolve('cpu') == 'reference', backend.resolve('cpu')\n"
        "    g = torch.randn(3, 4, requires_grad=True)\n"
        "    fastgp.grad_norm_penalty(g).backward()\n"
        "    backend.resolve('cpu')\n"
        "messages = [str(w.message) for w in caught if 'fastgp' in str(w.message)]\n"
        "assert len(messages) == 1, messages\n"
        "print(messages[0])\n"
        "print(backend.unavailable_reason('extension', 'cpu'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "compiled extension is unavailable" in result.stdout


def test_cuda_kernels_built_when_a_gpu_and_a_toolkit_are_present():
    # With a GPU visible, a CUDA build of torch and nvcc, the default build must have included the
    # CUDA kernels (not silently skipped them). Without a GPU the default build is CPU-only (see
    # setup.py); CI proves the CUDA sources by compiling and linking them in .ci/run instead.
    if torch.version.cuda is None or shutil.which("nvcc") is None:
        pytest.skip("CPU-only torch or no nvcc: the CUDA kernels are not expected here")
    if not torch.cuda.is_available():
        pytest.skip("no GPU visible: the default build compiles the CPU kernels only")
    if os.environ.get("FASTGP_BUILD_CUDA") == "0":
        pytest.skip("FASTGP_BUILD_CUDA=0 disables the CUDA kernels")
    assert backend.extension_has_cuda()
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fastgp::grad_norm_penalty_backward", "CUDA")
