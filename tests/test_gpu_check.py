"""The GPU check (scripts/gpu-check, fastgp/check.py) and ``python -m bench --device cuda``, as far
as a machine without a GPU allows: the check runs end to end with the build skipped and small
test files of its own (a planted failure, fake result lines, a crashing test, a hanging one), the
CUDA phases skip with one line each, the summary counts the tests per family, device and backend
from pytest's own reports, everything stays inside one budget, an outer kill leaves the streamed
logs and a provisional summary, and bad arguments get one line."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# Test ids name their device and backend, as the suite's do; one failure and one skip.
TINY_TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.parametrize("backend", ["cpu-extension", "cpu-reference"])
    def test_op(backend):
        assert backend != "cpu-reference", "planted failure"

    @pytest.mark.parametrize("device", ["cuda"])
    @pytest.mark.parametrize("backend", ["extension"])
    def test_op_cuda(device, backend):
        pytest.skip("planted skip")

    def test_plain():
        pass
    """
)

FAKE_RESULT_LINES = textwrap.dedent(
    """
    FAKE = '''1 passed
    tests/test_penalty.py::test_head[cuda-extension-float32] PASSED          [  1%]
    [gw0] [ 50%] PASSED tests/test_select.py::test_far[cuda-extension]
    ======================== 9 passed in 0.10s ========================'''

    def test_prints_fake_results_and_fails():
        print(FAKE)
        assert False, "planted failure"

    def test_prints_fake_results_and_passes():
        print(FAKE)
    """
)

CRASHING_TESTS = textwrap.dedent(
    """
    import os

    def test_before():
        pass

    def test_crashes():
        os._exit(3)

    def test_after():
        pass
    """
)

SLOW_TESTS = textwrap.dedent(
    """
    import os, time

    def test_quick():
        pass

    def test_hangs():
        # Where the outer test finds this process group, to check that it was stopped.
        with open(os.environ["HANG_PGID_FILE"], "w") as f:
            f.write(str(os.getpgid(0)))
        time.sleep(600)
    """
)

# A machine without a GPU, whatever this one has; this tree's fastgp in every subprocess.
CHECK_ENV = dict(os.environ, PYTHON=sys.executable, CUDA_VISIBLE_DEVICES="",
                 PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))


def check_command(tmp_path: Path, tests: str, *options: str) -> list[str]:
    tiny = tmp_path / "test_tiny.py"
    tiny.write_text(tests)
    return [str(REPO / "scripts" / "gpu-check"), str(tmp_path / "out"), "--skip-build", f"--tests-only={tiny}", *options]


def run_check(tmp_path: Path, *options: str, tests: str = TINY_TESTS, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(check_command(tmp_path, tests, *options), capture_output=True, text=True,
                          env=env or CHECK_ENV, timeout=600, cwd=tmp_path)


def summary_lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "out" / "summary.txt").read_text().splitlines()


def test_gpu_check_without_gpu_skips_cuda_phases_and_counts_per_family(tmp_path):
    result = run_check(tmp_path)
    out = tmp_path / "out"
    assert result.returncode == 1, result.stdout + result.stderr  # the planted failure
    summary = (out / "summary.txt").read_text()
    assert summary.strip() in result.stdout  # the same summary is printed
    lines = summary.splitlines()
    assert lines[0] == "fastgp GPU check (cuda) — FAILED: tests (no GPU visible: the CUDA phases did not run)"
    assert any(line.startswith("machine: ") and "GPU none visible" in line for line in lines)
    assert "build: skipped (--skip-build: testing the fastgp already built in this tree)" in lines
    assert any(line.startswith("tests: 2 passed, 1 failed, 1 skipped of 4 selected in ") for line in lines), lines
    assert any(line.startswith("  Triton compilations: 0 of fastgp's kernels") for line in lines)
    header = next(line for line in lines if line.startswith("  family "))
    assert header.split()[1:5] == ["cuda-extension", "cpu-extension", "cpu-reference", "cpu-other"]
    row = next(line for line in lines if line.startswith("  tiny "))
    assert row.split()[1:] == ["0/0/1", "1/0/0", "0/1/0", "1/0/0"]
    assert any(line.startswith("  FAILED ") and "test_op[cpu-reference]" in line and "planted failure" in line
               for line in lines)
    assert "sanitizer: skipped (no CUDA GPU visible)" in lines
    assert "bench: skipped (--skip-bench)" in lines  # --tests-only skips the benchmark
    assert any(line.startswith("time: probe ") and line.endswith("s of a 420 s budget") for line in lines)
    assert len(lines) <= 30  # one screen
    # Each CUDA phase said so in one line while running, too.
    assert result.stdout.count("gpu-check: sanitizer: skipped") == 1
    files = sorted(p.name for p in out.iterdir())
    assert files == ["environment.txt", "summary.txt", "tests.log"]
    assert "planted failure" in (out / "tests.log").read_text()


