"""The one place that decides which implementation of an op runs.

Three backends implement every op of ``OPS`` (op name -> family) with the signature of its
schema in ``csrc/ops.cpp``; ``PROVIDERS`` says where each backend keeps them:

``extension``  ``torch.ops.fastgp.<op>``: the C++ CPU kernels and the CUDA kernels of ``fastgp._C``;
``triton``     ``fastgp.triton.<family>.<op>``: Triton kernels (CUDA tensors; CPU tensors only under
               the Triton interpreter, ``TRITON_INTERPRET=1``);
``reference``  ``fastgp.reference.<family>.<op>``: pure PyTorch, always available.

``tests/test_contract.py`` checks these two tables against the registered schemas: every backend
implements every op, with the schema's argument names.

``auto`` (the default) picks, per call and per device, the first available of
``extension → triton → reference`` on CUDA and ``extension → reference`` on the CPU. A choice is
forced with ``fastgp.set_backend(name)``, the ``fastgp.use_backend(name)`` context manager, or the
``FASTGP_BACKEND`` environment variable; forcing a backend that cannot run on a tensor's device
raises an error that says why.

Dispatch runs inside ``torch.compile``d code on every supported torch: the choice is kept in plain
module and thread-local state (torch 2.11's Dynamo cannot trace ``ContextVar.get``), and
providers are found through ``sys.modules`` after their first load (Dynamo does not trace
``importlib``). A first call that would load Triton happens in eager code, or earlier:
``set_backend("triton")`` / ``use_backend("triton")`` load it when they are called.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import sys
import threading
import warnings
from types import ModuleType

import torch

BACKENDS = ("extension", "triton", "reference")
_AUTO_ORDER = {"cuda": ("extension", "triton", "reference"), "cpu": ("extension", "reference")}
_ENV_VAR = "FASTGP_BACKEND"

# The one table of fastgp's ops: op name -> family (the schemas are in csrc/ops.cpp).
OPS = {
    "interpolate": "penalty",
    "interpolate_random": "penalty",
    "grad_norm_penalty_forward": "penalty",
    "grad_norm_penalty_backward": "penalty",
    "grad_norm_penalty_sum": "penalty",
    "spectral_power_iteration": "spectral",
    "spectral_power_iteration_grouped": "spectral",
    "translate": "augment",
    "translate_backward": "augment",
    "far_select": "select",
    "far_batch": "select",
    "pixelwise_combine": "combine",
    "nearest_distance": "correction",
}
FAMILIES = tuple(dict.fromkeys(OPS.values()))

# Backend -> where it keeps a family's ops: an object whose attribute <op> is the implementation
# (the extension's ops of every family live in the one namespace torch.ops.fastgp).
PROVIDERS = {
    "extension": "torch.ops.fastgp",
    "triton": "fastgp.triton.{family}",
    "reference": "fastgp.reference.{family}",
}

# The requested backend. The context manager's choice is per thread (a threading.local, which
# Dynamo traces and guards on, unlike a ContextVar), set_backend's is global.
_thread_state = threading.local()
_global_choice: str | None = None


class BackendUnavailableError(RuntimeError):
    """A forced backend cannot run on the device of the given tensors."""


# --------------------------------------------------------------------------------------------
# Loading the compiled extension and Triton, once, remembering why either failed
# --------------------------------------------------------------------------------------------

_extension_error: str | None = None
_extension_loaded = False
_extension_checked = False
# Why the extension must be compiled just in time ("not built yet", "fastgp._C was built for
# torch X"): set when no pre-built library can be loaded, cleared once the first fused op compiled it.
_extension_pending: str | None = None
# How the loaded library came ("pre-built", "compiled just in time") and its path.
_extension_source: str | None = None
_extension_library: str | None = None
_extension_lock = threading.Lock()
_triton_error: str | None = None
_triton_checked = False


def _build_helpers():
    from . import _build

    return _build


def _warn_unavailable() -> None:
    warnings.warn(
        f"fastgp: the compiled extension is unavailable ({_extension_error}); "
        "falling back to the next backend (Triton or pure PyTorch). `python -m fastgp info` explains.",
        RuntimeWarning,
        stacklevel=3,
    )


def _load_extension() -> bool:
    """Load the compiled extension if that needs no compiler; warn once if a library is there but fails.

    Loads the pre-built ``fastgp._C`` (setup.py's) when its record says it is for the running torch
    (or has no record: a build by an older fastgp), else the just-in-time build of an earlier
    process. Never compiles: ``import fastgp`` calls this and stays fast; the first fused op calls
    ``_ensure_extension``, which compiles when this leaves ``_extension_pending`` set.
    """
    global _extension_loaded, _extension_error, _extension_checked, _extension_pending, _extension_source, _extension_library
    if _extension_checked:
        return _extension_loaded
    _extension_checked = True
    build = _build_helpers()
    library = build.prebuilt_library()
    if library is not None:
        record = build.read_record(os.path.dirname(library))
        if record is not None and record["tag"] != build.torch_tag():
            library = None
            _extension_pending = (f"fastgp._C was built for torch {record.get('torch', '?')} ({record['tag']}), "
                                  f"this is {build.torch_tag()}")
    else:
        _extension_pending = "not built yet"
    try:
        if library is not None:
            importlib.import_module("fastgp._C")
            _extension_source, _extension_library = "pre-built", library
        elif build.jit_library() is not None:
            # An earlier process compiled it: load it as it is (a source change in a checkout is
            # the pre-built library's business, and `pip install -e .` rebuilds that).
            _extension_library = build.jit_library()
            torch.ops.load_library(_extension_library)
            _extension_source = "compiled just in time (cached)"
            _extension_pending = None
        else:
            return False
        _extension_loaded = True
    except Exception as error:  # ImportError, OSError (undefined symbol), anything the loader raises
        _extension_pending = None
        _extension_error = f"{type(error).__name__}: {error}"
        if isinstance(error, ModuleNotFoundError):
            _extension_error = ("fastgp._C is missing or cannot be imported: reinstall with "
                                "pip install --no-build-isolation . (or remove the library to compile it on first use)")
        elif library is not None:
            _extension_error += " (rebuild it for this torch: pip install --no-build-isolation -e . in the source folder)"
        _warn_unavailable()
    return _extension_loaded


# The fused ops' fake (meta) kernels are registered by their family modules when they are imported
# and the extension is loaded; after a just-in-time build they are registered here.
_FAKE_KERNEL_MODULES = tuple(f"fastgp.{family}" for family in FAMILIES)


def _compile_extension() -> None:
    global _extension_loaded, _extension_error, _extension_pending, _extension_source, _extension_library
    with _extension_lock:  # one thread compiles; the others wait and see its result
        if _extension_pending is None:
            return
        reason, _extension_pending = _extension_pending, None
        _compile_extension_for(reason)


def _compile_extension_for(reason: str) -> None:
    global _extension_loaded, _extension_error, _extension_source, _extension_library
    build = _build_helpers()
    if not build.jit_enabled():
        _extension_error = (f"{reason}; compiling on first use is off (FASTGP_JIT=0): build it with "
                            "pip install --no-build-isolation -e . in the source folder, or unset FASTGP_JIT")
        _warn_unavailable()
        return
    try:
        path = build.jit_build(reason)
    except Exception as error:
        _extension_error = (f"{reason} and compiling it failed: {error}. Install a C++ compiler and ninja, or "
                            "pre-build it with pip install --no-build-isolation -e . in the source folder")
        _warn_unavailable()
        return
    _extension_loaded = True
    _extension_source, _extension_library = "compiled just in time", path
    for name in _FAKE_KERNEL_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "_register_fake_kernels"):
            module._register_fake_kernels()


# While False (inside ``report``), asking for the extension never compiles it.
_compile_allowed = True


def _ensure_extension() -> bool:
    """``_load_extension``, and on the first fused op compile the extension just in time when no
    build for the running torch exists yet (``fastgp._build.jit_build``): once per torch version,
    cached, a line on stderr while it compiles."""
    if _load_extension() or _extension_pending is None or not _compile_allowed:
        return _extension_loaded
    compile_now = _compile_extension
    if "torch._dynamo" in sys.modules and torch.compiler.is_compiling():
        # A first fused op inside torch.compile: compiling is never traced (the graph breaks here).
        # Decorating the function instead would import Dynamo with fastgp, slowing every import.
        compile_now = torch.compiler.disable(_compile_extension)
    compile_now()
    return _extension_loaded


def extension_status() -> str:
    """How the extension stands, without compiling it: pre-built / compiled just in time (cached) /
    not built yet / unavailable, with the path or the reason."""
    if _load_extension():
        return f"{_extension_source}: {_extension_library}"
    if _extension_pending is not None:
        build = _build_helpers()
        how = ("the first fused op compiles it" if build.jit_enabled()
               else "compiling on first use is off (FASTGP_JIT=0)")
        why = "" if _extension_pending == "not built yet" else f" for this torch ({_extension_pending})"
        return f"not built yet{why}: {how} into {build.cache_dir()}"
    return f"failed: {_extension_error}"


_extension_cuda: bool | None = None


def extension_has_cuda() -> bool:
    """Whether ``fastgp._C`` was built with its CUDA kernels (asked once: Dynamo cannot trace the
    dispatcher query, and the answer does not change once the library is loaded)."""
    global _extension_cuda
    if _extension_cuda is None:
        if not _ensure_extension():
            return False
        _extension_cuda = torch._C._dispatch_has_kernel_for_dispatch_key("fastgp::interpolate", "CUDA")
    return _extension_cuda


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _check_triton() -> str | None:
    """None when Triton imports, else the reason it does not."""
    global _triton_checked, _triton_error
    if not _triton_checked:
        _triton_checked = True
        try:
            importlib.import_module("triton")
        except Exception as error:
            _triton_error = f"Triton not installed ({type(error).__name__}: {error})"
    return _triton_error


def unavailable_reason(name: str, device_type: str) -> str | None:
    """None if backend ``name`` can run on ``device_type`` tensors, else a one-line reason."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS + ('auto',)}, got {name!r}")
    if device_type not in _AUTO_ORDER:
        return f"device type {device_type!r} is not supported by fastgp (only cpu and cuda)"
    if name == "reference":
        return None
    if name == "extension":
        if not _ensure_extension():
            return _extension_error or extension_status()
        if device_type == "cuda":
            if not extension_has_cuda():
                return ("fastgp._C was built without CUDA kernels (no GPU visible at build time, a CPU-only torch or "
                        "no CUDA toolkit; FASTGP_BUILD_CUDA=1 builds them)")
            if not torch.cuda.is_available():
                return "no GPU visible"
        return None
    # triton
    reason = _check_triton()
    if reason is not None:
        return reason
    if device_type == "cuda" and not torch.cuda.is_available():
        return "no GPU visible"
    if device_type == "cpu" and not _triton_interpreted():
        return "Triton runs on CPU tensors only under the interpreter (set TRITON_INTERPRET=1 before import)"
    return None


