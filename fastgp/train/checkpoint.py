"""Atomic checkpoints and the random-number state that makes a resumed run exact.

A checkpoint is written to a temporary file in the run directory, flushed and fsynced, then
renamed over ``checkpoint.pt`` (an atomic replace on POSIX), and the directory is fsynced so the
rename itself survives a crash: a process killed at any moment leaves the previous complete
checkpoint or the new one, never a partial file (a killed write leaves only its temporary file,
removed when the run is resumed). The payload is serialized in memory first and written with
``os.write``, so a full disk is an ``OSError`` (ENOSPC) of our own write, reported as such.

Every checkpoint carries ``checksum``, a SHA-256 of its content (every tensor's dtype, shape and
bytes, every other value, in order), verified on load: torch's zip reader does not check its CRCs,
so a damaged tensor would otherwise load silently. A checkpoint written before checksums existed
loads with a warning that it cannot be verified. Loading checks the format and every component;
anything unreadable or incompatible raises ``CheckpointError`` — a run is never silently
restarted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import random
import tempfile
import warnings

import numpy as np
import torch

FORMAT = "fastgp.train/1"
NAME = "checkpoint.pt"
TMP_PREFIX = ".checkpoint-"
KEYS = ("format", "step", "d_step", "config", "models", "optimizers", "rng")
CHECKSUM = "checksum"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not match the run."""


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """torch (CPU and CUDA), Python and NumPy global states plus the run's own generators.
    Stored as tensors and plain Python values so ``torch.load(weights_only=True)`` reads them."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    missing = set(generators) - set(state["generators"])
    if missing:
        raise CheckpointError(f"checkpoint has no state for the generator(s) {sorted(missing)}")
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def _update(h, obj) -> None:
    """Feed ``obj`` into the hash ``h`` canonically: the same value gives the same bytes before
    saving and after ``torch.load`` (types are part of it, dicts in their stored order)."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{list(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)};".encode())
        for key, value in obj.items():
            _update(h, key)
            _update(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__[0]}{len(obj)};".encode())
        for value in obj:
            _update(h, value)
    else:  # str, int, float, bool, None (repr round-trips floats exactly)
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def checksum(payload: dict) -> str:
    """SHA-256 (hex) of a checkpoint payload's content, its own ``checksum`` entry left out."""
    h = hashlib.sha256()
    _update(h, {k: v for k, v in payload.items() if k != CHECKSUM})
    return h.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def save_atomically(obj, path: str) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same directory (fsynced,
    renamed over ``path``, directory fsynced): readers see the old file or the new one."""
    directory = os.path.dirname(path) or "."
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".tmp", dir=directory)
    try:
        try:
            _write_all(fd, buffer.getbuffer())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(run_dir: str, payload: dict) -> str:
    """Write ``payload`` with its checksum atomically to run_dir/checkpoint.pt; returns the path.
    A full disk (or any other write error) is a CheckpointError; the previous checkpoint stays."""
    path = os.path.join(run_dir, NAME)
    payload = {"format": FORMAT, **payload}
    payload[CHECKSUM] = checksum(payload)
    try:
        save_atomically(payload, path)
    except OSError as e:
        why, remedy = _write_failure(e)
        raise CheckpointError(
            f"cannot write {path}: {why}; the previous checkpoint is kept: {remedy}, then continue with "
            f"--resume {run_dir}"
        ) from None
    return path


def _write_failure(e: OSError) -> tuple[str, str]:
    """(what happened, what to do) for a failed write: a full disk or quota said as such."""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    why = "the disk is full" if full else "the write failed"
    return f"{why} ({e.strerror or e})", "free some space" if full else "fix the cause"


def append_line(run_dir: str, name: str, line: str) -> None:
    """Append ``line`` to run_dir/name (the metrics log) through ``os.write``. A failed write (a full
    disk) cuts the file back to its length before, so the records already written are kept whole
    (no torn last line), and is a CheckpointError saying why and how to continue."""
    path = os.path.join(run_dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        try:
            _write_all(fd, line.encode("utf-8"))
        except OSError as e:
            with contextlib.suppress(OSError):  # a resume drops a torn last line anyway
                os.ftruncate(fd, size)
            why, remedy = _write_failure(e)
            then = (f"continue with --resume {run_dir}" if os.path.exists(os.path.join(run_dir, NAME))
                    else "start the run again")
            raise CheckpointError(
                f"cannot append to {path}: {why}; the records written before are kept: {remedy}, then {then}"
            ) from None
    finally:
        os.close(fd)


def remove_stale_temporaries(run_dir: str) -> None:
    """Delete temporary files of checkpoint writes that a killed process left behind."""
    for name in os.listdir(run_dir):
        if name.startswith(TMP_PREFIX) and name.endswith(".tmp"):
            os.unlink(os.path.join(run_dir, name))


def load(run_dir: str) -> dict:
    path = os.path.join(run_dir, NAME)
    if not os.path.isfile(path):
        raise CheckpointError(f"--resume {run_dir}: no {NAME} there (was the run started with --out {run_dir}?)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"{path} is corrupt or not a fastgp checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} has format {found!r}; this fastgp reads {FORMAT!r}")
    stored = payload.pop(CHECKSUM, None)
    if stored is None:
        warnings.warn(f"{path} has no checksum (written by an earlier fastgp): it is loaded unverified",
                      stacklevel=2)
    elif stored != checksum(payload):
        raise CheckpointError(f"{path} is damaged: its content does not match the checksum written with it")
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}")
    for key in ("step", "d_step"):
        value = payload[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{path}: {key} must be an int >= 0, got {value!r} ({type(value).__name__})")
    return payload


def check_optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module, name: str) -> None:
    """A ValueError naming the first per-parameter state tensor (Adam's ``exp_avg``, ...) whose shape
    is not its parameter's: ``load_state_dict`` does not check, and the step would fail later."""
    names = {p: n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"optimizer {name}: {key!r} of {names.get(p, 'a parameter')} has shape "
                                     f"{list(value.shape)}, the parameter {list(p.shape)}")


def load_module(module: torch.nn.Module, state: dict, name: str, path: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {name} does not match this configuration: {e}") from None