def test_lines_a_test_prints_are_not_counted_as_results(tmp_path):
    result = run_check(tmp_path, tests=FAKE_RESULT_LINES)
    lines = summary_lines(tmp_path)
    assert result.returncode == 1
    assert any(line.startswith("tests: 1 passed, 1 failed, 0 skipped of 2 selected in ") for line in lines), lines
    assert "9 passed in 0.10s" in (tmp_path / "out" / "tests.log").read_text()  # the fake lines reached the log


def test_a_test_that_kills_its_process_is_named_as_crashed(tmp_path):
    result = run_check(tmp_path, "--jobs", "1", tests=CRASHING_TESTS)
    lines = summary_lines(tmp_path)
    assert result.returncode == 1
    assert lines[0].startswith("fastgp GPU check (cuda) — FAILED: tests")
    assert any(line.startswith("tests: 1 passed, 0 failed, 1 crashed, 0 skipped of 3 selected in ") for line in lines), lines
    assert any(line.startswith("  CRASHED ") and "test_crashes" in line and "process died" in line for line in lines)
    assert not any("test_after" in line for line in lines)  # never ran: no result, not a failure


@pytest.mark.parametrize("parallel", [
    pytest.param("xdist", marks=pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")),
    "processes",  # without pytest-xdist: pytest processes side by side, each running every 2nd test
])
def test_a_crashed_worker_counts_one_crash_not_failures(tmp_path, parallel):
    result = run_check(tmp_path, "--jobs", "2", "--parallel", parallel, tests=CRASHING_TESTS)
    lines = summary_lines(tmp_path)
    assert result.returncode == 1
    head = next(line for line in lines if line.startswith("tests: "))
    assert head.startswith("tests: 2 passed, 0 failed, 1 crashed, 0 skipped of 3 selected in "), lines
    crashed = [line for line in lines if line.startswith("  CRASHED ")]
    died = "its worker gw" if parallel == "xdist" else "the test process died"
    assert len(crashed) == 1 and "test_crashes" in crashed[0] and died in crashed[0], lines


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("spread", [["--jobs", "1"], ["--jobs", "2", "--parallel", "processes"]])
def test_a_phase_stopped_at_its_limit_keeps_its_counts_and_the_budget(tmp_path, spread):
    budget = 90  # the probe's torch import alone can take 40 s on a loaded 2-core machine
    start = time.monotonic()
    result = run_check(tmp_path, "--budget", str(budget), *spread, tests=SLOW_TESTS,
                       env=dict(CHECK_ENV, HANG_PGID_FILE=str(tmp_path / "pgid")))
    elapsed = time.monotonic() - start
    lines = summary_lines(tmp_path)
    assert result.returncode == 1
    assert elapsed < budget + 5, elapsed  # the probe and the kill grace are inside the budget
    head = next(line for line in lines if line.startswith("tests: "))
    assert "1 passed" in head and "TIMED OUT at its limit: 1 stopped while running, 0 not run" in head, lines
    assert any(line.startswith("  UNFINISHED ") and "test_hangs" in line for line in lines)
    assert int(re.search(r"total (\d+) s of a 90 s budget", lines[-2]).group(1)) <= budget
    assert not _alive(int((tmp_path / "pgid").read_text()))  # the whole process group was stopped


def _wait_for(predicate, seconds: float = 180) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.5)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_outer_kill_leaves_the_streamed_log_and_a_summary(tmp_path, sig):
    env = dict(CHECK_ENV, HANG_PGID_FILE=str(tmp_path / "pgid"))
    check = subprocess.Popen(check_command(tmp_path, SLOW_TESTS, "--budget", "300"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    out, pgid_file = tmp_path / "out", tmp_path / "pgid"
    try:
        # The log is streamed (test_quick's result is there while the phase runs), and the
        # summary is rewritten with the running counts.
        _wait_for(lambda: pgid_file.exists() and "test_quick PASSED" in _text(out / "tests.log"))
        _wait_for(lambda: "(RUNNING: provisional, 1 running now)" in _text(out / "summary.txt"))
        check.send_signal(sig)
        check.wait(timeout=60)
    finally:
        check.kill()
        check.wait()
    pgid = int(pgid_file.read_text())
    lines = summary_lines(tmp_path)
    if sig == signal.SIGKILL:  # nothing could clean up: the provisional summary is what is left
        assert lines[0].startswith("fastgp GPU check (cuda) — PROVISIONAL (written while tests runs; no failure so far)")
        assert any(line.startswith("tests: 1 passed, 0 failed, 0 skipped of 2 selected in ") for line in lines), lines
        os.killpg(pgid, signal.SIGKILL)  # the orphaned pytest, as an outer kill of the whole group would
    else:
        assert check.returncode == 1
        assert lines[0] == "fastgp GPU check (cuda) — FAILED: tests (no GPU visible: the CUDA phases did not run)"
        assert any(line.startswith("tests: INTERRUPTED by SIGTERM after ") for line in lines), lines
        _wait_for(lambda: not _alive(pgid), 10)
    assert "test_quick PASSED" in (out / "tests.log").read_text()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--jobs", "abc"], "argument --jobs: expected 'auto' or a whole number of workers >= 1, got 'abc'"),
        (["--jobs", "0"], "argument --jobs: expected 'auto' or a whole number of workers >= 1, got '0'"),
        (["--budget", "nan"], "argument --budget: expected a positive number of seconds, got 'nan'"),
        (["--budget", "-5"], "argument --budget: expected a positive number of seconds, got '-5'"),
        (["--budget", "inf"], "argument --budget: expected a positive number of seconds, got 'inf'"),
        (["--budget", "abc"], "argument --budget: expected a positive number of seconds, got 'abc'"),
        (["--out", "{file}"], "argument --out: {file} is a file, not a folder"),
    ],
)
def test_bad_arguments_get_one_line(tmp_path, options, message):
    file = tmp_path / "a-file"
    file.write_text("x")
    options = [o.format(file=file) for o in options]
    if "--out" not in options:
        options += ["--out", str(tmp_path / "out")]
    result = subprocess.run([sys.executable, str(REPO / "fastgp" / "check.py"), *options],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"gpu-check: error: {message.format(file=file)} (see --help)"]
    assert not (tmp_path / "out").exists()


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