# --------------------------------------------------------------------------------------------
# Choosing
# --------------------------------------------------------------------------------------------


def _validate(name: str | None, where: str) -> str | None:
    if name is None or name == "auto":
        return None
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"{where} must be one of {BACKENDS + ('auto',)}, got {name!r}")
    return name


def _preload(name: str | None) -> None:
    """Load a forced Python backend's family modules now, in eager code, so that compiled code
    calling its ops finds them in sys.modules (only where the backend can run at all)."""
    if name == "triton" and (torch.cuda.is_available() or _triton_interpreted()) and _check_triton() is None:
        for family in FAMILIES:
            provider(name, family)


def set_backend(name: str | None) -> None:
    """Force a backend for every later call (``"auto"`` or ``None`` restores automatic choice)."""
    global _global_choice
    _global_choice = _validate(name, "backend")
    _preload(_global_choice)


@contextlib.contextmanager
def use_backend(name: str | None):
    """Context manager forcing a backend inside the ``with`` block (``"auto"`` inside a forced one).

    Nested blocks restore the outer choice on exit, also when the block raises; the choice holds
    for the calling thread only (other threads keep theirs, or set_backend's)."""
    choice = _validate(name, "backend")
    _preload(choice)
    previous = getattr(_thread_state, "choice", None)
    _thread_state.choice = choice or "auto"
    try:
        yield
    finally:
        _thread_state.choice = previous


