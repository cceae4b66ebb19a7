"""Atomic checkpoints and the random-number state that makes a resumed run exact.

A checkpoint is written to a temporary file in the run directory, flushed and fsynced, then
renamed over ``checkpoint.pt`` (an atomic replace on POSIX), and the directory is fsynced so the
rename itself survives a crash: a process killed at any moment leaves the previous complete
checkpoint or the new one, never a partial file (a killed write leaves only its temporary file,
removed when the run is resumed). Loading checks the format and every component;
anything unreadable or incompatible raises ``CheckpointError`` — a run is never silently
restarted.
"""

from __future__ import annotations

import os
import random
import tempfile

import numpy as np
import torch

FORMAT = "fastgp.train/1"
NAME = "checkpoint.pt"
TMP_PREFIX = ".checkpoint-"
KEYS = ("format", "step", "d_step", "config", "models", "optimizers", "rng")


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


def save_atomically(obj, path: str) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file in the same directory (flushed,
    fsynced, renamed over ``path``, directory fsynced): readers see the old file or the new one."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
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
    """Write ``payload`` atomically to run_dir/checkpoint.pt; returns the path."""
    path = os.path.join(run_dir, NAME)
    save_atomically({"format": FORMAT, **payload}, path)
    return path


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
    missing = [k for k in KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is incomplete: missing {', '.join(missing)}")
    return payload


def load_module(module: torch.nn.Module, state: dict, name: str, path: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {name} does not match this configuration: {e}") from None