def test_phase_shares_keep_the_later_phases_reserves_inside_one_budget(tmp_path):
    from fastgp import check

    runner = check.Check(check.parse_args(["--out", str(tmp_path / "out"), "--budget", "400"]))
    runner.probe = {"gpu_count": 1, "compute_sanitizer": "/usr/bin/compute-sanitizer"}

    def share(phase):
        return runner.phase_end(phase) - time.monotonic()

    left = runner.deadline - time.monotonic()
    assert share("probe") == pytest.approx(check.CAPS["probe"], abs=0.5)
    assert share("build") == pytest.approx(check.CAPS["build"], abs=0.5)
    assert share("tests") == pytest.approx(left - check.RESERVES["sanitizer"] - check.RESERVES["bench"], abs=0.5)
    assert share("bench") == pytest.approx(left, abs=0.5)
    runner.probe = {"gpu_count": 0}  # no sanitizer, no CUDA bench: the tests get everything
    assert share("tests") == pytest.approx(left, abs=0.5)
    runner.deadline = time.monotonic() + 5  # a phase never ends after the budget, whatever its cap
    assert runner.phase_end("build") <= runner.deadline


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
    assert check.classify(name, params, default_device="cuda")[0] == ("cpu" if "cpu" in params else "cuda")


def test_family_of_a_test_is_its_op_family():
    from fastgp import check

    assert check.family_of("tests/test_penalty_ops.py::test_head[cuda-extension]") == "penalty"
    assert check.family_of("tests/triton_kernels/test_triton_penalty.py::test_head") == "penalty"
    assert check.family_of("tests/test_spectral_cache.py::test_x") == "spectral"