def get_backend() -> str:
    """The requested backend: the context manager's, else set_backend's, else FASTGP_BACKEND, else auto."""
    context = getattr(_thread_state, "choice", None)
    if context is not None:
        return context
    if _global_choice is not None:
        return _global_choice
    return _validate(os.environ.get(_ENV_VAR), f"environment variable {_ENV_VAR}") or "auto"


def resolve(device: torch.device | str) -> str:
    """Name of the backend that runs an op on ``device`` now."""
    device_type = torch.device(device).type
    requested = get_backend()
    if requested != "auto":
        reason = unavailable_reason(requested, device_type)
        if reason is not None:
            raise BackendUnavailableError(
                f"fastgp backend {requested!r} was requested but cannot run on {device_type} tensors: {reason}"
            )
        return requested
    for name in _AUTO_ORDER.get(device_type, ("reference",)):
        if unavailable_reason(name, device_type) is None:
            return name
    return "reference"


_providers: dict[tuple[str, str], object] = {}


def provider(name: str, family: str):
    """The object whose attributes are backend ``name``'s ops of ``family`` (see ``PROVIDERS``)."""
    found = _providers.get((name, family))
    if found is None:
        if name not in PROVIDERS or family not in FAMILIES:
            raise ValueError(f"unknown backend {name!r} or family {family!r}")
        if name == "extension":
            found = torch.ops.fastgp
        else:
            qualname = PROVIDERS[name].format(family=family)
            # sys.modules first: Dynamo traces a dict lookup, not importlib.
            found = sys.modules.get(qualname) or importlib.import_module(qualname)
        _providers[(name, family)] = found
    return found


