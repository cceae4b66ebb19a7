"""The device x backend parametrization itself: every op test has its CUDA cases, marked ``cuda``,
collected everywhere and skipped with a reason where no GPU is visible (here: hidden with
CUDA_VISIBLE_DEVICES, so the check means the same on a GPU machine)."""

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "tests/test_combine.py"
CUDA_CASES = ("cuda-extension", "cuda-triton", "cuda-reference")


def pytest_in_subprocess(*args):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def collected_ids(*args):
    result = pytest_in_subprocess("--collect-only", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [line for line in result.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def cuda_ids():
    return collected_ids("-m", "cuda", MODULE)


def test_cuda_marker_selects_every_cuda_case_and_only_those(cuda_ids):
    all_ids = collected_ids(MODULE)
    cpu_ids = [test_id for test_id in all_ids if test_id not in set(cuda_ids)]
    assert cuda_ids and cpu_ids and set(cuda_ids) <= set(all_ids)
    assert all(re.search(r"\[(.*-)?cuda(-|\])", test_id) for test_id in cuda_ids), cuda_ids[:5]
    assert not any(case in test_id for test_id in cpu_ids for case in CUDA_CASES)
    # Every test that runs on the CPU backends runs on each CUDA backend too.
    for cpu_case, cuda_cases in (("cpu-extension", ("cuda-extension", "cuda-triton")),
                                 ("cpu-reference", ("cuda-reference",))):
        for test_id in cpu_ids:
            if cpu_case in test_id:
                for cuda_case in cuda_cases:
                    assert test_id.replace(cpu_case, cuda_case) in cuda_ids, test_id
    # The ops tests compare fused backends with the reference: no cuda-reference case there.
    assert not any("test_pixelwise_matches_reference[cuda-reference" in test_id for test_id in cuda_ids)


def test_cuda_cases_skip_with_a_reason_without_a_gpu(cuda_ids):
    result = pytest_in_subprocess("-m", "cuda", "-rs", MODULE)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"{len(cuda_ids)} skipped, \d+ deselected in .*", summary), summary
    assert "no CUDA device visible" in result.stdout and "passed" not in summary and "error" not in summary


# ------------------------------------------------------------------------------------------------
# Every test that takes a backend case runs on that case's device
# ------------------------------------------------------------------------------------------------

BACKEND_FIXTURES = {"backend_name", "kernel_backend", "backend_case"}


def off_device_tests(source: str) -> list[str]:
    """The test functions in ``source`` that take a backend fixture without using the case's device:
    neither ``on_device`` (the device made the default) nor ``device`` read in the body. Such a test
    would run its CUDA cases on CPU tensors (a forced triton backend refuses them, the others would
    test the CPU twice). A test that is CPU-only by nature parametrizes over the CPU backends itself."""
    import ast

    bad = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.name.startswith("test"):
            continue
        params = {arg.arg for arg in node.args.args + node.args.kwonlyargs}
        if not params & BACKEND_FIXTURES or "on_device" in params:
            continue
        read = {name.id for name in ast.walk(node) if isinstance(name, ast.Name)}
        if "device" not in params or "device" not in read:
            bad.append(f"{node.name} (line {node.lineno})")
    return bad


def test_the_guard_flags_a_test_off_its_device():
    source = (
        "def test_cpu_only(backend_name):\n    x = torch.zeros(2)\n"
        "def test_unused(kernel_backend, device):\n    x = torch.zeros(2)\n"
        "def test_used(backend_name, device):\n    x = torch.zeros(2, device=device)\n"
        "def test_default(kernel_backend, on_device):\n    x = torch.zeros(2)\n"
        "def test_no_backend(dtype):\n    x = torch.zeros(2)\n"
    )
    assert off_device_tests(source) == ["test_cpu_only (line 1)", "test_unused (line 3)"]


def test_every_backend_test_runs_on_its_device():
    paths = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(os.path.join(REPO, "tests"))
        for name in names
        if name.startswith("test_") and name.endswith(".py")
    )
    offenders, checked = [], 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            source = f.read()
        checked += "backend_name" in source or "kernel_backend" in source
        offenders += [f"{os.path.relpath(path, REPO)}::{test}" for test in off_device_tests(source)]
    assert checked >= 5, "the guard must see the op tests"
    assert not offenders, "take `device` (and use it) or `on_device`: " + ", ".join(offenders)