# The GPU selection, as pytest sees it: cuda-marked cases and tests/triton_kernels only, the Triton
# registration / opcheck / compile tests first, then extension, reference, Triton cases.
SELECTION_TESTS = {
    "tests/test_ops.py": textwrap.dedent(
        """
        import pytest

        CASES = ["cuda-triton", "cuda-reference", "cuda-extension"]

        @pytest.mark.parametrize("backend", [pytest.param(c, marks=pytest.mark.cuda) for c in CASES] + ["cpu-extension"])
        def test_value(backend):
            pass

        @pytest.mark.parametrize("backend", [pytest.param(c, marks=pytest.mark.cuda) for c in CASES[::2]])
        def test_torch_compile(backend):
            pass

        @pytest.mark.parametrize("name", ["triton_kernels"])  # a parameter naming the folder is not in it
        def test_plain(name):
            pass
        """
    ),
    "tests/triton_kernels/test_triton_ops.py": "def test_matches():\n    pass\n\n\ndef test_opcheck_and_compile_on_gpu():\n    pass\n",
}


def test_the_gpu_selection_keeps_the_cuda_cases_and_triton_kernels_in_order(tmp_path):
    for name, text in SELECTION_TESTS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    cuda: runs on a CUDA device\n")
    shutil.copy(REPO / "fastgp" / "check.py", tmp_path / "fastgp_check_plugin.py")
    env = dict(os.environ, FASTGP_CHECK_SELECT="gpu", PYTHONPATH=str(tmp_path))
    env.pop("FASTGP_CHECK_REPORT", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p", "fastgp_check_plugin",
         "tests"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )
    ids = [line for line in result.stdout.splitlines() if line.startswith("tests/")]
    assert ids == [
        "tests/test_ops.py::test_torch_compile[cuda-triton]",
        "tests/triton_kernels/test_triton_ops.py::test_opcheck_and_compile_on_gpu",
        "tests/test_ops.py::test_value[cuda-extension]",
        "tests/test_ops.py::test_torch_compile[cuda-extension]",
        "tests/test_ops.py::test_value[cuda-reference]",
        "tests/test_ops.py::test_value[cuda-triton]",
        "tests/triton_kernels/test_triton_ops.py::test_matches",
    ], result.stdout + result.stderr


def test_every_sanitizer_slice_id_is_still_collected():
    from fastgp import check

    ids = set(check.SANITIZER_SLICE) | set(check.RACECHECK_SLICE)
    files = sorted({i.partition("::")[0] for i in ids})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert ids - set(result.stdout.splitlines()) == set()
    # One correctness case per op family and dtype family (32-bit, 64-bit, 16-bit) on cuda-extension.
    for family in ("penalty", "spectral", "augment", "combine", "select", "correction"):
        cases = [i for i in check.SANITIZER_SLICE if check.family_of(i) == family]
        assert all("[cuda-extension" in i for i in cases)
        for dtypes in (("float32",), ("float64",), ("float16", "bfloat16")):
            assert any(i.endswith(tuple(f"torch.{d}]" for d in dtypes)) for i in cases), (family, dtypes)
    assert {check.family_of(i) for i in check.RACECHECK_SLICE} == {"penalty", "spectral", "correction"}


