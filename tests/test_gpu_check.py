"""The GPU check (scripts/gpu-check, fastgp/check.py) and ``python -m bench --device cuda``, as far
as a machine without a GPU allows: the check runs end to end with the build skipped and a small
test file of its own, the CUDA phases skip with one line each, the summary counts the tests per
device and backend, and OUT_DIR holds the documented files only."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Test ids name their device and backend, as the suite's do; one failure and one skip.
TINY_TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("backend", ["extension", "reference"])
    def test_op(backend):
        assert backend != "reference", "planted failure"

    @pytest.mark.parametrize("device", ["cuda"])
    @pytest.mark.parametrize("backend", ["extension"])
    def test_op_cuda(device, backend):
        pytest.skip("planted skip")

    def test_plain():
        pass
    """
)


def run_check(tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    tiny = tmp_path / "test_tiny.py"
    tiny.write_text(TINY_TESTS)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [str(REPO / "scripts" / "gpu-check"), str(out), "--skip-build", f"--tests-only={tiny}", *options],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )


def test_gpu_check_without_gpu_skips_cuda_phases_and_counts_per_backend(tmp_path):
    result = run_check(tmp_path)
    out = tmp_path / "out"
    assert result.returncode == 1, result.stdout + result.stderr  # the planted failure
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in result.stdout  # the same summary is printed
    lines = summary.splitlines()
    assert lines[0] == "fastgp GPU check (cuda) — FAILED: tests (no GPU visible: the CUDA phases did not run)"
    assert any(line.startswith("machine: ") and "GPU none visible" in line for line in lines)
    assert "build: skipped (--skip-build: testing the fastgp already built in this tree)" in lines
    assert any(line.startswith("tests: 2 passed, 1 failed, 1 skipped in ") for line in lines)
    table = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ") and "/" in line}
    assert table["extension"] == ["1/0/0", "0/0/1"]  # cpu, cuda columns
    assert table["reference"] == ["0/1/0", "—"]
    assert table["other"] == ["1/0/0", "—"]
    assert any(line.startswith("  FAILED ") and "test_op[reference]" in line for line in lines)
    assert "sanitizer: skipped (no CUDA GPU visible)" in lines
    assert "bench: skipped (--skip-bench)" in lines  # --tests-only skips the benchmark
    assert any(line.startswith("time: probe ") and "total" in line for line in lines)
    assert len(lines) <= 25  # one screen
    # Each CUDA phase said so in one line while running, too.
    assert result.stdout.count("gpu-check: sanitizer: skipped") == 1
    files = sorted(p.name for p in out.iterdir())
    assert files == ["environment.txt", "summary.txt", "tests.log"]
    assert "planted failure" in (out / "tests.log").read_text()


def test_gpu_check_cuda_phases_skip_in_one_line_each_without_gpu(tmp_path):
    from fastgp import check

    out = tmp_path / "out"
    out.mkdir()
    runner = check.Check(check.parse_args(["--out", str(out), "--skip-build"]))
    runner.probe = {"gpu_count": 0}  # what the probe finds on a machine without a GPU
    runner.phase_sanitizer()
    runner.phase_bench()
    assert runner.lines["sanitizer"] == ["sanitizer: skipped (no CUDA GPU visible)"]
    assert runner.lines["bench"] == ["bench: skipped (no CUDA GPU visible; python -m bench --device cuda would exit)"]
    assert list(out.iterdir()) == []


def test_gpu_check_refuses_a_folder_with_files(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    result = subprocess.run(
        [str(REPO / "scripts" / "gpu-check"), str(out), "--skip-build", "--tests-only=nothing"],
        capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), timeout=120,
    )
    assert result.returncode == 2
    assert "is not empty" in result.stdout


@pytest.mark.parametrize(
    "name, params, expected",
    [
        ("tests.test_penalty", "test_head[cuda-extension-float32]", ("cuda", "extension")),
        ("tests.test_penalty", "test_head[cpu-reference-float64]", ("cpu", "reference")),
        ("tests.triton_kernels.test_penalty", "test_head[float32]", ("cpu", "triton")),
        ("tests.test_train", "test_reference_trainer_runs", ("cpu", "other")),
    ],
)
def test_classify_reads_device_and_backend_from_the_test_id(name, params, expected):
    from fastgp import check

    assert check.classify(name, params) == expected


def test_counts_come_from_verbose_output_even_when_cut_off():
    from fastgp import check

    output = textwrap.dedent(
        """
        tests/test_penalty.py::test_head[cuda-extension-float32] PASSED          [  1%]
        tests/test_penalty.py::test_head[cuda-triton-float32] FAILED             [  2%]
        tests/test_penalty.py::test_head[cpu-reference-float64] SKIPPED (no bf16) [  3%]
        tests/triton_kernels/test_select.py::test_far[float32] PASSED            [  4%]
        tests/test_train.py::test_runs ERROR                                     [  5%]
        [gw1] [ 90%] PASSED tests/test_select.py::test_far[cuda-reference]
        [gw0] [ 95%] FAILED tests/test_select.py::test_far[cuda-extension]
        tests/test_train.py::test_resumes
        """
    )  # pytest-xdist workers' lines too; the last test was running when the time limit stopped pytest
    counts = check.count_pytest_output(output + "FAILED tests/test_penalty.py::test_head[cuda-triton-float32] - x\n")
    assert counts.by_group == {
        ("cuda", "triton"): {"passed": 0, "failed": 1, "skipped": 0},
        ("cpu", "reference"): {"passed": 0, "failed": 0, "skipped": 1},
        ("cpu", "triton"): {"passed": 1, "failed": 0, "skipped": 0},
        ("cpu", "other"): {"passed": 0, "failed": 1, "skipped": 0},
        ("cuda", "reference"): {"passed": 1, "failed": 0, "skipped": 0},
        ("cuda", "extension"): {"passed": 1, "failed": 1, "skipped": 0},
    }
    assert counts.failed_ids == [
        "tests/test_penalty.py::test_head[cuda-triton-float32]",
        "tests/test_train.py::test_runs",
        "tests/test_select.py::test_far[cuda-extension]",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_bench_on_cuda_without_gpu_exits_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--device", "cuda", "--quick", "--out", "/nonexistent"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: --device cuda: no CUDA GPU is visible")
    assert result.stdout == ""
