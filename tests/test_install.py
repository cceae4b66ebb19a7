"""What the build builds (setup.py, fastgp/_build.py), how the extension is found or compiled just
in time (fastgp.backend), what the package ships, and what ``fastgp info`` says about it."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
import tarfile
from pathlib import Path

import pytest
import torch

import fastgp
from fastgp import backend

REPO = Path(__file__).resolve().parent.parent
# For the subprocesses below (each imports torch): generous, as the CI machine is often busy.
TIMEOUT = 900


def load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setup_py():
    """setup.py as a module (its ``main()`` runs only as a script)."""
    return load_by_path("fastgp_setup", REPO / "setup.py")


@pytest.fixture
def build_helpers(setup_py):
    """fastgp/_build.py as setup.py loads it (what decides what is built, at install and just in time)."""
    return setup_py.build


@pytest.mark.parametrize("arch_list", [None, ""])
def test_build_without_gpu_is_cpu_only_unless_asked(build_helpers, monkeypatch, arch_list):
    monkeypatch.delenv("FASTGP_BUILD_CUDA", raising=False)
    if arch_list is None:
        monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    else:
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", arch_list)
    monkeypatch.setattr(build_helpers, "visible_gpu_archs", lambda: [])
    root, reason = build_helpers.configure_cuda()
    assert root is None and reason == "no GPU visible"
    hint = build_helpers.how_to_get_cuda(reason)
    assert "FASTGP_BUILD_CUDA=1" in hint and "TORCH_CUDA_ARCH_LIST" in hint


@pytest.mark.skipif(torch.version.cuda is None, reason="needs a CUDA build of torch")
def test_arch_list_asks_for_cuda_kernels_without_gpu(build_helpers, monkeypatch):
    monkeypatch.delenv("FASTGP_BUILD_CUDA", raising=False)
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setattr(build_helpers, "visible_gpu_archs", lambda: [])
    root, found = build_helpers.configure_cuda()
    if root is None:  # no matching toolkit here: the reason names the toolkit, not the GPU
        assert "toolkit" in found or "CUDA_HOME" in found
    else:
        assert found[0] == int(torch.version.cuda.split(".")[0])


def test_build_switched_off_says_how_to_switch_on(build_helpers, monkeypatch):
    monkeypatch.setenv("FASTGP_BUILD_CUDA", "0")
    root, reason = build_helpers.configure_cuda()
    assert root is None and reason == "FASTGP_BUILD_CUDA=0"
    assert "Unset FASTGP_BUILD_CUDA" in build_helpers.how_to_get_cuda(reason)


def test_bad_build_switch_is_refused(build_helpers, monkeypatch):
    monkeypatch.setenv("FASTGP_BUILD_CUDA", "maybe")
    with pytest.raises(SystemExit, match="FASTGP_BUILD_CUDA must be 0, 1 or unset"):
        build_helpers.configure_cuda()


def test_build_temp_is_kept_in_the_source_tree_per_torch_version(build_helpers):
    cpu, cuda = Path(build_helpers.persistent_build_temp(False)), Path(build_helpers.persistent_build_temp(True))
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


# --------------------------------------------------------------------------------------------
# Pre-building at install, or not (FASTGP_BUILD_EXT)
# --------------------------------------------------------------------------------------------


def test_prebuild_follows_torch_and_the_switch(setup_py, monkeypatch):
    monkeypatch.delenv("FASTGP_BUILD_EXT", raising=False)
    assert setup_py.prebuild_wanted() == (True, None)  # --no-build-isolation: torch is importable
    monkeypatch.setenv("FASTGP_BUILD_EXT", "0")
    assert setup_py.prebuild_wanted() == (False, "FASTGP_BUILD_EXT=0")
    monkeypatch.setattr(setup_py.build, "torch", None)  # an isolated build: no torch
    monkeypatch.delenv("FASTGP_BUILD_EXT")
    assert setup_py.prebuild_wanted() == (False, "torch is not importable in this build environment")
    monkeypatch.setenv("FASTGP_BUILD_EXT", "1")
    with pytest.raises(SystemExit, match="FASTGP_BUILD_EXT=1 but torch is not importable.*--no-build-isolation"):
        setup_py.prebuild_wanted()
    monkeypatch.setenv("FASTGP_BUILD_EXT", "sometimes")
    with pytest.raises(SystemExit, match="FASTGP_BUILD_EXT must be 0, 1 or unset"):
        setup_py.prebuild_wanted()


def test_prebuilt_extension_records_its_torch():
    """The build that ran before the tests (README: pip install --no-build-isolation -e) wrote which
    torch it is for beside the library, and the backend loaded that library."""
    from fastgp import _build

    library = _build.prebuilt_library()
    if library is None:
        pytest.skip("fastgp was installed without a pre-built extension (it compiles on first use)")
    record = _build.read_record(os.path.dirname(library))
    assert record is not None and record["tag"] == _build.torch_tag()
    assert record["torch"] == torch.__version__
    assert backend.extension_status() == f"pre-built: {library}"
    assert f"extension built for: {record['tag']} (this torch)" in fastgp.info()


# --------------------------------------------------------------------------------------------
# A copy of the package, to see what a user's install does (no pre-built library, another torch)
# --------------------------------------------------------------------------------------------


def package_copy(tmp_path, library=True, sources=False):
    """fastgp copied into tmp_path/site (with or without the pre-built library, with or without the
    kernel sources beside it, as in a wheel's fastgp/_csrc), and the environment to run it in."""
    site = tmp_path / "site"
    ignore = ["__pycache__"] + ([] if library else ["_C.*"])
    shutil.copytree(REPO / "fastgp", site / "fastgp", ignore=shutil.ignore_patterns(*ignore))
    if sources:
        shutil.copytree(REPO / "csrc", site / "fastgp" / "_csrc")
    env = dict(os.environ, PYTHONPATH=str(site), FASTGP_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    env.pop("FASTGP_JIT", None)
    env.pop("FASTGP_BACKEND", None)
    return site / "fastgp", env


def run_python(code, env, cwd, timeout=TIMEOUT):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout)


USE_A_FUSED_OP = (
    "import warnings, torch, fastgp\n"
    "from fastgp import backend\n"
    "with warnings.catch_warnings(record=True) as caught:\n"
    "    warnings.simplefilter('always')\n"
    "    g = torch.randn(3, 4, requires_grad=True)\n"
    "    fastgp.grad_norm_penalty(g).backward()\n"
    "    fastgp.grad_norm_penalty(g)\n"
    "print('runs:', backend.resolve('cpu'))\n"
    "print('status:', backend.extension_status())\n"
    "for w in caught:\n"
    "    if 'fastgp' in str(w.message): print('warning:', w.message)\n"
)


def test_import_and_info_never_compile(tmp_path):
    package, env = package_copy(tmp_path, library=False, sources=True)
    result = run_python("import fastgp, fastgp.backend as b; print(b.extension_status())", env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("not built yet: the first fused op compiles it into ")
    result = subprocess.run([sys.executable, "-m", "fastgp", "info"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "extension: not built yet" in result.stdout and "compiling" not in result.stderr
    assert not (tmp_path / "cache").exists()


def mismatched_copy(tmp_path, sources):
    """A package whose pre-built library says it was built for another torch."""
    if backend.extension_status().startswith("not built") or not backend._load_extension():
        pytest.skip("no pre-built extension here")
    package, env = package_copy(tmp_path, library=True, sources=sources)
    record_path = package / "_C.build.json"
    record = {"tag": "torch2.11.0-cpu-cxx11abi1-py311", "torch": "2.11.0", "cuda_kernels": False}
    record_path.write_text(json.dumps(record))
    return package, env


def test_extension_built_for_another_torch_falls_back_with_one_warning(tmp_path):
    package, env = mismatched_copy(tmp_path, sources=False)
    env["FASTGP_JIT"] = "0"
    result = run_python(USE_A_FUSED_OP, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "runs: reference" in result.stdout
    warnings_ = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1, result.stdout
    assert "fastgp._C was built for torch 2.11.0" in warnings_[0]
    assert "pip install --no-build-isolation -e ." in warnings_[0] and "FASTGP_JIT=0" in warnings_[0]
    info = subprocess.run([sys.executable, "-m", "fastgp", "info"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=TIMEOUT).stdout
    assert "extension built for: torch2.11.0-cpu-cxx11abi1-py311 (NOT this torch)" in info


def test_extension_for_another_torch_without_sources_says_why_it_cannot_compile(tmp_path):
    package, env = mismatched_copy(tmp_path, sources=False)
    result = run_python(USE_A_FUSED_OP, env, tmp_path)
    assert result.returncode == 0, result.stderr
    warnings_ = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1 and "runs: reference" in result.stdout, result.stdout
    assert "compiling it failed: this install has no C++ sources" in warnings_[0]


def test_without_a_compiler_the_first_fused_op_falls_back_with_one_warning(tmp_path):
    package, env = package_copy(tmp_path, library=False, sources=True)
    env["CXX"] = "no-such-compiler"
    result = run_python(USE_A_FUSED_OP, env, tmp_path)
    assert result.returncode == 0, result.stderr
    warnings_ = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1 and "runs: reference" in result.stdout, result.stdout
    assert "not built yet and compiling it failed: no C++ compiler: 'no-such-compiler' is not on PATH" in warnings_[0]
    assert "pip install --no-build-isolation -e ." in warnings_[0]


@pytest.mark.slow  # compiles the extension: minutes on 2 cores
def test_first_fused_op_compiles_once_then_the_cache_is_used(tmp_path):
    """The just-in-time route for real (a few minutes on 2 cores): one line while compiling, the
    extension runs, and a second process loads the cached library without compiling."""
    package, env = package_copy(tmp_path, library=False, sources=True)
    first = run_python(USE_A_FUSED_OP, env, tmp_path, timeout=1800)
    assert first.returncode == 0, first.stderr
    compiling = [line for line in first.stderr.splitlines() if line.startswith("fastgp: compiling")]
    assert len(compiling) == 1 and " done in " in compiling[0], first.stderr
    assert "runs: extension" in first.stdout and "status: compiled just in time:" in first.stdout
    assert "warning:" not in first.stdout
    second = run_python(USE_A_FUSED_OP, env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "fastgp: compiling" not in second.stderr
    assert "runs: extension" in second.stdout and "status: compiled just in time (cached):" in second.stdout


# --------------------------------------------------------------------------------------------
# What the sdist and a wheel built without torch ship
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """An sdist and a wheel built as pip's isolated build does (torch not importable), from a copy
    of the source tree (so that nothing is written into the checkout)."""
    tmp = tmp_path_factory.mktemp("dist")
    source = tmp / "src"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "MANIFEST.in", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("csrc", "configs", "fastgp"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    without_torch = ("import runpy, sys\nsys.modules['torch'] = None\nsys.argv = ['setup.py'] + sys.argv[1:]\n"
                     "runpy.run_path('setup.py', run_name='__main__')\n")
    env = dict(os.environ)
    env.pop("FASTGP_BUILD_EXT", None)
    logs = ""
    for command in (["sdist", "-d", str(tmp)], ["bdist_wheel", "-d", str(tmp)]):
        result = subprocess.run([sys.executable, "-c", without_torch] + command, cwd=source, env=env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        assert result.returncode == 0, result.stderr
        logs += result.stdout
    return {"sdist": next(tmp.glob("*.tar.gz")), "wheel": next(tmp.glob("*.whl")), "log": logs, "tmp": tmp}


def test_build_without_torch_says_it_compiles_on_first_use(packages):
    assert "fastgp: not compiling the C++ kernels now (torch is not importable in this build environment)" \
        in packages["log"]
    assert packages["wheel"].name.endswith("-py3-none-any.whl")  # no library: one wheel for every torch


def test_sdist_ships_sources_and_configs(packages):
    with tarfile.open(packages["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"setup.py", "fastgp/_build.py", "csrc/ops.cpp", "configs/ring.yaml"} <= names
    assert not [name for name in names if name.endswith(".so") or name.endswith("_C.build.json")]


def test_wheel_ships_sources_and_configs_in_the_package(packages):
    with zipfile.ZipFile(packages["wheel"]) as wheel:
        names = set(wheel.namelist())
    configs = {f"fastgp/configs/{path.name}" for path in (REPO / "configs").glob("*.yaml")}
    assert configs <= names and "fastgp/_csrc/ops.cpp" in names and "fastgp/_build.py" in names
    assert not [name for name in names if name.endswith(".so")]


def test_trainer_finds_bundled_configs_by_name_from_any_folder(packages, tmp_path):
    """`fastgp-train --config ring` in a folder without configs/, with the package from the wheel."""
    site = tmp_path / "site"
    with zipfile.ZipFile(packages["wheel"]) as wheel:
        wheel.extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), FASTGP_JIT="0", OMP_NUM_THREADS="1")
    work = tmp_path / "work"
    work.mkdir()
    quick = ["steps=2", "batch_size=32", "log.every=1", "log.diag_every=1", "log.eval_samples=64",
             "checkpoint.every=2", "log.progress=false", "log.plots=false"]
    args = [a for s in quick for a in ("--set", s)]
    result = subprocess.run([sys.executable, "-W", "ignore", "-m", "fastgp.train", "--config", "ring", "--out", "run"]
                            + args, capture_output=True, text=True, env=env, cwd=work, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    saved = (work / "run" / "config.yaml").read_text()
    assert "name: ring" in saved, saved
    result = subprocess.run([sys.executable, "-m", "fastgp.train", "--config", "rign"], capture_output=True,
                            text=True, env=env, cwd=work, timeout=TIMEOUT)
    assert result.returncode == 2 and "did you mean" in result.stderr and "ring.yaml" in result.stderr


# --------------------------------------------------------------------------------------------
# Missing extras: one line, before any work
# --------------------------------------------------------------------------------------------

def without_matplotlib(module, args, cwd):
    """Run ``module``'s main(args) in a subprocess where matplotlib does not import."""
    code = f"import sys\nsys.modules['matplotlib'] = None\nfrom {module} import main\nsys.exit(main({args!r}))\n"
    return run_python(code, dict(os.environ, OMP_NUM_THREADS="1"), cwd)


def test_trainer_without_matplotlib_says_which_extra_before_training(tmp_path):
    result = without_matplotlib("fastgp.train.cli", ["--set", "steps=2", "--out", "run"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "fastgp-train: error: the pictures written at the end of the run (log.plots) need matplotlib, from "
        "fastgp's [train] extra: pip install 'fastgp[train]' (or --set log.plots=false)"]
    assert not (tmp_path / "run").exists()  # nothing trained
    result = without_matplotlib("fastgp.train.cli", ["--set", "steps=2", "--set", "log.plots=false", "--set",
                                                     "log.progress=false", "--out", "run"], tmp_path)
    assert result.returncode == 0, result.stderr


def test_repro_without_matplotlib_says_which_extra_before_training(tmp_path):
    result = without_matplotlib("fastgp.repro.__main__", ["far", "--quick", "--out", "r"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "python -m fastgp.repro: error: the reproductions' charts need matplotlib, from fastgp's [train] extra: "
        "pip install 'fastgp[train]'"]
    assert not (tmp_path / "r").exists()