def test_read_report_counts_one_crash_and_names_unfinished_tests(tmp_path):
    from fastgp import check

    report = tmp_path / "r.jsonl"
    records = [
        {"selected": 4},
        {"start": "t.py::a"}, {"id": "t.py::a", "when": "setup", "outcome": "passed"},
        {"id": "t.py::a", "when": "call", "outcome": "passed"}, {"id": "t.py::a", "when": "teardown", "outcome": "passed"},
        {"start": "t.py::b"}, {"id": "t.py::b", "when": "???", "outcome": "failed", "worker": "gw1",
                               "message": "worker 'gw1' crashed while running 't.py::b'"},
        {"start": "t.py::c"}, {"id": "t.py::c", "when": "setup", "outcome": "passed"},
        *[{"collect_error": "t2.py", "message": "ImportError: x"}] * 2,  # from two xdist workers
    ]
    report.write_text("\n".join(json.dumps(r) for r in records) + '\n{"start": "t.py::d')  # cut by a kill
    stopped = check.read_report(report, process_ended=False)
    assert stopped.outcomes == {"t.py::a": "passed", "t.py::b": "crashed"}
    assert stopped.unfinished == ["t.py::c"] and stopped.selected == 4
    assert stopped.counts_line() == "1 passed, 0 failed, 1 crashed, 0 skipped, 1 collection errors"
    assert stopped.messages["t.py::b"] == "its worker gw1 died"
    assert stopped.collect_errors == ["t2.py: ImportError: x"]
    ended = check.read_report(report, process_ended=True)  # the process died under t.py::c
    assert ended.outcomes["t.py::c"] == "crashed" and ended.unfinished == []


def test_triton_compilations_are_counted_from_a_fresh_cache(tmp_path):
    from fastgp import check

    for folder, name in (("a1", "_penalty_kernel"), ("b2", "_pass_kernel"), ("c3", "triton_poi_fused_add_0")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / f"{name}.cubin").write_bytes(b"")
        (tmp_path / folder / f"{name}.json").write_text("{}")
    (tmp_path / "d4").mkdir()
    (tmp_path / "d4" / "cuda_utils.so").write_bytes(b"")  # a launcher stub, not a kernel
    assert check.count_compilations(tmp_path) == (2, 1)
    assert check.count_compilations(tmp_path / "none") == (0, 0)


def test_bench_times_the_triton_backend_on_cuda_and_skips_compile_on_request(monkeypatch):
    import contextlib

    import fastgp
    from bench import harness

    def setup():
        return harness.Setup(contenders={"fastgp": fastgp.get_backend, "reference": lambda: "ref",
                                         "compile": lambda: "compiled"}, copy_bytes=8)

    on_cpu = setup()
    harness._add_triton_contender(on_cpu, harness.Settings.for_mode(True, device="cpu"))
    assert harness.TRITON not in on_cpu.contenders  # the CPU has one fastgp contender
    # On CUDA, the same fastgp call with the Triton backend forced around it.
    forced = []

    @contextlib.contextmanager
    def use_backend(name):
        forced.append(name)
        yield

    monkeypatch.setattr(fastgp.backend, "unavailable_reason", lambda name, device_type: None)
    monkeypatch.setattr(fastgp, "use_backend", use_backend)
    on_cuda = setup()
    harness._add_triton_contender(on_cuda, harness.Settings.for_mode(True, device="cuda"))
    on_cuda.contenders[harness.TRITON]()
    assert forced == ["triton"]
    monkeypatch.setattr(fastgp.backend, "unavailable_reason", lambda name, device_type: "no GPU here")
    unavailable = setup()
    harness._add_triton_contender(unavailable, harness.Settings.for_mode(True, device="cuda"))
    assert unavailable.contenders[harness.TRITON] == harness.Unsupported("no GPU here", "unavailable")
    # --no-compile: the compile contender is recorded as skipped, never called.
    settings = harness.Settings.for_mode(True, device="cpu")
    settings.compile = False
    record = {"contenders": {}}
    timed, _ = harness._warm_contenders(unavailable, settings, harness.Clock("cpu"), record, log=print)
    assert sorted(timed) == ["fastgp", "reference"]
    assert record["contenders"]["compile"] == {"status": "skipped", "reason": "--no-compile"}
    assert record["contenders"]["triton"] == {"status": "unavailable", "reason": "no GPU here"}


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
