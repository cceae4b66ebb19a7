"""Build, test, sanitize and benchmark fastgp on this machine in one command (the GPU check).

    scripts/gpu-check OUT_DIR                   # the same as:
    python -m fastgp.check --device cuda --out OUT_DIR

Made for a fresh GPU machine that already has torch, Triton, nvcc and pytest but no network. Phases,
each with its own time limit so that one hang cannot eat the whole budget (8 minutes by default):

1. probe      versions, the GPU and its architecture, nvcc, compute-sanitizer, cores;
2. build      ``pip install --no-index --no-build-isolation --no-deps -v -e .`` with MAX_JOBS = all
              cores and the CUDA kernels compiled for the visible GPU's architecture only;
3. tests      ``python -m pytest tests`` (on a GPU the CUDA and Triton cases run in the same
              run; with pytest-xdist installed, on half the cores in parallel, ``--jobs``),
              counted per device and backend from the test ids;
4. sanitizer  the CUDA op tests (``pytest -m cuda``, the reference backend left out: it runs
              torch's kernels, not ours) once more under ``compute-sanitizer --tool memcheck``,
              when a probe shows that the tool works on this machine;
5. bench      ``python -m bench --device cuda --quick``.

Every log and result goes into OUT_DIR under flat names (at most 8 files: summary.txt,
environment.txt, build.log, tests.log, sanitizer.log, bench.log, bench-<gpu>.md, bench-<gpu>.json),
and a one-screen summary is printed at the end: tests passed/failed per backend, the sanitizer's
verdict, the benchmark table and each phase's time. A phase that cannot run here (no GPU, no
compute-sanitizer) says so in one line and is skipped. Exit status 0 when every phase that ran
passed, 1 otherwise.

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
import json
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

# Upper limits per phase (seconds); each phase also gets no more than what the total budget
# leaves after reserving the minimum of the phases after it.
PHASE_LIMITS = {"build": 240, "tests": 210, "sanitizer": 100, "bench": 160}
PHASE_RESERVES = {"build": 0, "tests": 60, "sanitizer": 30, "bench": 90}

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


# --------------------------------------------------------------------------------------------
# Running commands with a time limit, logging into OUT_DIR
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int | None  # None: killed at its time limit
    seconds: float
    output: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run(cmd: list[str], log: Path | None, timeout: float, env: dict | None = None, header: str = "") -> Result:
    """Run ``cmd`` from the repository root in its own process group; its output (stdout and
    stderr together) goes to ``log`` (appended) and is returned. On timeout the whole group is
    stopped (TERM, then KILL), so child processes (pytest workers, nvcc) cannot outlive it."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as capture:
        process = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=capture, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            returncode = None
            _stop_group(process)
        capture.seek(0)
        output = capture.read()
    seconds = time.monotonic() - start
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n{header}")
            f.write(output)
            status = f"killed at its time limit of {timeout:.0f} s" if returncode is None else f"exit status {returncode}"
            f.write(f"\n[{status} after {seconds:.1f} s]\n\n")
    return Result(returncode, seconds, output)


