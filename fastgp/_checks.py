"""Argument checks shared by every op family.

Each check raises TypeError for a wrong type or dtype and ValueError for a wrong value, shape or
device, with a message that names the argument and says what was expected.
"""

from __future__ import annotations

import math
import numbers

import torch

FLOATING_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(value, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def floating(value, name: str) -> torch.Tensor:
    tensor(value, name)
    if value.dtype not in FLOATING_DTYPES:
        raise TypeError(
            f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), got {value.dtype}"
        )
    return value


def batch(value, name: str, min_rank: int = 2) -> torch.Tensor:
    """A floating [B, ...] tensor of rank >= min_rank with B >= 1."""
    floating(value, name)
    if value.dim() < min_rank:
        raise ValueError(
            f"{name} must have a batch dimension and at least {min_rank} dimensions "
            f"([B, ...]), got shape {list(value.shape)}"
        )
    if value.shape[0] == 0:
        raise ValueError(f"{name} has an empty batch (shape {list(value.shape)}); need at least one sample")
    return value


def same_as(value: torch.Tensor, name: str, other: torch.Tensor, other_name: str) -> None:
    """``value`` matches ``other`` in shape, dtype and device."""
    if value.shape != other.shape:
        raise ValueError(
            f"{name} and {other_name} must have the same shape, got {list(value.shape)} and {list(other.shape)}"
        )
    same_dtype_device(value, name, other, other_name)


def same_dtype_device(value: torch.Tensor, name: str, other: torch.Tensor, other_name: str) -> None:
    """``value`` matches ``other`` in dtype and device (the shapes may differ)."""
    if value.dtype != other.dtype:
        raise TypeError(f"{name} and {other_name} must have the same dtype, got {value.dtype} and {other.dtype}")
    if value.device != other.device:
        raise ValueError(f"{name} and {other_name} must be on the same device, got {value.device} and {other.device}")


def real_number(value, name: str, minimum: float | None = None) -> float:
    """A finite real number (not a bool), optionally >= minimum; returned as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def integer(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def boolean(value, name: str) -> bool:
    """True or False only (not 0/1, None or a tensor: a truthy non-bool is a mistake)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def choice(value, name: str, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}; got {value!r}")
    return value


def generator(value, name: str = "generator") -> torch.Generator | None:
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(value).__name__}")
    return value
