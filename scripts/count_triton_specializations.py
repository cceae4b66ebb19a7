#!/usr/bin/env python
"""Count the distinct Triton compilations a test selection would trigger on a GPU.

Runs pytest in this process under Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors) and
records, for every kernel launch, the key under which compiled Triton caches a compilation:

* the kernel;
* every ``tl.constexpr`` argument's value;
* every other argument's specialization, as Triton's ``specialize_impl`` computes it (Triton 3.6
  to 3.9): an integer equal to 1 becomes a constant, unless the parameter is in
  ``do_not_specialize``; otherwise its type (i32 or i64) and whether it is divisible by 16 (unless
  in ``do_not_specialize`` or ``do_not_specialize_on_alignment``); a tensor's dtype and whether its
  data pointer is 16-byte aligned (unless in either list); a parameter annotated with a floating or
  boolean type (``x: tl.float64``) only by that type; an unannotated Python float as fp32 (see
  ``Recorder.unannotated_floats``);
* the launch options (``num_warps``, ``num_stages``).

Every distinct key is one compilation on a GPU with a cold cache (0.5-2 s each). The interpreter
sees CPU tensors, whose alignment may differ from CUDA's caching allocator (which aligns every
block to 512 bytes), so the count is an estimate of the GPU's, exact in every other component.

Usage (from the repository root)::

    python scripts/count_triton_specializations.py [--main] [--by-kernel] [-- PYTEST_ARGS...]

Without PYTEST_ARGS it runs ``tests/triton_kernels``. ``--main`` runs instead the main suite's
``cuda-triton`` cases (``-m cuda`` on tests/, backend triton) on CPU tensors: the cases a GPU runs
with the Triton backend.

The module is also a library: ``recording()`` patches the interpreter's launcher and yields the
``Recorder`` that the launches fill (tests/triton_kernels/test_triton_launch_keys.py uses it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import inspect
import os
import sys

_INT32 = range(-(2**31), 2**31)


class Recorder:
    """The specialization keys of the launches inside ``recording()``, and the launches that pass a
    Python float to an unannotated parameter (compiled Triton types it float32)."""

    def __init__(self):
        self.keys: set = set()
        self.launches = 0
        self.unannotated_floats: set = set()

    def by_kernel(self) -> dict:
        counts = collections.Counter(key[0] for key in self.keys)
        return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _param_info(function) -> list:
    """(name, annotation, do_not_specialize, do_not_specialize_on_alignment) per parameter."""
    cached = getattr(function, "_fastgp_param_info", None)
    if cached is not None:
        return cached
    kwargs = getattr(function, "kwargs", {})
    dns = set(kwargs.get("do_not_specialize") or ())
    dnsoa = set(kwargs.get("do_not_specialize_on_alignment") or ())
    info = []
    for index, param in enumerate(inspect.signature(function.fn).parameters.values()):
        annotation = "" if param.annotation is inspect.Parameter.empty else str(param.annotation)
        info.append((param.name, annotation, index in dns or param.name in dns, index in dnsoa or param.name in dnsoa))
    function._fastgp_param_info = info
    return info


def _arg_key(value, annotation: str, no_value: bool, no_alignment: bool):
    import torch

    if "constexpr" in annotation:
        return ("constexpr", repr(value))
    if annotation:  # a typed parameter: specialized by its type only (floats, bools) or as below
        if any(name in annotation for name in ("fp", "float", "bf", "u1", "int1")):
            return (annotation,)
    if isinstance(value, torch.Tensor):
        aligned = None if no_value or no_alignment else value.data_ptr() % 16 == 0
        return (str(value.dtype), aligned)
    if isinstance(value, bool):
        return ("u1",)
    if isinstance(value, int):
        if no_value:
            return ("i32" if value in _INT32 else "i64",)
        if value == 1:
            return ("constexpr", 1)
        return ("i32" if value in _INT32 else "i64", not no_alignment and value % 16 == 0)
    if isinstance(value, float):
        return ("fp32",)
    if value is None:
        return ("none",)
    return (type(value).__name__, repr(value))  # tl.dtype and other constexpr-like objects


@contextlib.contextmanager
def recording(execute: bool = True):
    """Patch the interpreter's ``InterpretedFunction.run`` to record every launch's key into the
    ``Recorder`` it yields (restored on exit). Needs ``TRITON_INTERPRET=1``. With ``execute=False``
    the kernels are not run (outputs stay uninitialized, so tests fail after their first launch
    and later launches of a test are missed: a fast lower bound)."""
    from triton.runtime.interpreter import InterpretedFunction

    recorder = Recorder()
    original = InterpretedFunction.run

    def run(self, *args, grid, warmup, **kwargs):
        info = _param_info(self)
        names = {param[0] for param in info}
        values = list(args) + [kwargs[name] for name, *_ in info[len(args):] if name in kwargs]
        kernel = f"{self.fn.__module__}.{self.fn.__qualname__}"
        key = [kernel]
        for (param, annotation, no_value, no_alignment), value in zip(info, values):
            key.append(_arg_key(value, annotation, no_value, no_alignment))
            if isinstance(value, float) and not annotation:
                recorder.unannotated_floats.add((kernel, param))
        key.append(tuple(sorted((k, v) for k, v in kwargs.items() if k not in names)))  # num_warps, ...
        recorder.keys.add(tuple(key))
        recorder.launches += 1
        if execute:
            return original(self, *args, grid=grid, warmup=warmup, **kwargs)
        return None

    InterpretedFunction.run = run
    try:
        yield recorder
    finally:
        InterpretedFunction.run = original


class _MainSuiteOnTriton:
    """pytest plugin: the main suite's cuda-triton cases, run as cpu-triton cases."""

    def pytest_configure(self, config):
        import helpers  # tests/helpers.py, put on sys.path by tests/conftest.py

        helpers.BACKENDS_BY_DEVICE["cpu"] = ("triton",)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--main", action="store_true", help="run the main suite's cuda-triton cases")
    parser.add_argument("--by-kernel", action="store_true", help="print the count per kernel")
    parser.add_argument("--no-run", action="store_true",
                        help="record launches without running the kernels: minutes instead of an hour on a "
                             "busy CPU, a lower bound (a test stops at its first wrong result)")
    parser.add_argument("pytest_args", nargs="*", help="pytest arguments (after --)")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") != "1":
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are defined: before any import
    import pytest

    pytest_args = args.pytest_args or ["tests/triton_kernels"]
    plugins = []
    if args.main:  # the main suite's cases only (run tests/triton_kernels separately)
        sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
        plugins.append(_MainSuiteOnTriton())
        pytest_args = ["tests", "--ignore=tests/triton_kernels", "-k", "triton", *args.pytest_args]
    with recording(execute=not args.no_run) as recorder:
        code = pytest.main(["-q", "-p", "no:cacheprovider", *pytest_args], plugins=plugins)
    if args.by_kernel:
        for kernel, count in recorder.by_kernel().items():
            print(f"{count:6d}  {kernel}")
    print(f"triton specializations: {len(recorder.keys)} distinct keys over {recorder.launches} launches")
    if recorder.unannotated_floats:
        print("float arguments to unannotated parameters (float32 when compiled):",
              sorted(recorder.unannotated_floats))
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
