"""The check a case's setup runs before anything is timed: fastgp's output against its baseline's.

The harness has no check hook of its own, so a case whose contenders compute the same thing calls
:func:`assert_same` in its ``setup`` on outputs drawn from the same seed; a mismatch raises, which
``python -m bench`` reports as a failed case and ``pytest bench`` as a failed test — a speed-up is
only quoted for code that returns the baseline's values.
"""

from __future__ import annotations

import torch


def assert_same(what: str, got, expected, *, exact: bool = False, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Raise AssertionError naming ``what`` unless the tensors (or tuples of them) agree.

    ``exact``: bit for bit (gathers and selections, which do no arithmetic); otherwise within
    ``rtol``/``atol`` (reductions may round differently on another BLAS or backend).
    """
    got = got if isinstance(got, (tuple, list)) else (got,)
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    if len(got) != len(expected):
        raise AssertionError(f"{what}: fastgp returned {len(got)} tensors, the baseline {len(expected)}")
    for i, (a, b) in enumerate(zip(got, expected)):
        a, b = a.detach(), b.detach()
        if exact:
            if a.shape != b.shape or not torch.equal(a, b):
                raise AssertionError(f"{what}: output {i} of fastgp differs from the baseline's (bit for bit)")
        else:
            try:
                torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
            except AssertionError as error:
                raise AssertionError(f"{what}: output {i} of fastgp differs from the baseline's: {error}") from None
