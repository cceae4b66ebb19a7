"""The one place that decides which implementation of an op runs.

Three backends provide every op family under the same function names:

``extension``  ``torch.ops.fastgp.*``: the C++ CPU kernels and the CUDA kernels of ``fastgp._C``;
``triton``     ``fastgp.triton.<family>``: Triton kernels (CUDA tensors; CPU tensors only under
               the Triton interpreter, ``TRITON_INTERPRET=1``);
``reference``  ``fastgp.reference.<family>``: pure PyTorch, always available.

``auto`` (the default) picks, per call and per device, the first available of
``extension → triton → reference`` on CUDA and ``extension → reference`` on the CPU. A choice is
forced with ``fastgp.set_backend(name)``, the ``fastgp.use_backend(name)`` context manager, or the
``FASTGP_BACKEND`` environment variable; forcing a backend that cannot run on a tensor's device
raises an error that says why.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import platform
import sys
import warnings
from types import ModuleType

import torch

BACKENDS = ("extension", "triton", "reference")
_AUTO_ORDER = {"cuda": ("extension", "triton", "reference"), "cpu": ("extension", "reference")}
_ENV_VAR = "FASTGP_BACKEND"

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastgp_backend", default=None)
_global_choice: str | None = None


class BackendUnavailableError(RuntimeError):
    """A forced backend cannot run on the device of the given tensors."""


# --------------------------------------------------------------------------------------------
# Loading the compiled extension and Triton, once, remembering why either failed
# --------------------------------------------------------------------------------------------

_extension_error: str | None = None
_extension_loaded = False
_triton_error: str | None = None
_triton_checked = False


def _load_extension() -> bool:
    """Import ``fastgp._C`` (which registers ``torch.ops.fastgp.*``); warn once if it fails."""
    global _extension_loaded, _extension_error
    if _extension_loaded or _extension_error is not None:
        return _extension_loaded
    try:
        importlib.import_module("fastgp._C")
        _extension_loaded = True
    except Exception as error:  # ImportError, OSError (undefined symbol), anything the loader raises
        _extension_error = f"{type(error).__name__}: {error}"
        if isinstance(error, ModuleNotFoundError):
            _extension_error = "not built (fastgp._C is missing: reinstall with pip install --no-build-isolation .)"
        warnings.warn(
            f"fastgp: the compiled extension is unavailable ({_extension_error}); "
            "falling back to the next backend (Triton or pure PyTorch). `python -m fastgp info` explains.",
            RuntimeWarning,
            stacklevel=2,
        )
    return _extension_loaded


def extension_has_cuda() -> bool:
    """Whether ``fastgp._C`` was built with its CUDA kernels."""
    return _load_extension() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "fastgp::interpolate", "CUDA"
    )


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
        if not _load_extension():
            return _extension_error
        if device_type == "cuda":
            if not extension_has_cuda():
                return "fastgp._C was built without CUDA kernels (CPU-only torch or no CUDA toolkit)"
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


def set_backend(name: str | None) -> None:
    """Force a backend for every later call (``"auto"`` or ``None`` restores automatic choice)."""
    global _global_choice
    _global_choice = _validate(name, "backend")


@contextlib.contextmanager
def use_backend(name: str | None):
    """Context manager forcing a backend inside the ``with`` block (``"auto"`` inside a forced one)."""
    token = _override.set(_validate(name, "backend") or "auto")
    try:
        yield
    finally:
        _override.reset(token)


def get_backend() -> str:
    """The requested backend: the context manager's, else set_backend's, else FASTGP_BACKEND, else auto."""
    context = _override.get()
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


def kernels(family: str, device: torch.device | str) -> ModuleType:
    """The module-like object providing ``family``'s raw kernels for ``device``."""
    name = resolve(device)
    if name == "extension":
        return torch.ops.fastgp
    return importlib.import_module(f"fastgp.{name}.{family}")


# --------------------------------------------------------------------------------------------
# Explaining
# --------------------------------------------------------------------------------------------


def report() -> dict:
    """Versions and, per device type, each backend's availability (with the reason when missing)."""
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
