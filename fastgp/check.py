"""Build, test, sanitize and benchmark fastgp on this machine in one command (the GPU check).

    scripts/gpu-check OUT_DIR                   # the same as:
    python -m fastgp.check --device cuda --out OUT_DIR

Made for a fresh GPU machine that already has torch, Triton, nvcc and pytest but no network, and
for ONE run of about 8 minutes. Everything counts against one budget (``--budget``, 420 s by
default): the probes, ``fastgp info``, each phase, and the grace given to a phase stopped at its
time limit. Phases, in this order:

1. probe      versions, the GPU and its architecture, nvcc, compute-sanitizer, cores (≤ 60 s: a hang, not the usual few seconds);
2. build      ``pip install --no-index --no-build-isolation --no-deps -v -e .`` with MAX_JOBS = all
              cores and the CUDA kernels compiled for the visible GPU's architecture only, then
              ``python -m fastgp info`` (≤ 200 s together);
3. tests      only what needs the GPU: the cases marked ``cuda`` and ``tests/triton_kernels``, in
              the order: the Triton custom-op registration / opcheck / torch.compile tests, the
              extension's cases, the reference's, the Triton cases; spread over pytest-xdist
              workers with ``--dist load`` (``--jobs``), or without pytest-xdist over pytest
              processes side by side (``--parallel processes``), each on cores / workers threads;
              every time left after the later phases' reserves;
4. sanitizer  a curated slice (``SANITIZER_SLICE``: one correctness and one edge case per op and
              dtype family on ``cuda-extension``) under ``compute-sanitizer --tool memcheck``, then
              the block reductions of penalty, spectral and correction (``RACECHECK_SLICE``) under
              ``--tool racecheck``, when a probe shows that the tool works here (75 s reserved);
5. bench      ``python -m bench --device cuda --quick --no-compile``: fastgp (the extension and
              the Triton backend) against eager PyTorch for every case (60 s reserved).

Every log is streamed to OUT_DIR as it is written, and summary.txt is rewritten after every phase
(and every 10 s of the tests phase), so an outer kill loses at most the running phase's tail.
Test results are counted from pytest's own reports (this file is also the pytest plugin that
writes them, one JSON line per report), never from lines a test prints; a test that kills its
process is named and counted as crashed, once. OUT_DIR holds at most 8 files: summary.txt,
environment.txt, build.log, tests.log, sanitizer.log, bench.log, bench-<gpu>.md, bench-<gpu>.json.
A phase that cannot run here (no GPU, no compute-sanitizer, no time left) says so in one line and
is skipped. Exit status 0 when every phase that ran passed, 1 otherwise, 2 for bad arguments.

Only the standard library is imported here (torch is probed in a subprocess), so that this file
also runs as a plain file before fastgp is built: ``python3 fastgp/check.py ...``.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a file (scripts/gpu-check does): its folder fastgp/ is then on sys.path, and
    # fastgp/select.py would shadow the standard library's select module.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]

import argparse
import importlib.util
import json
import math
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_FILES = 8
BACKENDS = ("extension", "triton", "reference")
PHASES = ("probe", "build", "tests", "sanitizer", "bench")
DEFAULT_BUDGET = 420.0  # well inside the ~8 minutes one GPU command gets

# Seconds. CAPS: the most a phase may take; RESERVES: what the phases before a phase leave for
# it (only for phases that will run). The tests phase takes everything else.
CAPS = {"probe": 60.0, "build": 200.0, "sanitizer": 75.0}
RESERVES = {"sanitizer": 75.0, "bench": 60.0}
INFO_SECONDS = 20.0  # `python -m fastgp info` after the build, inside the build's share
SANITIZER_PROBE_SECONDS = 25.0
RACECHECK_SECONDS = 25.0  # kept for the racecheck pass inside the sanitizer's share
TERM_GRACE, KILL_GRACE = 3.0, 2.0  # a command stopped at its limit: TERM, wait, KILL, wait
GRACE = TERM_GRACE + KILL_GRACE  # taken off every command's limit, so the grace is in the budget
MIN_COMMAND = 10.0  # a command with less time than this left is skipped, not started
TICK = 10.0  # the tests phase rewrites the provisional summary this often

PROBE = r"""
import json, os, platform
info = {"python": platform.python_version(), "cores": len(os.sched_getaffinity(0))}
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["gpu_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if info["gpu_count"]:
        info["gpu"] = torch.cuda.get_device_name(0)
        info["arch"] = "%d.%d" % torch.cuda.get_device_capability(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
except Exception as error:
    info["torch_error"] = f"{type(error).__name__}: {error}"
try:
    import triton
    info["triton"] = triton.__version__
except Exception as error:
    info["triton"] = None
try:
    import pytest
    info["pytest"] = pytest.__version__
except Exception:
    info["pytest"] = None
import importlib.util
info["xdist"] = importlib.util.find_spec("xdist") is not None
print(json.dumps(info))
"""

SANITIZER_PROBE = "import torch; x = torch.ones(1024, device='cuda'); print('probe', (x * 2).sum().item())"

# The sanitizer's slice, by node id: for every op family on cuda-extension, its correctness test
# in float32, float64 and a 16-bit type, and its edge cases (strided / channels_last layouts,
# empty images, NaN/Inf, ties, a zero matrix). tests/test_gpu_check.py checks that every id is
# still collected; an id that no longer is gets named in the summary, not silently dropped.
SANITIZER_SLICE = (
    "tests/test_penalty_ops.py::test_penalty_head_matches_reference[cuda-extension-1.0-False-contiguous-shape0-torch.float32]",
    "tests/test_penalty_ops.py::test_penalty_head_matches_reference[cuda-extension-1.0-False-contiguous-shape0-torch.float64]",
    "tests/test_penalty_ops.py::test_penalty_head_matches_reference[cuda-extension-1.0-False-contiguous-shape0-torch.bfloat16]",
    "tests/test_penalty_ops.py::test_penalty_head_matches_reference[cuda-extension-0.0-True-strided-shape12-torch.bfloat16]",
    "tests/test_penalty_ops.py::test_penalty_head_half_accumulates_in_float32[cuda-extension-torch.float16]",
    "tests/test_penalty_ops.py::test_interpolate_matches_reference[cuda-extension-contiguous-shape0-torch.float32]",
    "tests/test_penalty_ops.py::test_interpolate_matches_reference[cuda-extension-contiguous-shape0-torch.float64]",
    "tests/test_penalty_ops.py::test_interpolate_random_matches_reference_stream[cuda-extension-contiguous-shape1-torch.float16]",
    "tests/test_penalty_ops.py::test_interpolate_random_matches_reference_stream[cuda-extension-strided-shape10-torch.bfloat16]",
    "tests/test_spectral_ops.py::test_power_iteration_matches_reference[cuda-extension-0-(7, 5)-torch.float32]",
    "tests/test_spectral_ops.py::test_power_iteration_matches_reference[cuda-extension-0-(7, 5)-torch.float64]",
    "tests/test_spectral_ops.py::test_power_iteration_matches_reference[cuda-extension-0-(7, 5)-torch.bfloat16]",
    "tests/test_spectral_ops.py::test_power_iteration_matches_reference[cuda-extension-0-(1, 9)-torch.float16]",
    "tests/test_spectral_ops.py::test_power_iteration_zero_matrix_uses_eps[cuda-extension]",
    "tests/test_spectral_ops.py::test_grouped_matches_single[cuda-extension-2-torch.float32]",
    "tests/test_spectral_ops.py::test_grouped_empty_list[cuda-extension]",
    "tests/test_augment_ops.py::test_translate_and_adjoint_match_reference[cuda-extension-plain-zeros-contiguous-torch.float32]",
    "tests/test_augment_ops.py::test_translate_and_adjoint_match_reference[cuda-extension-plain-zeros-contiguous-torch.float64]",
    "tests/test_augment_ops.py::test_translate_and_adjoint_match_reference[cuda-extension-plain-zeros-channels_last-torch.float16]",
    "tests/test_augment_ops.py::test_translate_and_adjoint_match_reference[cuda-extension-cutout-replicate-strided-torch.bfloat16]",
    "tests/test_augment_ops.py::test_image_without_pixels_gives_empty_output[cuda-extension-shape0-reflect]",
    "tests/test_augment_ops.py::test_extreme_shifts_equal_shifts_of_the_image_size[cuda-extension-replicate]",
    "tests/test_augment_ops.py::test_cutout_keeps_nan_and_inf_as_the_reference[cuda-extension-reflect]",
    "tests/test_combine.py::test_pixelwise_matches_reference[cuda-extension-0-mean-contiguous-shape0-torch.float32]",
    "tests/test_combine.py::test_pixelwise_matches_reference[cuda-extension-0-mean-contiguous-shape0-torch.float64]",
    "tests/test_combine.py::test_pixelwise_matches_reference[cuda-extension-0-mean-channels_last-shape1-torch.float16]",
    "tests/test_combine.py::test_pixelwise_matches_reference[cuda-extension-4-or-channels_last-shape1-torch.bfloat16]",
    "tests/test_select.py::test_far_select_matches_reference[cuda-extension-contiguous-shape0-torch.float32]",
    "tests/test_select.py::test_far_select_matches_reference[cuda-extension-contiguous-shape0-torch.float64]",
    "tests/test_select.py::test_far_select_matches_reference[cuda-extension-contiguous-shape0-torch.bfloat16]",
    "tests/test_select.py::test_far_select_matches_definition[cuda-extension-40-torch.float16]",
    "tests/test_select.py::test_far_batch_matches_reference[cuda-extension-channels_last-torch.float16]",
    "tests/test_correction.py::test_nearest_distance_matches_reference[cuda-extension-1-contiguous-torch.float32]",
    "tests/test_correction.py::test_nearest_distance_matches_reference[cuda-extension-1-contiguous-torch.float64]",
    "tests/test_correction.py::test_nearest_distance_matches_reference[cuda-extension-1-contiguous-torch.bfloat16]",
    "tests/test_correction.py::test_nearest_distance_exact_ties_take_the_lowest_index[cuda-extension-1000-torch.float16]",
    "tests/test_topk.py::test_same_set_as_torch_topk_on_distinct_scores[cuda-extension-shape0]",
    "tests/test_topk.py::test_ties_by_ascending_index_and_nan_last[cuda-extension]",
)
# The kernels with block (shared-memory) reductions, for racecheck: the penalty head's row norms,
# the spectral power iteration, the correction's nearest distance.
RACECHECK_SLICE = (
    "tests/test_penalty_ops.py::test_penalty_head_matches_reference[cuda-extension-1.0-False-contiguous-shape0-torch.float32]",
    "tests/test_penalty_ops.py::test_penalty_head_matches_reference[cuda-extension-0.0-True-strided-shape12-torch.bfloat16]",
    "tests/test_spectral_ops.py::test_power_iteration_matches_reference[cuda-extension-0-(7, 5)-torch.float32]",
    "tests/test_spectral_ops.py::test_grouped_matches_single[cuda-extension-2-torch.float32]",
    "tests/test_correction.py::test_nearest_distance_matches_reference[cuda-extension-1-contiguous-torch.float32]",
    "tests/test_correction.py::test_nearest_distance_exact_ties_take_the_lowest_index[cuda-extension-1000-torch.float16]",
)


class Interrupted(BaseException):
    """SIGTERM or SIGINT from outside: stop the running command, write the summary, exit."""


# --------------------------------------------------------------------------------------------
# Running commands with a time limit, streaming their output into OUT_DIR
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int | None  # None: stopped at its time limit
    seconds: float
    output: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run(cmd: list[str], log: Path | None, timeout: float, env: dict | None = None, header: str = "",
        tick=None) -> Result:
    """Run ``cmd`` from the repository root in its own process group, its output (stdout and
    stderr together) going straight into ``log`` (appended) as it comes, and return it. At
    ``timeout`` the whole group is stopped (TERM, then KILL), so child processes (pytest workers,
    nvcc) cannot outlive it; the caller takes GRACE off its share to pay for that. ``tick`` is
    called every TICK seconds while the command runs."""
    return run_all([cmd], [env], log, timeout, header, tick)[0]


def run_all(cmds: list[list[str]], envs: list[dict | None], log: Path | None, timeout: float, header: str = "",
            tick=None) -> list[Result]:
    """``run`` for several commands at once, side by side, into the same log; one Result each
    (every one holding the log's whole section). At ``timeout`` all those still running are
    stopped together, within one GRACE."""
    start = time.monotonic()
    stream = open(log, "a+", encoding="utf-8", errors="replace") if log else tempfile.TemporaryFile("w+")
    with stream:
        stream.write("".join(f"$ {' '.join(cmd)}\n" for cmd in cmds) + header)
        stream.flush()
        offset = stream.tell()
        processes = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                      start_new_session=True) for cmd, env in zip(cmds, envs)]
        ended: list[float | None] = [None] * len(processes)
        last_tick = start
        try:
            while True:
                now = time.monotonic()
                for i, process in enumerate(processes):
                    if ended[i] is None and process.poll() is not None:
                        ended[i] = now - start
                if all(e is not None for e in ended):
                    break
                if now - start >= timeout:
                    _stop_groups([p for p, e in zip(processes, ended) if e is None])
                    break
                if tick is not None and now - last_tick >= TICK:
                    last_tick = now
                    tick()
                time.sleep(min(0.2, max(0.0, timeout - (now - start))))
        except BaseException:  # Interrupted: leave no process behind
            _stop_groups([p for p, e in zip(processes, ended) if e is None])
            raise
        seconds = time.monotonic() - start
        stream.seek(offset)
        output = stream.read()
        for index, (process, end) in enumerate(zip(processes, ended)):
            status = f"exit status {process.returncode}" if end is not None else f"stopped at its time limit of {timeout:.0f} s"
            name = f" (process {index + 1} of {len(cmds)})" if len(cmds) > 1 else ""
            stream.write(f"\n[{status} after {end if end is not None else seconds:.1f} s{name}]\n")
        stream.write("\n")
    return [Result(process.returncode if end is not None else None, end if end is not None else seconds, output)
            for process, end in zip(processes, ended)]


def _stop_groups(processes: list[subprocess.Popen]) -> None:
    """TERM every process group, wait TERM_GRACE in all, KILL those left, wait KILL_GRACE."""
    for sig, grace in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, KILL_GRACE)):
        left = []
        for process in processes:
            try:
                os.killpg(process.pid, sig)
                left.append(process)
            except ProcessLookupError:
                continue
        end = time.monotonic() + grace
        for process in left:
            try:
                process.wait(timeout=max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        processes = [p for p in left if p.poll() is None]
        if not processes:
            return


# --------------------------------------------------------------------------------------------
# The pytest plugin: this module, loaded into pytest with -p (see Check.pytest_env), writes one
# JSON line per test report to $FASTGP_CHECK_REPORT, selects and orders the GPU tests
# ($FASTGP_CHECK_SELECT), and does nothing when neither is set.
# --------------------------------------------------------------------------------------------

_report_file = None
_is_worker = False


def pytest_configure(config):
    global _report_file, _is_worker
    # A pytest-xdist worker: the controller reports its tests; the first worker reports what the
    # selection kept (the controller collects nothing).
    _is_worker = hasattr(config, "workerinput")
    path = os.environ.get("FASTGP_CHECK_REPORT")
    if path and (not _is_worker or config.workerinput.get("workerid") == "gw0"):
        _report_file = open(path, "a", encoding="utf-8")


def _emit(record: dict, worker_too: bool = False) -> None:
    if _report_file is not None and (worker_too or not _is_worker):
        _report_file.write(json.dumps(record) + "\n")
        _report_file.flush()  # a kill loses nothing written before it


def pytest_collection_modifyitems(session, config, items):
    mode = os.environ.get("FASTGP_CHECK_SELECT")
    shard = os.environ.get("FASTGP_CHECK_SHARD")  # "i/n": this process runs every n-th test from i
    if not (mode or shard):
        return
    keep = list(items)
    if mode == "gpu":
        keep = [item for item in items
                if item.get_closest_marker("cuda") or "triton_kernels" in item.nodeid.partition("::")[0]]
    elif mode:  # "ids:<file with one node id a line>"
        wanted = Path(mode[len("ids:"):]).read_text(encoding="utf-8").splitlines()
        keep = [item for item in items if item.nodeid in set(wanted)]
        found = {item.nodeid for item in keep}
        for nodeid in wanted:
            if nodeid not in found:
                _emit({"missing": nodeid})
    if mode:
        keep.sort(key=lambda item: gpu_priority(item.nodeid))  # stable: file order within a group
    if shard:  # round robin over the ordered tests: every process follows the same order
        index, count = map(int, shard.split("/"))
        keep = keep[index::count]
    kept = set(map(id, keep))
    config.hook.pytest_deselected(items=[item for item in items if id(item) not in kept])
    items[:] = keep


def pytest_collection_finish(session):
    _emit({"selected": len(session.items), "shard": os.environ.get("FASTGP_CHECK_SHARD")}, worker_too=True)


def pytest_collectreport(report):
    if report.failed:
        _emit({"collect_error": report.nodeid, "message": _short(report.longrepr)})


def pytest_runtest_logstart(nodeid, location):
    _emit({"start": nodeid})


def pytest_runtest_logreport(report):
    record = {"id": report.nodeid, "when": report.when, "outcome": report.outcome}
    if hasattr(report, "wasxfail"):
        record["xfail"] = True
    node = getattr(report, "node", None)  # pytest-xdist: the worker that ran it
    worker = getattr(getattr(node, "gateway", None), "id", None)
    if worker:
        record["worker"] = worker
    if report.failed:
        record["message"] = _short(report.longrepr)
    _emit(record)


def _short(longrepr) -> str:
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if crash is not None else (lines[-1] if lines else ""))[:200]


def gpu_priority(nodeid: str) -> int:
    """The order of the GPU tests: 0, what has never run compiled (Triton custom-op registration,
    opcheck and torch.compile of the Triton ops); 1, the extension's and other CUDA cases; 2, the
    reference's; 3, the Triton backend's cases and the Triton kernel tests."""
    path, _, name = nodeid.partition("::")
    tokens = _param_tokens(name)
    triton = "triton_kernels" in path or "triton" in tokens
    if triton and re.search(r"opcheck|compile|regist", name):
        return 0
    if triton:
        return 3
    return 2 if "reference" in tokens else 1


# --------------------------------------------------------------------------------------------
# Counting test results per family, device and backend, from the plugin's reports
# --------------------------------------------------------------------------------------------


def _param_tokens(name: str) -> set[str]:
    params = name[name.find("[") + 1 : name.rfind("]")] if "[" in name else ""
    return set(re.split(r"[-_,\s/]+", params.lower()))


def classify(classname: str, name: str, default_device: str = "cpu") -> tuple[str, str]:
    """(device, backend) of a test from its id: the parameters in brackets name them (``cuda``,
    ``extension``/``triton``/``reference``), else the device is ``default_device`` (``cuda`` for
    the GPU selection, whose tests all run on the GPU); tests under a Triton test folder are
    Triton's."""
    tokens = _param_tokens(name)
    in_triton_folder = "triton" in classname.lower()
    device = "cuda" if "cuda" in tokens else "cpu" if "cpu" in tokens else default_device
    backend = next((b for b in BACKENDS if b in tokens), None)
    if backend is None:
        backend = "triton" if in_triton_folder else "other"
    return device, backend


def family_of(nodeid: str) -> str:
    """The op family of a test, from its file: tests/test_penalty_ops.py and
    tests/triton_kernels/test_triton_penalty.py are both ``penalty``."""
    stem = Path(nodeid.partition("::")[0]).stem
    for prefix in ("test_", "triton_"):
        stem = stem[len(prefix):] if stem.startswith(prefix) else stem
    return stem.split("_")[0] or "other"


OUTCOMES = ("passed", "failed", "crashed", "skipped")


@dataclass
class TestRun:
    """What one pytest run did, test by test, from the plugin's reports."""

    outcomes: dict[str, str] = field(default_factory=dict)  # node id -> passed/failed/crashed/skipped
    messages: dict[str, str] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)  # started, never reported
    missing: list[str] = field(default_factory=list)  # asked for by id, not collected
    collect_errors: list[str] = field(default_factory=list)
    selected: int | None = None

    def total(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)

    def ids(self, outcome: str) -> list[str]:
        return [i for i, o in self.outcomes.items() if o == outcome]

    @property
    def clean(self) -> bool:
        return not (self.total("failed") or self.total("crashed") or self.unfinished or self.collect_errors)

    def counts_line(self) -> str:
        parts = [f"{self.total(o)} {o}" for o in OUTCOMES if o in ("passed", "failed", "skipped") or self.total(o)]
        if self.collect_errors:
            parts.append(f"{len(self.collect_errors)} collection errors")
        return ", ".join(parts)


def read_report(path: Path, process_ended: bool) -> TestRun:
    """Reduce the plugin's JSON lines to one outcome per test. A test is done when its teardown
    (or pytest-xdist's crash report, ``when == "???"``) is reported. A started test that never
    got there crashed its process when the process ended by itself (``process_ended``), and was
    still running when it was stopped otherwise."""
    result = TestRun()
    reports: dict[str, list[dict]] = {}
    started: list[str] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            if "start" in record:
                started.append(record["start"])
            elif "id" in record:
                reports.setdefault(record["id"], []).append(record)
            elif "missing" in record:
                result.missing.append(record["missing"])
            elif "collect_error" in record:  # every pytest-xdist worker reports the same one
                error = f"{record['collect_error']}: {record.get('message', '')}"
                if error not in result.collect_errors:
                    result.collect_errors.append(error)
            elif "selected" in record:
                result.selected = record["selected"]
    for nodeid in dict.fromkeys(started + list(reports)):
        got = reports.get(nodeid, [])
        failure = next((r for r in got if r["outcome"] == "failed"), None)
        if any(r["when"] == "???" for r in got):
            outcome = "crashed"
            worker = next((r.get("worker") for r in got if r.get("worker")), None)
            result.messages[nodeid] = f"its worker{' ' + worker if worker else ''} died"
        elif not any(r["when"] == "teardown" for r in got):
            if not process_ended:
                result.unfinished.append(nodeid)
                continue
            outcome = "crashed"
            result.messages[nodeid] = "the test process died while it ran"
        elif failure is not None:
            outcome = "failed"
            result.messages[nodeid] = failure.get("message", "")
        elif any(r["outcome"] == "skipped" for r in got):
            outcome = "skipped"
        else:
            outcome = "passed"
        result.outcomes[nodeid] = outcome
    return result


def merge_runs(runs: list[TestRun]) -> TestRun:
    """One TestRun of several pytest processes' (side by side, each its own tests)."""
    total = TestRun()
    for part in runs:
        total.outcomes.update(part.outcomes)
        total.messages.update(part.messages)
        total.unfinished += part.unfinished
        total.missing += part.missing
        total.collect_errors += part.collect_errors
        if part.selected is not None:
            total.selected = (total.selected or 0) + part.selected
    return total


def family_table(run: TestRun, default_device: str) -> list[str]:
    """passed/failed/skipped per op family (rows) and device-backend (columns); a crashed test
    counts as failed here and is named below the table."""
    cells: dict[tuple[str, str], dict[str, int]] = {}
    for nodeid, outcome in run.outcomes.items():
        path, _, name = nodeid.partition("::")
        device, backend = classify(path, name, default_device)
        cell = cells.setdefault((family_of(nodeid), f"{device}-{backend}"), dict.fromkeys(OUTCOMES, 0))
        cell["failed" if outcome == "crashed" else outcome] += 1
    if not cells:
        return []
    columns = sorted({c for _, c in cells}, key=lambda c: (c.startswith("cpu"), c.endswith("other"), c))
    rows = sorted({f for f, _ in cells})
    width = max(17, *(len(c) + 2 for c in columns))
    lines = [("  family      " + "".join(f"{c:<{width}}" for c in columns)).rstrip() + "   (passed/failed/skipped)"]
    for family in rows:
        text = []
        for column in columns:
            cell = cells.get((family, column))
            text.append(f"{cell['passed']}/{cell['failed']}/{cell['skipped']}" if cell else "—")
        lines.append((f"  {family:<11} " + "".join(f"{t:<{width}}" for t in text)).rstrip())
    return lines


def named_problems(run: TestRun, limit: int = 10) -> list[str]:
    """One line per crashed, failed or unfinished test (crashes first), at most ``limit``."""
    lines = [f"  CRASHED {i}: {run.messages.get(i, '')}" for i in run.ids("crashed")]
    lines += [f"  FAILED {i}: {run.messages.get(i, '')}".rstrip(": ") for i in run.ids("failed")]
    lines += [f"  UNFINISHED {i} (running when the time limit stopped it)" for i in run.unfinished]
    lines += [f"  COLLECTION ERROR {e}"[:240] for e in run.collect_errors]
    more = len(lines) - limit
    return lines[:limit] + ([f"  ... and {more} more (tests.log)"] if more > 0 else [])


def count_compilations(cache: Path) -> tuple[int, int]:
    """Triton kernels compiled into a fresh cache folder: (fastgp's, torch.compile's), one per
    folder holding a GPU binary; Inductor names its generated kernels ``triton_*``."""
    ours = inductor = 0
    if cache.is_dir():
        for binary in cache.rglob("*"):
            if binary.suffix in (".cubin", ".hsaco", ".spv") and binary.is_file():
                if binary.stem.startswith("triton_"):
                    inductor += 1
                else:
                    ours += 1
    return ours, inductor


# --------------------------------------------------------------------------------------------
# The phases
# --------------------------------------------------------------------------------------------


class Check:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out).resolve()
        self.start = time.monotonic()
        self.deadline = self.start + args.budget
        self.tmp = Path(tempfile.mkdtemp(prefix="fastgp-check-"))
        self.python = sys.executable
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.probe: dict = {}
        self.times: dict[str, float] = {}
        self.lines: dict[str, list[str]] = {}  # summary lines per phase
        self.ok: dict[str, bool] = {}  # per phase that ran: passed?
        self.running: str | None = None

    # -- helpers --------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"gpu-check: {text}", flush=True)

    def will_run(self, phase: str) -> bool:
        """Whether a phase will run (so the phases before it keep its reserve)."""
        if phase == "sanitizer":
            return not self.args.skip_sanitizer and self.gpu and bool(self.probe.get("compute_sanitizer"))
        if phase == "bench":
            return not self.args.skip_bench and (self.args.device == "cpu" or self.gpu)
        return not (phase == "build" and self.args.skip_build)

    def phase_end(self, phase: str) -> float:
        """When ``phase`` must be over: its cap, and the reserves of the later phases that will
        run kept out of what the budget has left."""
        later = PHASES[PHASES.index(phase) + 1 :]
        reserve = sum(RESERVES.get(p, 0.0) for p in later if self.will_run(p))
        now = time.monotonic()
        return now + max(0.0, min(CAPS.get(phase, math.inf), self.deadline - now - reserve))

    def run_until(self, end: float, cmd: list[str], log: Path | None, env: dict, header: str = "",
                  tick=None, floor: float = MIN_COMMAND) -> Result | None:
        """``run`` with what is left until ``end``, less the kill grace; None (not started) when
        that is under ``floor`` seconds."""
        limit = end - time.monotonic() - GRACE
        if limit < floor:
            return None
        return run(cmd, log, limit, env, header, tick)

    def skip(self, phase: str, reason: str) -> None:
        self.lines[phase] = [f"{phase}: skipped ({reason})"]
        self.say(self.lines[phase][0])

    def no_time(self, phase: str) -> None:
        self.skip(phase, f"no time left in the {self.args.budget:.0f} s budget")
        self.ok[phase] = False

    @property
    def gpu(self) -> bool:
        return self.probe.get("gpu_count", 0) > 0

    def pytest_env(self, report: Path, select: str | None) -> dict:
        """The environment of a pytest run with this file as its plugin (-p fastgp_check_plugin)."""
        plugin_dir = self.tmp / "plugin"
        if not plugin_dir.exists():
            plugin_dir.mkdir()
            shutil.copy(__file__, plugin_dir / "fastgp_check_plugin.py")
        env = dict(self.env, FASTGP_CHECK_REPORT=str(report))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin_dir), str(REPO), env.get("PYTHONPATH")) if p)
        env.pop("FASTGP_CHECK_SELECT", None)
        if select:
            env["FASTGP_CHECK_SELECT"] = select
        return env

    # -- 1. probe -------------------------------------------------------------------------
    def phase_probe(self) -> None:
        t0 = time.monotonic()
        end = self.phase_end("probe")
        result = self.run_until(end, [self.python, "-c", PROBE], None, self.env, floor=1.0)
        try:
            self.probe = json.loads(result.output.strip().splitlines()[-1])
        except (AttributeError, ValueError, IndexError):
            why = "no time left" if result is None else (
                f"stopped at its limit of {result.seconds:.0f} s" if result.timed_out else result.output.strip()[-300:])
            self.probe = {"probe_error": why}
        self.probe["nvcc"] = self._version_line(end, ["nvcc", "--version"], r"release [\d.]+")
        self.probe["compute_sanitizer"] = shutil.which("compute-sanitizer")
        env_file = self.out / "environment.txt"
        with open(env_file, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.probe, indent=1) + "\n\n")
        if shutil.which("nvidia-smi"):
            self.run_until(end, ["nvidia-smi"], env_file, self.env, floor=1.0)
        self.times["probe"] = time.monotonic() - t0
        gpu = (f"{self.probe['gpu']} (sm_{self.probe['arch'].replace('.', '')}, "
               f"{self.probe.get('gpu_memory_gib')} GiB)") if self.gpu else "none visible"
        self.lines["probe"] = [
            f"machine: {self.probe.get('cores')} cores, GPU {gpu}; torch {self.probe.get('torch')} "
            f"(CUDA {self.probe.get('torch_cuda') or 'none'}), Triton {self.probe.get('triton') or 'none'}, "
            f"nvcc {self.probe['nvcc'] or 'none'}, Python {self.probe.get('python')}"
        ]
        if "probe_error" in self.probe:  # torch did not answer: the GPU phases cannot be planned
            self.lines["probe"].append(f"probe: FAILED, torch did not answer: {self.probe['probe_error'][:200]}")
            self.ok["probe"] = False
        for line in self.lines["probe"]:
            self.say(line)
        if self.args.device == "cuda" and not self.gpu:
            self.say("no CUDA GPU is visible: the CUDA phases are skipped, the CPU ones run")

    def _version_line(self, end: float, cmd: list[str], pattern: str) -> str | None:
        if shutil.which(cmd[0]) is None:
            return None
        result = self.run_until(end, cmd, None, self.env, floor=1.0)
        match = re.search(pattern, result.output) if result else None
        return match.group(0).replace("release ", "") if match else None

    # -- 2. build -------------------------------------------------------------------------
    def phase_build(self) -> None:
        if self.args.skip_build:
            return self.skip("build", "--skip-build: testing the fastgp already built in this tree")
        cores = str(self.probe.get("cores") or os.cpu_count() or 1)
        env = dict(self.env, MAX_JOBS=cores)
        with_cuda = self.args.device == "cuda" and self.gpu
        if with_cuda:  # the visible GPU's architecture only (unless the caller named others)
            env["FASTGP_BUILD_CUDA"] = "1"
            env["TORCH_CUDA_ARCH_LIST"] = env.get("TORCH_CUDA_ARCH_LIST") or self.probe["arch"]
            what = f"CPU + CUDA kernels for TORCH_CUDA_ARCH_LIST={env['TORCH_CUDA_ARCH_LIST']}"
        else:
            what = "the kernels setup.py chooses without a GPU (CPU)"
        self.say(f"build: {what}, MAX_JOBS={cores} (log: build.log) ...")
        cmd = [self.python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "--no-deps", "-v", "-e", "."]
        end = self.phase_end("build")
        result = self.run_until(end - INFO_SECONDS, cmd, self.out / "build.log", env)
        if result is None:
            return self.no_time("build")
        self.times["build"] = result.seconds
        if result.returncode == 0:
            info = self.run_until(end, [self.python, "-m", "fastgp", "info"], self.out / "environment.txt", self.env,
                                  floor=1.0)
            built = re.search(r"extension CUDA kernels: ([a-z ]+)", info.output) if info else None
            line = f"build: ok in {result.seconds:.0f} s ({what}; extension CUDA kernels: {built.group(1) if built else '?'})"
            self.ok["build"] = not with_cuda or bool(built and built.group(1) == "built")
        elif result.timed_out:
            line = f"build: TIMED OUT after {result.seconds:.0f} s ({what}; see build.log)"
            self.ok["build"] = False
        else:
            error = next((l for l in reversed(result.output.splitlines()) if "error" in l.lower()), "see build.log")
            line = f"build: FAILED in {result.seconds:.0f} s: {error.strip()[:200]}"
            self.ok["build"] = False
        self.lines["build"] = [line]
        self.say(line)

    # -- 3. tests -------------------------------------------------------------------------
    def phase_tests(self) -> None:
        t0 = time.monotonic()
        targets = self.args.tests_only or ["tests"]
        workers, how = self.test_workers()
        cores = int(self.probe.get("cores") or os.cpu_count() or 1)
        threads = str(max(1, cores // workers))
        select = "gpu" if self.args.device == "cuda" and not self.args.tests_only else None
        base = [self.python, "-m", "pytest", *targets, "-v", "-rfE", "-p", "no:cacheprovider", "-p", "fastgp_check_plugin"]
        # xdist: one pytest, its workers fed with --dist load; processes: side by side, each
        # running every n-th test of the same ordered selection, each with its own report.
        shards = range(workers) if how == "processes" else [None]
        reports = [self.tmp / f"tests-{i if i is not None else 'all'}.jsonl" for i in shards]
        cmds, envs = [], []
        for shard, report in zip(shards, reports):
            env = self.pytest_env(report, select)
            # Every worker on its share of the cores (torch reads these at start-up), and a
            # fresh Triton cache, so that its new entries are the compilations this run did.
            env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            env["TRITON_CACHE_DIR"] = str(self.tmp / "triton-cache")
            env["TORCHINDUCTOR_CACHE_DIR"] = str(self.tmp / "inductor-cache")
            if shard is not None:
                env["FASTGP_CHECK_SHARD"] = f"{shard}/{workers}"
            cmds.append(base + (["-n", str(workers), "--dist", "load"] if how == "xdist" else []))
            envs.append(env)
        what = "the cuda-marked cases and tests/triton_kernels" if select else " ".join(targets)
        spread = {"xdist": f" on {workers} pytest-xdist workers (--dist load)",
                  "processes": f" in {workers} pytest processes side by side (every {workers}th test each)"}.get(how, "")
        self.say(f"tests: {what}{spread}, {threads} threads each (log: tests.log) ...")
        triton_cache = envs[0]["TRITON_CACHE_DIR"]

        def progress() -> None:
            tests = merge_runs([read_report(r, process_ended=False) for r in reports])
            self.lines["tests"] = self.tests_lines(tests, None, time.monotonic() - t0, triton_cache, select)
            self.write_summary()

        limit = self.phase_end("tests") - time.monotonic() - GRACE
        if limit < MIN_COMMAND:
            return self.no_time("tests")
        results = run_all(cmds, envs, self.out / "tests.log", limit, tick=progress)
        tests = merge_runs([read_report(r, process_ended=not res.timed_out) for r, res in zip(reports, results)])
        failing = [res.returncode for res in results if res.returncode]
        result = Result(None if any(res.timed_out for res in results) else (failing[0] if failing else 0),
                        max(res.seconds for res in results), "")
        self.times["tests"] = result.seconds
        self.lines["tests"] = self.tests_lines(tests, result, result.seconds, triton_cache, select)
        self.ok["tests"] = tests.clean and result.returncode == 0 and bool(tests.outcomes)
        self.say(self.lines["tests"][0])

    def tests_lines(self, tests: TestRun, result: Result | None, seconds: float, triton_cache: str,
                    select: str | None) -> list[str]:
        done = len(tests.outcomes) + len(tests.unfinished)
        of = f" of {tests.selected} selected" if tests.selected is not None else ""
        head = f"tests: {tests.counts_line()}{of} in {seconds:.0f} s"
        if result is None:
            head += f" (RUNNING: provisional, {len(tests.unfinished)} running now)"
        elif result.timed_out:
            not_run = f", {tests.selected - done} not run" if tests.selected is not None else ""
            head += f"; TIMED OUT at its limit: {len(tests.unfinished)} stopped while running{not_run}"
        elif result.returncode not in (0, 1) and not tests.total("crashed"):
            head += f"; pytest exit status {result.returncode} (tests.log)"
        ours, inductor = count_compilations(Path(triton_cache))
        compiled = (f"  Triton compilations: {ours} of fastgp's kernels, {inductor} generated by torch.compile "
                    f"(new entries in a fresh TRITON_CACHE_DIR; 0 under the interpreter)")
        return [head, compiled, *family_table(tests, "cuda" if select else "cpu"), *named_problems(tests)]

    def test_workers(self) -> tuple[int, str]:
        """(processes, how) for the tests: --jobs, or with "auto" half the cores (at most 8) on a
        GPU machine; how: "xdist" (pytest-xdist, where installed), "processes" (pytest processes
        side by side: without pytest-xdist, or --parallel processes) or "one"."""
        count = self.args.jobs
        if count == "auto":
            count = max(1, min(8, int(self.probe.get("cores") or os.cpu_count() or 1) // 2)) if self.gpu else 1
        if count == 1:
            return 1, "one"
        # Asked here, not from the probe: the same interpreter, and no torch import that a slow
        # probe could lose.
        xdist = importlib.util.find_spec("xdist") is not None
        how = self.args.parallel if self.args.parallel != "auto" else ("xdist" if xdist else "processes")
        if how == "xdist" and not xdist:
            self.say("tests: --parallel xdist, but pytest-xdist is not installed: pytest processes side by side")
            how = "processes"
        return count, how

    # -- 4. sanitizer ---------------------------------------------------------------------
    def phase_sanitizer(self) -> None:
        if self.args.skip_sanitizer:
            return self.skip("sanitizer", "--skip-sanitizer")
        if not self.gpu:
            return self.skip("sanitizer", "no CUDA GPU visible")
        tool = self.probe.get("compute_sanitizer")
        if not tool:
            return self.skip("sanitizer", "compute-sanitizer is not on PATH")
        log = self.out / "sanitizer.log"
        t0 = time.monotonic()
        end = self.phase_end("sanitizer")
        probe = self.run_until(min(end, t0 + SANITIZER_PROBE_SECONDS), [tool, "--tool", "memcheck", "--error-exitcode", "99",
                               self.python, "-c", SANITIZER_PROBE], log, self.env, "# does the tool work here?\n")
        if probe is None:
            return self.no_time("sanitizer")
        if probe.returncode != 0 or "probe 2048" not in probe.output:
            why = next((l.strip() for l in probe.output.splitlines() if "error" in l.lower() or "not supported" in l.lower()),
                       "timed out" if probe.timed_out else f"exit status {probe.returncode}")
            self.times["sanitizer"] = time.monotonic() - t0
            return self.skip("sanitizer", f"compute-sanitizer does not work on this machine: {why[:160]}")
        lines, ok = [], True
        for name, ids, until in (("memcheck", SANITIZER_SLICE, end - RACECHECK_SECONDS), ("racecheck", RACECHECK_SLICE, end)):
            line, passed = self.sanitize(tool, name, ids, until, log)
            lines.append(line)
            ok = ok and passed
        self.times["sanitizer"] = time.monotonic() - t0
        self.ok["sanitizer"] = ok
        self.lines["sanitizer"] = ["sanitizer: " + "; ".join(lines)]
        self.say(self.lines["sanitizer"][0])

    def sanitize(self, tool: str, name: str, ids: tuple[str, ...], end: float, log: Path) -> tuple[str, bool]:
        """One pass of the slice ``ids`` under ``compute-sanitizer --tool name``: (summary, passed)."""
        id_file = self.tmp / f"{name}.ids"
        id_file.write_text("\n".join(ids) + "\n", encoding="utf-8")
        report = self.tmp / f"{name}.jsonl"
        # One cudaMalloc per tensor (no caching allocator): an access past a tensor's end then
        # leaves its allocation, which memcheck sees, instead of landing in a pooled neighbour.
        env = dict(self.pytest_env(report, f"ids:{id_file}"), PYTORCH_NO_CUDA_MEMORY_CACHING="1")
        files = list(dict.fromkeys(i.partition("::")[0] for i in ids))
        cmd = [tool, "--tool", name, "--error-exitcode", "99", "--print-limit", "20", self.python, "-m", "pytest",
               *files, "-v", "-p", "no:cacheprovider", "-p", "fastgp_check_plugin"]
        self.say(f"sanitizer: {len(ids)} tests under compute-sanitizer --tool {name} (log: sanitizer.log) ...")
        result = self.run_until(end, cmd, log, env, f"# {name}, PYTORCH_NO_CUDA_MEMORY_CACHING=1\n")
        if result is None:
            return f"{name} not run (no time left)", False
        tests = read_report(report, process_ended=not result.timed_out)
        ran = len(tests.outcomes)
        summary = re.findall(r"ERROR SUMMARY: (\d+) error|RACECHECK SUMMARY: \d+ hazards? displayed \((\d+) error", result.output)
        errors = sum(int(a or b) for a, b in summary)
        if errors or result.returncode == 99:
            line, ok = f"{name} found {errors or 'some'} error(s) in {ran} tests (sanitizer.log)", False
        elif result.timed_out:
            line, ok = f"{name} clean in the {ran} of {len(ids)} tests run before its time limit", False
        else:
            line = f"{name} clean over {ran} tests ({tests.counts_line()})"
            ok = tests.clean and result.returncode == 0
        problems = [f"{len(tests.missing)} slice ids no longer collected, e.g. {tests.missing[0]}"] if tests.missing else []
        problems += [p.strip() for p in named_problems(tests, limit=2)]
        return "; ".join([line, *problems]), ok and not tests.missing

    # -- 5. bench -------------------------------------------------------------------------
    def phase_bench(self) -> None:
        if self.args.skip_bench:
            return self.skip("bench", "--skip-bench")
        if self.args.device == "cuda" and not self.gpu:
            return self.skip("bench", "no CUDA GPU visible; python -m bench --device cuda would exit")
        results = self.tmp / "bench"
        cmd = [self.python, "-m", "bench", "--device", self.args.device, "--quick", "--no-compile", "--out", str(results)]
        env = dict(self.env, TRITON_CACHE_DIR=str(self.tmp / "bench-triton-cache"))
        self.say(f"bench: python -m bench --device {self.args.device} --quick --no-compile (log: bench.log) ...")
        result = self.run_until(self.phase_end("bench"), cmd, self.out / "bench.log", env)
        if result is None:
            return self.no_time("bench")
        self.times["bench"] = result.seconds
        found = sorted(results.glob("*.json")) if results.exists() else []
        table: list[str] = []
        for path in found:  # one file per machine slug; written after every case
            shutil.copy(path, self.out / f"bench-{path.name}")
            shutil.copy(path.with_suffix(".md"), self.out / f"bench-{path.stem}.md")
            table = bench_table(json.loads(path.read_text()))
        cases = max(0, len(table) - 1)
        if result.timed_out:
            head = f"bench: TIMED OUT after {result.seconds:.0f} s with {cases} cases done (bench.log)"
        elif result.returncode != 0:
            head = f"bench: exit status {result.returncode} with {cases} cases done (bench.log)"
        else:
            head = f"bench: {cases} cases in {result.seconds:.0f} s → bench-{found[0].stem}.md" if found else "bench: no results"
        ours, _ = count_compilations(Path(env["TRITON_CACHE_DIR"]))
        head += f"; {ours} Triton compilations"
        self.ok["bench"] = result.returncode == 0 and bool(found)
        self.lines["bench"] = [head, *table]
        self.say(head)

    # -- summary --------------------------------------------------------------------------
    def summary(self, final: bool) -> str:
        total = time.monotonic() - self.start
        failed = [p for p, ok in self.ok.items() if not ok]
        if final:
            verdict = "PASSED" if not failed else "FAILED: " + ", ".join(failed)
        else:
            verdict = (f"PROVISIONAL (written while {self.running or 'the next phase'} runs; "
                       f"{'failed so far: ' + ', '.join(failed) if failed else 'no failure so far'})")
        if self.args.device == "cuda" and self.probe and not self.gpu:
            seen = "the probe failed" if "probe_error" in self.probe else "no GPU visible"
            verdict += f" ({seen}: the CUDA phases did not run)"
        lines = [f"fastgp GPU check ({self.args.device}) — {verdict}"]
        for phase in PHASES:
            lines += self.lines.get(phase, [])
        times = ", ".join(f"{p} {self.times[p]:.0f} s" for p in PHASES if p in self.times)
        lines.append(f"time: {times}{'; ' if times else ''}total {total:.0f} s of a {self.args.budget:.0f} s budget")
        files = sorted({p.name for p in self.out.iterdir()} | {"summary.txt"})
        lines.append(f"files in {self.out}: {', '.join(files)}")
        return "\n".join(lines)

    def write_summary(self, final: bool = False) -> str:
        text = self.summary(final)
        partial = self.out / ".summary.txt.partial"  # renamed over: a kill never leaves half a file
        partial.write_text(text + "\n", encoding="utf-8")
        partial.replace(self.out / "summary.txt")
        return text

    def main(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        if any(self.out.iterdir()):
            self.say(f"{self.out} is not empty: its files would mix with this run's; give an empty or new folder")
            return 2

        def interrupt(signum, frame):
            raise Interrupted(signal.Signals(signum).name)

        previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index, phase in enumerate(PHASES):
                self.running = phase
                getattr(self, f"phase_{phase}")()
                self.running = PHASES[index + 1] if index + 1 < len(PHASES) else None
                self.write_summary()
        except Interrupted as signame:
            phase = self.running or "check"
            self.ok[phase] = False
            self.lines.setdefault(phase, []).append(
                f"{phase}: INTERRUPTED by {signame} after {time.monotonic() - self.start:.0f} s; the phases after it did not run")
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.running = None
            text = self.write_summary(final=True)
            shutil.rmtree(self.tmp, ignore_errors=True)
        print("\n" + text, flush=True)
        count = len(list(self.out.iterdir()))
        if count > MAX_FILES:  # the device tool brings back at most 8 files
            print(f"gpu-check: warning: {count} files in {self.out} (more than {MAX_FILES})", flush=True)
        return 0 if all(self.ok.values()) else 1


def bench_table(results: dict) -> list[str]:
    """A compact table of a bench results JSON: one line per case."""
    lines = [f"  {'case':<34} {'shape':<26} {'fastgp ms':>10} {'triton ms':>10} {'ref ms':>9} {'vs ref':>7}  target"]
    cases = results.get("cases", {})
    for key in sorted(cases, key=lambda k: (k.split("/")[0], cases[k].get("order", 0))):
        rec = cases[key]
        c = rec.get("contenders", {})

        def ms(name: str) -> str:
            entry = c.get(name, {})
            return f"{entry['median_ms']:.3g}" if "median_ms" in entry else entry.get("status", "—")[:10]

        ratio = rec.get("ratios", {}).get("reference/fastgp")
        target = rec.get("target") or {}
        status = target.get("status", "")
        if rec.get("copy_target"):
            status += f", copy bound {rec['copy_target']['status']}"
        lines.append(
            f"  {rec['family'] + '/' + rec['name']:<34} {rec['shape'][:26]:<26} {ms('fastgp'):>10} {ms('triton'):>10} "
            f"{ms('reference'):>9} {('—' if ratio is None else f'{ratio:.2f}×'):>7}  {status}"
        )
    return lines


# --------------------------------------------------------------------------------------------
# Arguments: a bad one gets one line and exit status 2
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"gpu-check: error: {message} (see --help)\n")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _jobs(text: str) -> int | str:
    if text == "auto":
        return text
    if not re.fullmatch(r"\s*\d+\s*", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number of workers >= 1, got {text!r}")
    return int(text)


def parse_args(argv=None) -> argparse.Namespace:
    parser = _Parser(prog="python -m fastgp.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for every log and result (empty or new)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="device to check (default cuda)")
    parser.add_argument("--budget", type=_seconds, default=DEFAULT_BUDGET,
                        help=f"seconds for the whole check, probes and kill grace included (default {DEFAULT_BUDGET:.0f})")
    parser.add_argument("--skip-build", action="store_true", help="test the fastgp already built in this tree")
    parser.add_argument(
        "--jobs",
        type=_jobs,
        default="auto",
        help="pytest-xdist workers for the test phase (default auto: half the cores, at most 8, on a GPU "
        "machine with pytest-xdist; 1: one process)",
    )
    parser.add_argument(
        "--parallel",
        choices=("auto", "xdist", "processes"),
        default="auto",
        help="how --jobs > 1 spreads the tests: pytest-xdist workers with --dist load, or pytest "
        "processes side by side each running every n-th test (default auto: xdist where installed)",
    )
    parser.add_argument("--skip-sanitizer", action="store_true", help="no compute-sanitizer run")
    parser.add_argument("--skip-bench", action="store_true", help="no benchmark run")
    parser.add_argument(
        "--tests-only",
        action="append",
        metavar="PYTEST_TARGET",
        help="run only these pytest targets (repeatable, all their tests) instead of the GPU selection, "
        "and skip the benchmark",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"argument --out: {args.out} is a file, not a folder")
    if args.tests_only:
        args.skip_bench = True
    return args


def main(argv=None) -> int:
    return Check(parse_args(argv)).main()


if __name__ == "__main__":
    raise SystemExit(main())
