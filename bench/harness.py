"""Benchmark harness: cases, alternating timing, dispatch counting, copy roofline, JSON + Markdown.

A :class:`Case` names one measurement (``family/name`` at one shape). Its ``setup(device)``
function runs ONCE per case and builds every input, model copy and contender on ``device`` (the
CPU, or a CUDA GPU with ``--device cuda``); it returns a :class:`Setup`:

* ``contenders``: ``fastgp``, ``reference`` (eager, written the way users write it today) and
  ``compile`` (``torch.compile`` of the reference), each a zero-argument callable doing ONE call —
  or an :class:`Unsupported` saying why it cannot run. The ``compile`` contender is never assumed
  to fail: the harness runs it, and if the first call raises, the row reads
  ``unsupported: <first line of the actual exception>``.
* ``copy_bytes``: the number of bytes the op must move at the least (bytes read + bytes written);
  the harness times ``dst.copy_(src)`` on float32 tensors of ``copy_bytes / 2`` bytes each — a copy
  reads its source and writes its destination, so it moves the same number of bytes. That time is
  the *copy roofline*: what a purely memory-bound implementation could at best reach here.
* ``parts`` (optional): extra callables timed in the same alternating loop but not shown as
  contenders — e.g. the regularizer's own ops, to report their share of a whole training step.

Timing (why ``time.perf_counter`` and not ``torch.utils.benchmark``): everything runs on the CPU,
where a call is synchronous and ``perf_counter`` (monotonic, ns resolution) is exactly the right
clock. What matters is fairness between contenders on a shared, noisy 2-core machine: after a
warm-up, the harness runs R rounds and, in each round, every contender runs one *block* of
iterations, in an order rotated from round to round (round-robin), so that drift (thermal, other
processes, allocator state) hits every contender alike. ``Timer.blocked_autorange`` measures one
statement at a time and cannot interleave contenders, so it is not used. Per contender, the
iterations per block are calibrated once so that a block lasts about ``block_seconds``; the
per-call time of a block is its duration divided by its iterations. We report the median over
rounds and the 20th–80th percentile band. The Python garbage collector is disabled during a block.

On a GPU (``--device cuda``) the same alternating rounds are timed with CUDA events instead: the
device is synchronized before each block (the previous contender's queued work is not counted),
an event is recorded before and after the block's calls, and the block's time is the events'
elapsed time once the second has completed. A call that waits on the CPU (launch overhead, a
host synchronization) leaves the GPU idle inside the block, so the figure is the time a training
loop would see. The copy roofline is a device-to-device copy on the same GPU.

The machine is shared (builds and test runs of other developers): :class:`CpuContention` measures,
per round, the share of the CPU that OTHER processes used. Every case records the mean share over
its rounds, and the Markdown flags cases above 10%. With a waiting budget (``--wait-quiet SECONDS``),
a round disturbed above 10% is thrown away and run again once a one-second probe finds the machine
quiet, while the budget lasts; the count of such rounds is recorded (``rounds_discarded_for_load``).
On 2 cores this matters far more than the share suggests: an intra-op parallel region waits for its
slowest thread, and a thread that has lost its core waits a whole scheduler time slice, so a
0.015 ms copy can take several milliseconds.

Device-independent figures (per contender, from ONE call under :class:`DispatchCounter`):

* ``aten_ops``: every operator call that reaches a ``TorchDispatchMode`` — ATen ops from the
  forward, from autograd's backward (the mode is propagated to the autograd engine) and from the
  optimizer, and the custom ops ``torch.ops.fastgp.*``. Ops a kernel calls *inside* its own
  implementation are not seen (the mode is not active below an op it intercepted): a fused kernel's
  private scratch buffers are a blind spot of this count.
* ``bytes_allocated``: the sum of ``nbytes`` of every tensor output of those ops that does NOT
  share storage with one of the op's tensor inputs — i.e. fresh allocations; views (``view``,
  ``flatten``, ``expand``, ...) and in-place results (``add_``, ``copy_``) allocate nothing and are
  excluded. ``bytes_all_outputs`` (in the JSON only) is the plain sum of ``nbytes`` over every
  tensor output, views and in-place results included.

These predict GPU behaviour (launch count, HBM traffic) without a GPU.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

CONTENDERS = ("fastgp", "reference", "compile")
# fastgp forced onto its Triton backend: added by run_case on CUDA, where the default backend is
# the extension, so that one run times both of fastgp's GPU backends (not a case's own contender).
TRITON = "triton"
COPY = "copy"


# --------------------------------------------------------------------------------------------
# Case description
# --------------------------------------------------------------------------------------------


@dataclass
class Unsupported:
    """A contender that cannot run here, with a short reason (shown in the table)."""

    reason: str
    kind: str = "unsupported"  # "unsupported" (the tool rejects it) or "unavailable" (not built/exported)

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


@dataclass
class Setup:
    """What a case's setup function returns (see the module docstring)."""

    contenders: dict[str, Callable[[], Any] | Unsupported]
    copy_bytes: int
    parts: dict[str, Callable[[], Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Optional: turns part medians (and contender medians) into derived figures for the JSON/Markdown.
    derive: Callable[[dict[str, float]], dict[str, Any]] | None = None
    calls_per_run: int = 1  # a contender call may run several steps (reported per step)


@dataclass
class Case:
    name: str
    shape: str
    setup: Callable[[torch.device], Setup]
    description: str = ""
    # Target speed-up of fastgp: (baseline contender, minimum ratio baseline_ms / fastgp_ms).
    target: tuple[str, float] | None = None
    # The target on a CUDA GPU where it differs from the CPU's (issue 11 sets the GPU targets).
    cuda_target: tuple[str, float] | None = None
    # Upper bounds of fastgp ms / copy-roofline ms, per device type (e.g. {"cuda": 1.5}).
    max_copy_ratio: dict[str, float] = field(default_factory=dict)
    large: bool = False  # a large shape: --quick (few rounds, the small shapes) skips it
    family: str = ""  # filled in by discovery
    order: int = 0  # position in its family's list, for the table

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}/{self.shape}"

    def target_for(self, device_type: str) -> tuple[str, float] | None:
        if device_type == "cuda" and self.cuda_target is not None:
            return self.cuda_target
        return self.target


@dataclass
class Settings:
    rounds: int
    warmup_calls: int
    block_seconds: float
    quick: bool
    # Rounds during which other processes used more than `quiet_threshold` of the machine's CPU
    # are thrown away and run again once the machine is quiet, while this shared budget of
    # waiting (seconds, for the whole run) lasts. 0 keeps every round (and reports the load).
    wait_budget: "WaitBudget | None" = None
    quiet_threshold: float = 0.10
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # False: the compile contender is not run (no torch.compile per case: 5-30 s cold each on a
    # GPU), so that a first pass times fastgp against eager for every case (--no-compile).
    compile: bool = True

    @classmethod
    def for_mode(cls, quick: bool, wait_seconds: float = 0.0, device: str | torch.device = "cpu") -> "Settings":
        budget = WaitBudget(wait_seconds) if wait_seconds > 0 else None
        device = torch.device(device)
        if device.type == "cuda":
            # More warm-up calls: the first calls on a GPU load kernels and tune cuBLAS/Triton,
            # and the last warm-up call calibrates the block length.
            if quick:
                return cls(rounds=5, warmup_calls=3, block_seconds=0.02, quick=True, wait_budget=budget, device=device)
            return cls(rounds=25, warmup_calls=5, block_seconds=0.1, quick=False, wait_budget=budget, device=device)
        if quick:
            return cls(rounds=3, warmup_calls=1, block_seconds=0.02, quick=True, wait_budget=budget, device=device)
        return cls(rounds=25, warmup_calls=3, block_seconds=0.15, quick=False, wait_budget=budget, device=device)


class WaitBudget:
    """Seconds the run may still spend waiting for other processes to leave the CPU alone."""

    def __init__(self, seconds: float):
        self.left = seconds
        self.waited = 0.0

    def wait_for_quiet(self, threshold: float, window: float = 1.0) -> bool:
        """Sleep in ``window``-second steps until others use < threshold of the CPU; False if out of budget."""
        while self.left > 0:
            start = time.perf_counter()
            with CpuContention() as probe:
                time.sleep(window)
            spent = time.perf_counter() - start
            self.left -= spent
            self.waited += spent
            if probe.share is None or probe.share < threshold:
                return True
        return False


# --------------------------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown-cpu"


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", " ", text, flags=re.I)
    text = re.sub(r"@.*$", " ", text)  # drop the nominal frequency
    text = re.sub(r"\b(cpu|processor|\d+-core)\b", " ", text, flags=re.I)
    text = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return text or "unknown"


def gpu_name(device: torch.device | str = "cuda") -> str | None:
    """The name of the GPU that ``device`` names (None without one)."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(device)


def machine_slug(device: torch.device | str = "cpu") -> str:
    """``cpu-<cores>core-<cpu model>`` for the CPU, the GPU's name (e.g. ``nvidia-h200``) for CUDA."""
    name = gpu_name(device)
    if name is not None:
        return slug(name)
    return f"cpu-{core_count()}core-{slug(cpu_model())}"


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    device = torch.device(device)
    return {
        "machine": machine_slug(device),
        "device": device.type,
        "cpu_model": cpu_model(),
        "cores": core_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def fastgp_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Which fastgp (and which backend on ``device``) ran, as far as the package can tell."""
    device_type = torch.device(device).type
    try:
        import fastgp
    except Exception as error:  # the package itself is being written concurrently
        return {"importable": False, "error": f"{type(error).__name__}: {error}"}
    data: dict[str, Any] = {"importable": True, "version": getattr(fastgp, "__version__", None)}
    backend = getattr(fastgp, "backend", None)
    try:
        if hasattr(backend, "resolve"):
            data[f"backend_{device_type}"] = backend.resolve(device_type)
        elif isinstance(backend, str):
            data[f"backend_{device_type}"] = backend
        if hasattr(backend, "report"):
            report = backend.report()
            reason = report.get("devices", {}).get(device_type, {}).get("extension")
            data[f"extension_{device_type}"] = reason or "available"
    except Exception as error:
        data["backend_error"] = f"{type(error).__name__}: {error}"
    return data


# --------------------------------------------------------------------------------------------
# Counting dispatched ops and allocated bytes
# --------------------------------------------------------------------------------------------


def _storage_key(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except Exception:  # tensor subclasses / sparse without a plain storage
        return None


class DispatchCounter(TorchDispatchMode):
    """Counts operator calls reaching the mode and the bytes of their tensor outputs.

    ``ops``: number of calls (``torch.ops.aten.*`` and custom ops such as ``torch.ops.fastgp.*``).
    ``bytes_allocated``: nbytes summed over tensor outputs that share storage with none of the
    op's tensor inputs (fresh allocations). ``bytes_all_outputs``: nbytes summed over every tensor
    output. ``by_op``: calls per overload packet name, for diagnosis.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.bytes_allocated = 0
        self.bytes_all_outputs = 0
        self.by_op: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {
            _storage_key(t)
            for t in pytree.tree_leaves((args, kwargs))
            if isinstance(t, torch.Tensor) and t.nbytes > 0
        }
        out = func(*args, **kwargs)
        self.ops += 1
        name = str(func.overloadpacket)
        self.by_op[name] = self.by_op.get(name, 0) + 1
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                nbytes = t.nbytes
                self.bytes_all_outputs += nbytes
                if nbytes and _storage_key(t) not in inputs:
                    self.bytes_allocated += nbytes
        return out


def count_dispatch(fn: Callable[[], Any]) -> dict[str, Any]:
    with DispatchCounter() as counter:
        fn()
    return {
        "aten_ops": counter.ops,
        "bytes_allocated": counter.bytes_allocated,
        "bytes_all_outputs": counter.bytes_all_outputs,
        "by_op": dict(sorted(counter.by_op.items(), key=lambda kv: -kv[1])),
    }


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


class CpuContention:
    """Share of the machine's CPU time used by OTHER processes while a case was being timed.

    Busy time of all CPUs (from /proc/stat) minus this process's own CPU time, over wall time ×
    cores. On a shared 2-core machine a concurrent build or test run can take a core for seconds;
    round-robin timing spreads that over every contender, but the figure says how quiet it was.
    None where /proc/stat does not exist.
    """

    def __enter__(self):
        self._start = (self._busy(), time.process_time(), time.perf_counter())
        return self

    def __exit__(self, *exc):
        busy, own, wall = self._busy(), time.process_time(), time.perf_counter()
        self.share = None
        if busy is not None and self._start[0] is not None:
            other = (busy - self._start[0]) - (own - self._start[1])
            cpus = os.cpu_count() or 1
            self.share = max(0.0, other / ((wall - self._start[2]) * cpus))
        return False

    @staticmethod
    def _busy() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) — the same rule as numpy's default."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Clock:
    """Times calls on one device: ``time.perf_counter`` on the CPU, CUDA events on a GPU."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.name = "CUDA events, round-robin blocks" if self.cuda else "time.perf_counter, round-robin blocks"

    def synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def one_call(self, fn: Callable[[], Any]) -> float:
        """Wall seconds of one call, its device work included."""
        self.synchronize()
        start = time.perf_counter()
        fn()
        self.synchronize()
        return time.perf_counter() - start

    def block(self, fn: Callable[[], Any], iters: int) -> float:
        """Seconds per call over one block of ``iters`` calls, with the GC paused."""
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                self.synchronize()  # queued work of the previous block is not this block's
                start.record()
                for _ in range(iters):
                    fn()
                end.record()
                end.synchronize()
                elapsed = start.elapsed_time(end) / 1e3
            else:
                start_s = time.perf_counter()
                for _ in range(iters):
                    fn()
                elapsed = time.perf_counter() - start_s
        finally:
            if gc_was_enabled:
                gc.enable()
        return elapsed / iters


def _short_reason(error: BaseException) -> str:
    """The first non-empty line of the exception's message (its type name if it has none)."""
    text = str(error).strip().splitlines()
    reason = next((line.strip() for line in text if line.strip()), "") or type(error).__name__
    return reason if len(reason) <= 160 else reason[:157] + "..."


def make_copy(copy_bytes: int, device: torch.device | str = "cpu") -> Callable[[], Any]:
    numel = max(1, int(copy_bytes) // 2 // 4)  # src and dst each hold half the traffic, float32
    src = torch.randn(numel, device=device)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


# --------------------------------------------------------------------------------------------
# Running one case: set up, warm up, calibrate, alternate, summarize, judge
# --------------------------------------------------------------------------------------------


def run_case(case: Case, settings: Settings, log=print) -> dict[str, Any]:
    """Set a case up, warm it, time it round-robin, count its dispatches; return its JSON record."""
    torch._dynamo.reset()  # each case compiles from scratch (no guards or recompiles carried over)
    torch.manual_seed(0)
    clock = Clock(settings.device)
    setup = case.setup(settings.device)
    _add_triton_contender(setup, settings)
    record = _new_record(case, settings, setup)
    timed, estimates = _warm_contenders(setup, settings, clock, record, log)
    timed.update(_warm_copy_and_parts(setup, settings, clock, record))
    iters = _calibrate_blocks(timed, estimates, settings, clock)
    samples = _alternating_rounds(timed, iters, settings, clock, record)
    _store_summaries(record, samples, iters, setup.calls_per_run)
    _count_dispatches(record, timed, setup.calls_per_run)
    record["ratios"] = _ratios(record)
    _judge_targets(record, case, settings.device.type)
    _derive(record, setup, timed)
    return record


def _add_triton_contender(setup: Setup, settings: Settings) -> None:
    """On CUDA, the fastgp contender once more with the Triton backend forced (an unavailable
    backend is reported as such, with its reason)."""
    fn = setup.contenders.get("fastgp")
    if settings.device.type != "cuda" or fn is None or isinstance(fn, Unsupported):
        return
    import fastgp

    reason = fastgp.backend.unavailable_reason(TRITON, "cuda")
    if reason is not None:
        setup.contenders[TRITON] = Unsupported(reason, "unavailable")
        return

    def on_triton():
        with fastgp.use_backend(TRITON):
            return fn()

    setup.contenders[TRITON] = on_triton


def _new_record(case: Case, settings: Settings, setup: Setup) -> dict[str, Any]:
    return {
        "family": case.family,
        "name": case.name,
        "shape": case.shape,
        "description": case.description,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "device": settings.device.type,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "fastgp": fastgp_info(settings.device),
        "copy_bytes": setup.copy_bytes,
        "calls_per_run": setup.calls_per_run,
        "notes": list(setup.notes),
        "contenders": {},
        "parts": {},
    }


def _warm_contenders(setup: Setup, settings: Settings, clock: Clock, record: dict[str, Any], log):
    """Warm every contender up (a compile's first call compiles, and may raise: reported, not
    assumed). Returns the runnable contenders and each one's per-call estimate."""
    timed: dict[str, Callable[[], Any]] = {}
    estimates: dict[str, float] = {}
    for name in (*CONTENDERS, TRITON):
        if name == TRITON and name not in setup.contenders:  # CPU: no Triton contender
            continue
        fn = setup.contenders.get(name, Unsupported("not defined for this case", "unavailable"))
        if name == "compile" and not settings.compile and not isinstance(fn, Unsupported):
            record["contenders"][name] = {"status": "skipped", "reason": "--no-compile"}
            continue
        if isinstance(fn, Unsupported):
            record["contenders"][name] = {"status": fn.kind, "reason": fn.reason}
            continue
        try:
            warm = [clock.one_call(fn) for _ in range(max(1, settings.warmup_calls))]
        except Exception as error:
            kind = "unsupported" if name == "compile" else "error"
            record["contenders"][name] = {
                "status": kind,
                "reason": _short_reason(error),
                "exception": type(error).__name__,
            }
            log(f"    {name}: {kind}: {_short_reason(error)}")
            if kind == "error":
                record["contenders"][name]["traceback"] = traceback.format_exc(limit=6)
            continue
        record["contenders"][name] = {"status": "ok", "first_call_s": warm[0]}
        timed[name] = fn
        # A slow contender's last warm-up call calibrates its block (a compile's first call does not).
        if len(warm) > 1 or name != "compile":
            estimates[name] = warm[-1]
    return timed, estimates


def _warm_copy_and_parts(setup: Setup, settings: Settings, clock: Clock, record: dict[str, Any]):
    """The copy roofline and the case's parts, warmed up, to be timed in the same loop."""
    copy_fn = make_copy(setup.copy_bytes, settings.device)
    clock.one_call(copy_fn)
    timed = {COPY: copy_fn}
    for part_name, part_fn in setup.parts.items():
        try:
            for _ in range(settings.warmup_calls):
                clock.one_call(part_fn)
        except Exception as error:
            record["parts"][part_name] = {"status": "error", "reason": _short_reason(error)}
            continue
        timed[f"part:{part_name}"] = part_fn
    return timed


def _calibrate_blocks(timed, estimates, settings: Settings, clock: Clock) -> dict[str, int]:
    """Iterations per block: slow contenders from their last warm-up call, fast ones from a few
    extra calls (on a quiet machine if we may wait for one)."""
    if settings.wait_budget is not None:
        settings.wait_budget.wait_for_quiet(settings.quiet_threshold)
    iters: dict[str, int] = {}
    for name, fn in timed.items():
        per_call = estimates.get(name)
        if per_call is None or per_call < settings.block_seconds:
            # Cheap enough to measure again: the least of a few short blocks, so that one
            # interruption by another process does not shrink the block to a single call.
            per_call = min(per_call or math.inf, clock.block(fn, 1))
            for _ in range(3 if per_call < settings.block_seconds / 4 else 0):
                n = max(1, int(0.01 / max(per_call, 1e-7)))
                per_call = min(per_call, clock.block(fn, n))
        iters[name] = max(1, round(settings.block_seconds / max(per_call, 1e-9)))
    return iters


def _alternating_rounds(timed, iters, settings: Settings, clock: Clock, record: dict[str, Any]):
    """R rounds; in each, one block per contender in an order rotated from round to round.
    Returns the per-call milliseconds of each block, per contender; records the CPU load."""
    samples: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    budget = settings.wait_budget
    shares: list[float] = []
    discarded = 0
    r = 0
    while r < settings.rounds:
        shift = r % len(names)
        this_round = {}
        with CpuContention() as contention:
            for name in names[shift:] + names[:shift]:
                this_round[name] = clock.block(timed[name], iters[name]) * 1e3
            gc.collect()
        share = contention.share
        disturbed = share is not None and share > settings.quiet_threshold
        if disturbed and budget is not None and budget.wait_for_quiet(settings.quiet_threshold):
            discarded += 1  # measured while another process held the CPU: measure it again
            continue
        for name, value in this_round.items():
            samples[name].append(value)
        if share is not None:
            shares.append(share)
        r += 1
    record["other_processes_cpu_share"] = statistics.mean(shares) if shares else None
    record["other_processes_cpu_share_max"] = max(shares) if shares else None
    record["rounds_discarded_for_load"] = discarded
    return samples


def _store_summaries(record: dict[str, Any], samples, iters, calls_per_run: int) -> None:
    """Median, min, p20/p80 and the raw samples of every timed callable, per call (per step)."""

    def summary(name: str) -> dict[str, Any]:
        values = samples[name]
        per = calls_per_run if not name.startswith("part:") and name != COPY else 1
        return {
            "median_ms": statistics.median(values) / per,
            "min_ms": min(values) / per,
            "p20_ms": _percentile(values, 20) / per,
            "p80_ms": _percentile(values, 80) / per,
            "rounds": len(values),
            "iters_per_block": iters[name],
            "samples_ms": [v / per for v in values],
        }

    for name in samples:
        if name == COPY:
            record["copy"] = summary(name)
        elif name.startswith("part:"):
            record["parts"][name[5:]] = {"status": "ok", **summary(name)}
        else:
            record["contenders"][name].update(summary(name))


def _count_dispatches(record: dict[str, Any], timed, calls_per_run: int) -> None:
    """One call under the dispatch counter, for fastgp and the reference (torch.compile's
    generated code does not go through the dispatcher op by op, so a count there would not be
    comparable)."""
    for name in ("fastgp", "reference"):
        if name in timed:
            try:
                counts = count_dispatch(timed[name])
                if calls_per_run > 1:
                    counts["per_run"] = {"aten_ops": counts["aten_ops"], "bytes_allocated": counts["bytes_allocated"]}
                    counts["aten_ops"] /= calls_per_run
                    counts["bytes_allocated"] /= calls_per_run
                    counts["bytes_all_outputs"] /= calls_per_run
                record["contenders"][name].update(counts)
            except Exception as error:
                record["contenders"][name]["count_error"] = _short_reason(error)


def _ratios(record: dict[str, Any]) -> dict[str, float | None]:
    """baseline / fastgp (> 1 means fastgp is faster), and each eager contender / copy roofline."""
    ratios: dict[str, float | None] = {}
    fast = record["contenders"].get("fastgp", {})
    for base in ("reference", "compile"):
        other = record["contenders"].get(base, {})
        if fast.get("status") == "ok" and other.get("status") == "ok":
            ratios[f"{base}/fastgp"] = other["median_ms"] / fast["median_ms"]
        else:
            ratios[f"{base}/fastgp"] = None
    ref = record["contenders"].get("reference", {})
    if ref.get("status") == "ok":
        ratios["reference/copy"] = ref["median_ms"] / record["copy"]["median_ms"]
    if fast.get("status") == "ok":
        ratios["fastgp/copy"] = fast["median_ms"] / record["copy"]["median_ms"]
    triton = record["contenders"].get(TRITON, {})
    if triton.get("status") == "ok" and ref.get("status") == "ok":
        ratios[f"reference/{TRITON}"] = ref["median_ms"] / triton["median_ms"]
    return ratios


def _judge_targets(record: dict[str, Any], case: Case, device_type: str) -> None:
    """``met`` or ``MISSED`` for the case's speed-up target and copy-roofline bound on this device."""
    target = case.target_for(device_type)
    if target is not None:
        base, minimum = target
        ratio = record["ratios"].get(f"{base}/fastgp")
        record["target"] = {
            "vs": base,
            "min_ratio": minimum,
            "ratio": ratio,
            "status": "n/a" if ratio is None else ("met" if ratio >= minimum else "MISSED"),
        }
    bound = case.max_copy_ratio.get(device_type)
    if bound is not None:
        ratio = record["ratios"].get("fastgp/copy")
        record["copy_target"] = {
            "max_ratio": bound,
            "ratio": ratio,
            "status": "n/a" if ratio is None else ("met" if ratio <= bound else "MISSED"),
        }


def _derive(record: dict[str, Any], setup: Setup, timed) -> None:
    if setup.derive is None:
        return
    medians = {n: record["contenders"][n]["median_ms"] for n in timed if n in record["contenders"]}
    medians.update({n: p["median_ms"] for n, p in record["parts"].items() if p.get("status") == "ok"})
    try:
        record["derived"] = setup.derive(medians)
    except Exception as error:
        record["derived"] = {"error": _short_reason(error)}


def summary_line(record: dict[str, Any]) -> str:
    """One line for the console: medians and ratios of a finished case."""
    parts = []
    for name in (*CONTENDERS, TRITON):
        if name not in record["contenders"]:
            continue
        entry = record["contenders"][name]
        parts.append(f"{name} " + (f"{entry['median_ms']:.3g} ms" if entry.get("status") == "ok" else entry.get("status", "?")))
    parts.append(f"copy {record['copy']['median_ms']:.3g} ms")
    if record.get("other_processes_cpu_share") is not None:
        parts.append(f"other procs {100 * record['other_processes_cpu_share']:.0f}% CPU")
    if record.get("rounds_discarded_for_load"):
        parts.append(f"{record['rounds_discarded_for_load']} rounds re-run")
    ratio = record["ratios"].get("reference/fastgp")
    if ratio is not None:
        parts.append(f"ref/fastgp {ratio:.2f}x")
    if record.get("target"):
        parts.append(f"target {record['target']['status']}")
    if record.get("copy_target"):
        parts.append(f"copy bound {record['copy_target']['status']}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Results: JSON upsert and Markdown
# --------------------------------------------------------------------------------------------


def load_results(path: Path) -> dict[str, Any]:
    if path.exists():
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            print(f"bench: ignoring unreadable {path} ({error})", file=sys.stderr)
    return {"cases": {}}


def upsert(
    results: dict[str, Any],
    records: list[dict[str, Any]],
    replace_families: set[str],
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Replace the given families' rows (whole families) and upsert the records; keep the rest."""
    cases = {
        key: rec for key, rec in results.get("cases", {}).items() if rec.get("family") not in replace_families
    }
    for rec in records:
        cases[f"{rec['family']}/{rec['name']}/{rec['shape']}"] = rec
    merged = {k: v for k, v in results.items() if k != "cases"}
    merged.update(machine_info(device))
    merged["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    merged["timer"] = Clock(device).name + " (see bench/harness.py)"
    merged["cases"] = cases
    return merged


def _ms(entry: dict[str, Any] | None, band: bool = True) -> str:
    if not entry:
        return "—"
    if "median_ms" not in entry:
        return f"{entry.get('status', '?')}: {entry.get('reason', '')}".replace("|", "\\|")
    text = f"{entry['median_ms']:.3g}"
    if band:
        text += f" ({entry['p20_ms']:.3g}–{entry['p80_ms']:.3g})"
    return text


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _pair(a: dict[str, Any], b: dict[str, Any], key: str, scale: float = 1.0, fmt: str = "{:.0f}") -> str:
    def one(entry):
        if entry.get("status") != "ok" or key not in entry:
            return "—"
        return fmt.format(entry[key] / scale)

    return f"{one(a)} / {one(b)}"


def render_markdown(results: dict[str, Any]) -> str:
    device_type = results.get("device", "cpu")
    rows: list[str] = []
    notes: list[str] = []
    backends: set[str] = set()
    quick_rows = 0
    for rec in _ordered_records(results):
        rows.append(_table_row(rec))
        notes += _row_notes(rec)
        quick_rows += bool(rec.get("quick"))
        backend = rec.get("fastgp", {}).get(f"backend_{device_type}")
        if backend:
            backends.add(backend)
    lines = _table_header(results) + rows + [""]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines + _table_footer(device_type, backends, quick_rows))


def _ordered_records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows by family, then in each family's own case order."""
    cases = results.get("cases", {})
    return [cases[k] for k in sorted(cases, key=lambda k: (k.split("/")[0], _case_order(results, k)))]


def _table_header(results: dict[str, Any]) -> list[str]:
    gpu = results.get("gpu") or "none"
    if results.get("device") == "cuda":
        gpu = f"{gpu} (timed on it, CUDA {results.get('torch_cuda')})"
    return [
        f"# fastgp benchmarks — `{results.get('machine', '?')}`",
        "",
        f"CPU: {results.get('cpu_model')} · {results.get('cores')} cores · torch threads "
        f"{results.get('torch_threads')} · GPU: {gpu} · torch {results.get('torch')} · "
        f"Python {results.get('python')} · updated {results.get('updated')}",
        "",
        "| case | shape | fastgp ms | reference ms | compile ms | speed-up vs reference | speed-up vs compile "
        "| ATen ops (fastgp / reference) | intermediate MB (fastgp / reference) | copy-roofline ms | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]


def _target_text(rec: dict[str, Any]) -> str:
    texts = []
    target = rec.get("target")
    if target:
        shown = "—" if target["ratio"] is None else f"{target['ratio']:.2f}×"
        texts.append(f"≥{target['min_ratio']:g}× vs {target['vs']}: **{target['status']}** ({shown})")
    bound = rec.get("copy_target")
    if bound:
        shown = "—" if bound["ratio"] is None else f"{bound['ratio']:.2f}×"
        texts.append(f"≤{bound['max_ratio']:g}× copy: **{bound['status']}** ({shown})")
    return "; ".join(texts)


def _table_row(rec: dict[str, Any]) -> str:
    c = rec.get("contenders", {})
    fast, ref, comp = c.get("fastgp", {}), c.get("reference", {}), c.get("compile", {})
    name = f"{rec['family']}/{rec['name']}" + (" *(quick)*" if rec.get("quick") else "")
    cells = [
        name,
        rec["shape"],
        _ms(fast),
        _ms(ref),
        _ms(comp),
        _ratio(rec.get("ratios", {}).get("reference/fastgp")),
        _ratio(rec.get("ratios", {}).get("compile/fastgp")),
        _pair(fast, ref, "aten_ops", fmt="{:.4g}"),
        _pair(fast, ref, "bytes_allocated", scale=1e6, fmt="{:.2f}"),
        _ms(rec.get("copy", {}), band=False),
        _target_text(rec),
    ]
    return "| " + " | ".join(cells) + " |"


def _row_notes(rec: dict[str, Any]) -> list[str]:
    """The row's derived figures, a load warning, and the case's own notes, as bullet lines."""
    where = f"`{rec['family']}/{rec['name']}` {rec['shape']}"
    notes = [f"- {where}: {text}" for text in (rec.get("derived") or {}).get("markdown", [])]
    triton = rec.get("contenders", {}).get(TRITON)
    if triton is not None:  # CUDA: the Triton backend timed beside the extension
        ratio = rec.get("ratios", {}).get(f"reference/{TRITON}")
        speed = f", {_ratio(ratio)} vs reference" if ratio is not None else ""
        notes.append(f"- {where}: fastgp on its Triton backend: {_ms(triton)} ms{speed}")
    share = rec.get("other_processes_cpu_share")
    if share is not None and share > 0.10:
        notes.append(
            f"- {where}: ⚠ other processes used "
            f"{100 * share:.0f}% of the machine's CPU (mean over the kept rounds) while this case was "
            "timed: absolute times are inflated; the ratios are protected only as far as round-robin "
            "alternation spreads the load"
        )
    notes += [f"- {where}: {note}" for note in rec.get("notes", [])]
    return notes


def _table_footer(device_type: str, backends: set[str], quick_rows: int) -> list[str]:
    if device_type == "cuda":
        clock = "CUDA events around each block, the GPU synchronized before it"
        where = "CUDA"
    else:
        clock, where = "`time.perf_counter`", "the CPU"
    return [
        "Columns: times are the median milliseconds per call over alternating rounds, with the "
        "p20–p80 band in parentheses; all contenders of a case (and its copy roofline) are timed "
        f"round-robin in one process after warm-up ({clock}). Speed-up = baseline ms / "
        "fastgp ms. *compile* is `torch.compile` of the reference; where its first call raises, the "
        "cell quotes the exception. *ATen ops*: operator calls (ATen and `torch.ops.fastgp.*`, "
        "forward, backward and optimizer) that reach a `TorchDispatchMode` during one call. "
        "*Intermediate MB*: the sum of `nbytes` of those ops' tensor outputs that share storage "
        "with none of the op's inputs, i.e. fresh allocations (views and in-place results are not "
        "counted; a fused kernel's private scratch is not visible). *copy-roofline*: a plain "
        "`dst.copy_(src)` moving the same number of bytes (read + written) as the op must move at "
        "the least, timed in the same loop. *target*: the speed-up the case must reach; a MISSED "
        "target is a finding, reported as measured.",
        "",
        f"fastgp backend on {where}: {', '.join(sorted(backends)) or 'unknown'}."
        + (f" Rows marked *(quick)* come from `--quick` (few rounds): smoke-test figures only." if quick_rows else ""),
        "",
    ]


def _case_order(results: dict[str, Any], key: str) -> int:
    return results["cases"][key].get("order", 0)


def write_results(
    out_dir: Path,
    records: list[dict[str, Any]],
    replace_families: set[str],
    device: torch.device | str = "cpu",
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    slug_ = machine_slug(device)
    json_path, md_path = out_dir / f"{slug_}.json", out_dir / f"{slug_}.md"
    results = upsert(load_results(json_path), records, replace_families, device)
    tmp = json_path.with_suffix(".json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, json_path)
    md_path.write_text(render_markdown(results))
    return json_path, md_path


@contextlib.contextmanager
def threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