def implementation(name: str, op: str):
    """Backend ``name``'s implementation of ``op`` (a name of ``OPS``)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}: fastgp's ops are {sorted(OPS)}")
    return getattr(provider(name, OPS[op]), op)


def kernels(family: str, device: torch.device | str) -> ModuleType:
    """The module-like object providing ``family``'s raw kernels for ``device``."""
    return provider(resolve(device), family)


# --------------------------------------------------------------------------------------------
# Explaining
# --------------------------------------------------------------------------------------------


def report() -> dict:
    """Versions, how the compiled extension stands and, per device type, each backend's
    availability (with the reason when missing). Never compiles the extension."""
    global _compile_allowed
    _compile_allowed = False
    try:
        return _report()
    finally:
        _compile_allowed = True


def _extension_built_for() -> str | None:
    """The torch the loaded (or pre-built) library was compiled for, from its record."""
    build = _build_helpers()
    library = _extension_library or build.prebuilt_library()
    record = build.read_record(os.path.dirname(library)) if library else None
    if record is None:
        return "not recorded (built by an older fastgp)" if library else None
    return record["tag"] + (" (this torch)" if record["tag"] == build.torch_tag() else " (NOT this torch)")


def _report() -> dict:
    from . import __version__

    try:
        import triton

        triton_version = triton.__version__
    except Exception:
        triton_version = None
    devices = {}
    for device_type in ("cpu", "cuda"):
        devices[device_type] = {name: unavailable_reason(name, device_type) for name in BACKENDS}
    selected = {}
    for device_type in devices:
        try:
            selected[device_type] = resolve(device_type)
        except BackendUnavailableError as error:
            selected[device_type] = f"error: {error}"
    return {
        "fastgp": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "extension": extension_status(),
        "extension_built_for": _extension_built_for(),
        "extension_cuda_kernels": extension_has_cuda() if _load_extension() else False,
        "requested": get_backend(),
        "selected": selected,
        "devices": devices,
    }


def info(file=None) -> str:
    """Print (and return) which backends are available for each device, and why not when not."""
    data = report()
    lines = [
        f"fastgp {data['fastgp']}  torch {data['torch']} (CUDA {data['torch_cuda'] or 'none'})  "
        f"triton {data['triton'] or 'not installed'}  python {data['python']}",
        f"extension: {data['extension']}",
        f"extension built for: {data['extension_built_for'] or '-'}",
        f"GPUs visible: {data['gpu_count']}; extension CUDA kernels: {'built' if data['extension_cuda_kernels'] else 'not built'}",
        f"requested backend: {data['requested']}"
        + (f" (from {_ENV_VAR})" if os.environ.get(_ENV_VAR) else ""),
    ]
    if data["gpu_count"] and not data["extension_cuda_kernels"]:
        # The usual cause: fastgp was installed where no GPU was visible (a login node, a build
        # machine), so only the CPU kernels were compiled. CUDA tensors still run (Triton, else
        # the reference), but the fused CUDA kernels are one rebuild away.
        serves = "Triton serves CUDA tensors" if data["triton"] else "the pure-PyTorch reference serves CUDA tensors"
        lines.append(
            f"note: a GPU is visible but fastgp._C has no CUDA kernels ({serves}); to build them, "
            "reinstall from the source folder with: FASTGP_BUILD_CUDA=1 pip install --no-build-isolation -e ."
        )
    for device_type, backends in data["devices"].items():
        lines.append(f"{device_type}:")
        for name, reason in backends.items():
            lines.append(f"  {name:<10} {'available' if reason is None else 'unavailable: ' + reason}")
        if device_type in data["selected"]:
            lines.append(f"  -> runs: {data['selected'][device_type]}")
    text = "\n".join(lines)
    print(text, file=file or sys.stdout)
    return text