def _stop_group(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------------------------
# Counting test results per device and backend
# --------------------------------------------------------------------------------------------


def classify(classname: str, name: str) -> tuple[str, str]:
    """(device, backend) of a test from its id: the parameters in brackets name them (``cuda``,
    ``extension``/``triton``/``reference``); tests under a Triton test folder are Triton's."""
    params = name[name.find("[") + 1 : -1] if "[" in name else ""
    tokens = set(re.split(r"[-_,\s/]+", params.lower()))
    device = "cuda" if "cuda" in tokens else "cpu"
    backend = next((b for b in BACKENDS if b in tokens), None)
    if backend is None:
        backend = "triton" if "triton" in classname.lower() else "other"
    return device, backend


@dataclass
class Counts:
    by_group: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    failed_ids: list[str] = field(default_factory=list)

    def add(self, group: tuple[str, str], outcome: str) -> None:
        self.by_group.setdefault(group, {"passed": 0, "failed": 0, "skipped": 0})[outcome] += 1

    def total(self, outcome: str) -> int:
        return sum(c[outcome] for c in self.by_group.values())


# One line per test in `pytest -v` output: "<path>::<name>[<params>] PASSED  [ 12%]", or with
# pytest-xdist workers: "[gw3] [ 12%] PASSED <path>::<name>[<params>]".
_VERBOSE_LINE = re.compile(r"^(?P<id>[^\s\[].*?::.*?) (?P<outcome>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")
_XDIST_LINE = re.compile(r"^\[gw\d+\] \[\s*\d+%\] (?P<outcome>PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (?P<id>\S.*?::.*?)\s*$")
_OUTCOMES = {"PASSED": "passed", "XPASS": "passed", "FAILED": "failed", "ERROR": "failed",
             "SKIPPED": "skipped", "XFAIL": "skipped"}


def count_pytest_output(output: str) -> Counts:
    """Counts per (device, backend) from ``pytest -v`` output, complete or cut off by a time
    limit (so a suite stopped half-way still reports what ran)."""
    counts = Counts()
    for line in output.splitlines():
        match = _VERBOSE_LINE.match(line) or _XDIST_LINE.match(line)
        if match is None or line.startswith(tuple(_OUTCOMES)):
            continue
        test_id, outcome = match.group("id"), _OUTCOMES[match.group("outcome")]
        path, _, name = test_id.rpartition("::")
        counts.add(classify(path, name), outcome)
        if outcome == "failed" and test_id not in counts.failed_ids:
            counts.failed_ids.append(test_id)
    return counts


def backend_table(counts: Counts) -> list[str]:
    """Lines of a passed/failed/skipped table: one row per backend, one column per device."""
    devices = [d for d in ("cpu", "cuda") if any(g[0] == d for g in counts.by_group)]
    backends = [b for b in (*BACKENDS, "other") if any(g[1] == b for g in counts.by_group)]
    if not devices:
        return []
    lines = [("  backend     " + "".join(f"{d + ' passed/failed/skipped':<28}" for d in devices)).rstrip()]
    for b in backends:
        cells = []
        for d in devices:
            c = counts.by_group.get((d, b))
            cells.append(f"{c['passed']}/{c['failed']}/{c['skipped']}" if c else "—")
        lines.append((f"  {b:<11} " + "".join(f"{cell:<28}" for cell in cells)).rstrip())
    return lines


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

    # -- helpers --------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(f"gpu-check: {text}", flush=True)

    def limit(self, phase: str) -> float:
        later = list(PHASE_LIMITS)[list(PHASE_LIMITS).index(phase) + 1 :]
        reserve = sum(PHASE_RESERVES[p] for p in later if not self.skipped_by_option(p))
        left = self.deadline - time.monotonic() - reserve
        return max(20.0, min(PHASE_LIMITS[phase], left))

    def skipped_by_option(self, phase: str) -> bool:
        return {
            "build": self.args.skip_build,
            "sanitizer": self.args.skip_sanitizer,
            "bench": self.args.skip_bench,
        }.get(phase, False)

    def skip(self, phase: str, reason: str) -> None:
        self.lines[phase] = [f"{phase}: skipped ({reason})"]
        self.say(self.lines[phase][0])

    @property
    def gpu(self) -> bool:
        return self.probe.get("gpu_count", 0) > 0

    # -- 1. probe -------------------------------------------------------------------------
    def phase_probe(self) -> None:
        t0 = time.monotonic()
        result = run([self.python, "-c", PROBE], None, 120, self.env)
        try:
            self.probe = json.loads(result.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.probe = {"probe_error": result.output.strip()[-500:]}
        self.probe["nvcc"] = self._version_line(["nvcc", "--version"], r"release [\d.]+")
        self.probe["compute_sanitizer"] = shutil.which("compute-sanitizer")
        env_file = self.out / "environment.txt"
        with open(env_file, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.probe, indent=1) + "\n\n")
        if shutil.which("nvidia-smi"):
            run(["nvidia-smi"], env_file, 30, self.env)
        self.times["probe"] = time.monotonic() - t0
        gpu = (f"{self.probe['gpu']} (sm_{self.probe['arch'].replace('.', '')}, "
               f"{self.probe.get('gpu_memory_gib')} GiB)") if self.gpu else "none visible"
        self.lines["probe"] = [
            f"machine: {self.probe.get('cores')} cores, GPU {gpu}; torch {self.probe.get('torch')} "
            f"(CUDA {self.probe.get('torch_cuda') or 'none'}), Triton {self.probe.get('triton') or 'none'}, "
            f"nvcc {self.probe['nvcc'] or 'none'}, Python {self.probe.get('python')}"
        ]
        self.say(self.lines["probe"][0])
        if self.args.device == "cuda" and not self.gpu:
            self.say("no CUDA GPU is visible: the CUDA phases are skipped, the CPU ones run")

    def _version_line(self, cmd: list[str], pattern: str) -> str | None:
        if shutil.which(cmd[0]) is None:
            return None
        result = run(cmd, None, 60, self.env)
        match = re.search(pattern, result.output)
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
        limit = self.limit("build")
        result = run(cmd, self.out / "build.log", limit, env)
        self.times["build"] = result.seconds
        if result.returncode == 0:
            info = run([self.python, "-m", "fastgp", "info"], self.out / "environment.txt", 120, self.env)
            built = re.search(r"extension CUDA kernels: ([a-z ]+)", info.output)
            line = f"build: ok in {result.seconds:.0f} s ({what}; extension CUDA kernels: {built.group(1) if built else '?'})"
            self.ok["build"] = not with_cuda or bool(built and built.group(1) == "built")
        elif result.timed_out:
            line = f"build: TIMED OUT after {limit:.0f} s ({what}; see build.log)"
            self.ok["build"] = False
        else:
            error = next((l for l in reversed(result.output.splitlines()) if "error" in l.lower()), "see build.log")
            line = f"build: FAILED in {result.seconds:.0f} s: {error.strip()[:200]}"
            self.ok["build"] = False
        self.lines["build"] = [line]
        self.say(line)

    # -- 3. tests -------------------------------------------------------------------------
    def phase_tests(self) -> None:
        targets = self.args.tests_only or ["tests"]
        workers = self.test_workers()
        parallel = ["-n", str(workers), "--dist", "loadfile"] if workers > 1 else []
        cmd = [self.python, "-m", "pytest", *targets, *parallel, "-v", "-rfE", "-p", "no:cacheprovider"]
        self.say(f"tests: python -m pytest {' '.join(targets + parallel)} (log: tests.log) ...")
        limit = self.limit("tests")
        result = run(cmd, self.out / "tests.log", limit, self.env)
        self.times["tests"] = result.seconds
        counts = count_pytest_output(result.output)
        passed, failed, skipped = counts.total("passed"), counts.total("failed"), counts.total("skipped")
        if result.timed_out:
            head = (f"tests: TIMED OUT after {limit:.0f} s, the rest not run: {passed} passed, {failed} failed, "
                    f"{skipped} skipped until then (see tests.log)")
            self.ok["tests"] = False
        elif not counts.by_group:
            tail = result.output.strip().splitlines()[-1:] or ["no output"]
            head = f"tests: no results (exit status {result.returncode}): {tail[0][:200]}"
            self.ok["tests"] = False
        else:
            head = f"tests: {passed} passed, {failed} failed, {skipped} skipped in {result.seconds:.0f} s"
            self.ok["tests"] = failed == 0 and result.returncode in (0, 5)
        lines = [head, *backend_table(counts)]
        lines += [f"  FAILED {test_id}" for test_id in counts.failed_ids[:10]]
        if len(counts.failed_ids) > 10:
            lines.append(f"  ... and {len(counts.failed_ids) - 10} more failures (tests.log)")
        self.lines["tests"] = lines
        self.say(head)

    def test_workers(self) -> int:
        """pytest-xdist workers: --jobs, or with "auto" half the cores (at most 8) where xdist is
        installed and a GPU is visible (the suite on one process would not fit the budget)."""
        if self.args.jobs != "auto":
            return max(1, int(self.args.jobs))
        if not (self.probe.get("xdist") and self.gpu):
            return 1
        return max(1, min(8, int(self.probe.get("cores") or 1) // 2))

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
        memcheck = [tool, "--tool", "memcheck", "--error-exitcode", "99", "--print-limit", "20"]
        probe = run([*memcheck, self.python, "-c", SANITIZER_PROBE], log, 90, self.env, header="# does the tool work here?\n")
        if probe.returncode != 0 or "probe 2048" not in probe.output:
            why = next((l.strip() for l in probe.output.splitlines() if "error" in l.lower() or "not supported" in l.lower()),
                       "timed out" if probe.timed_out else f"exit status {probe.returncode}")
            self.times["sanitizer"] = time.monotonic() - t0
            return self.skip("sanitizer", f"compute-sanitizer does not work on this machine: {why[:160]}")
        targets = self.args.tests_only or ["tests"]
        # One cudaMalloc per tensor (no caching allocator): an access past a tensor's end then
        # leaves its allocation, which memcheck sees, instead of landing in a pooled neighbour.
        env = dict(self.env, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
        cmd = [*memcheck, self.python, "-m", "pytest", *targets, "-m", "cuda", "-k", "not reference",
               "-v", "-p", "no:cacheprovider"]
        self.say("sanitizer: CUDA op tests under compute-sanitizer --tool memcheck (log: sanitizer.log) ...")
        limit = self.limit("sanitizer") - (time.monotonic() - t0)
        if limit < 30:
            self.times["sanitizer"] = time.monotonic() - t0
            return self.skip("sanitizer", "the tool works, but the time budget is spent")
        result = run(cmd, log, limit, env, header="# PYTORCH_NO_CUDA_MEMORY_CACHING=1\n")
        self.times["sanitizer"] = time.monotonic() - t0
        counts = count_pytest_output(result.output)
        passed, failed = counts.total("passed"), counts.total("failed")
        errors = re.findall(r"ERROR SUMMARY: (\d+) error", result.output)
        reported = sum(int(e) for e in errors)
        if reported or result.returncode == 99:
            line = f"sanitizer: memcheck found {reported or 'some'} error(s) in {passed + failed} tests: see sanitizer.log"
            self.ok["sanitizer"] = False
        elif result.timed_out:
            line = (f"sanitizer: no memcheck error in the {passed + failed} tests that ran before the time limit "
                    f"({limit:.0f} s); the rest were not checked")
            self.ok["sanitizer"] = failed == 0
        elif result.returncode == 5:
            line = "sanitizer: no CUDA op tests selected (pytest -m cuda found none)"
            self.ok["sanitizer"] = True
        else:
            line = f"sanitizer: memcheck clean over {passed + failed} tests ({failed} failed under the tool)"
            self.ok["sanitizer"] = failed == 0 and result.returncode == 0
        self.lines["sanitizer"] = [line]
        self.say(line)

    # -- 5. bench -------------------------------------------------------------------------
    def phase_bench(self) -> None:
        if self.args.skip_bench:
            return self.skip("bench", "--skip-bench")
        if self.args.device == "cuda" and not self.gpu:
            return self.skip("bench", "no CUDA GPU visible; python -m bench --device cuda would exit")
        results = self.tmp / "bench"
        cmd = [self.python, "-m", "bench", "--device", self.args.device, "--quick", "--out", str(results)]
        self.say(f"bench: python -m bench --device {self.args.device} --quick (log: bench.log) ...")
        limit = self.limit("bench")
        result = run(cmd, self.out / "bench.log", limit, self.env)
        self.times["bench"] = result.seconds
        found = sorted(results.glob("*.json")) if results.exists() else []
        table: list[str] = []
        for path in found:  # one file per machine slug; written after every case
            shutil.copy(path, self.out / f"bench-{path.name}")
            shutil.copy(path.with_suffix(".md"), self.out / f"bench-{path.stem}.md")
            table = bench_table(json.loads(path.read_text()))
        cases = max(0, len(table) - 1)
        if result.timed_out:
            head = f"bench: TIMED OUT after {limit:.0f} s with {cases} cases done (bench.log)"
        elif result.returncode != 0:
            head = f"bench: exit status {result.returncode} with {cases} cases done (bench.log)"
        else:
            head = f"bench: {cases} cases in {result.seconds:.0f} s → bench-{found[0].stem}.md" if found else "bench: no results"
        self.ok["bench"] = result.returncode == 0 and bool(found)
        self.lines["bench"] = [head, *table]
        self.say(head)

    # -- summary --------------------------------------------------------------------------
    def summary(self) -> str:
        total = time.monotonic() - self.start
        verdict = "PASSED" if all(self.ok.values()) else "FAILED: " + ", ".join(p for p, ok in self.ok.items() if not ok)
        if self.args.device == "cuda" and not self.gpu:
            verdict += " (no GPU visible: the CUDA phases did not run)"
        lines = [f"fastgp GPU check ({self.args.device}) — {verdict}"]
        for phase in ("probe", "build", "tests", "sanitizer", "bench"):
            lines += self.lines.get(phase, [])
        times = ", ".join(f"{p} {self.times[p]:.0f} s" for p in ("probe", "build", "tests", "sanitizer", "bench") if p in self.times)
        lines.append(f"time: {times}; total {total:.0f} s")
        files = sorted(p.name for p in self.out.iterdir()) + ["summary.txt"]
        lines.append(f"files in {self.out}: {', '.join(sorted(set(files)))}")
        return "\n".join(lines)

    def main(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        if any(self.out.iterdir()):
            self.say(f"{self.out} is not empty: its files would mix with this run's; give an empty or new folder")
            return 2
        try:
            self.phase_probe()
            self.phase_build()
            self.phase_tests()
            self.phase_sanitizer()
            self.phase_bench()
        finally:
            text = self.summary()
            (self.out / "summary.txt").write_text(text + "\n", encoding="utf-8")
            shutil.rmtree(self.tmp, ignore_errors=True)
        print("\n" + text, flush=True)
        count = len(list(self.out.iterdir()))
        if count > MAX_FILES:  # the device tool brings back at most 8 files
            print(f"gpu-check: warning: {count} files in {self.out} (more than {MAX_FILES})", flush=True)
        return 0 if all(self.ok.values()) else 1


def bench_table(results: dict) -> list[str]:
    """A compact table of a bench results JSON: one line per case."""
    lines = [f"  {'case':<34} {'shape':<26} {'fastgp ms':>10} {'ref ms':>9} {'compile ms':>10} {'vs ref':>7}  target"]
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
            f"  {rec['family'] + '/' + rec['name']:<34} {rec['shape'][:26]:<26} {ms('fastgp'):>10} {ms('reference'):>9} "
            f"{ms('compile'):>10} {('—' if ratio is None else f'{ratio:.2f}×'):>7}  {status}"
        )
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fastgp.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for every log and result (empty or new)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="device to check (default cuda)")
    parser.add_argument("--budget", type=float, default=470.0, help="seconds for the whole check (default 470)")
    parser.add_argument("--skip-build", action="store_true", help="test the fastgp already built in this tree")
    parser.add_argument(
        "--jobs",
        default="auto",
        help="pytest-xdist workers for the test phase (default auto: half the cores, at most 8, on a GPU "
        "machine with pytest-xdist; 1: one process)",
    )
    parser.add_argument("--skip-sanitizer", action="store_true", help="no compute-sanitizer run")
    parser.add_argument("--skip-bench", action="store_true", help="no benchmark run")
    parser.add_argument(
        "--tests-only",
        action="append",
        metavar="PYTEST_TARGET",
        help="run only these pytest targets (repeatable) instead of the whole suite, and skip the benchmark",
    )
    args = parser.parse_args(argv)
    if args.tests_only:
        args.skip_bench = True
    return args


def main(argv=None) -> int:
    return Check(parse_args(argv)).main()


if __name__ == "__main__":
    raise SystemExit(main())
