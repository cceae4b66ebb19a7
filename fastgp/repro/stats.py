"""Paired comparisons with bootstrap intervals: how a reproduction's verdict follows from its numbers.

Two settings of an experiment are compared seed by seed: run ``k`` of setting ``a`` and run ``k``
of setting ``b`` share their seed (data, initial weights and noise draws up to where the settings
differ), so the per-seed difference removes much of the seed-to-seed spread. The mean difference
gets a 95 % percentile-bootstrap interval over the seeds, and the outcome says where the interval
lies: entirely on the side the paper claims, entirely on the other side, or across zero.

With 5 seeds the bootstrap interval is narrow-ish and a little optimistic (it cannot be wider than
the seeds' range); the reports say how many seeds each interval rests on.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

AS_CLAIMED, OPPOSITE, INCONCLUSIVE = "as claimed", "opposite", "inconclusive"
OUTCOMES = (AS_CLAIMED, OPPOSITE, INCONCLUSIVE)
# The words a verdict starts with (a judge's sentence is checked against them).
VERDICTS = ("reproduced in part", "reproduced", "not reproduced", "not testable here")


def bootstrap_ci(values, level: float = 0.95, resamples: int = 10_000, seed: int = 0):
    """``(lo, hi)``: the percentile-bootstrap interval of the mean of ``values`` at ``level``
    (``(None, None)`` with fewer than two values). Deterministic: its own ``random.Random(seed)``,
    so a report's numbers do not depend on the global random state."""
    xs = [float(v) for v in values]
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples: expected an int >= 1, got {resamples!r}")
    if any(not math.isfinite(x) for x in xs):
        return (math.nan, math.nan)  # a diverged run: reported, not hidden
    n = len(xs)
    if n < 2:
        return (None, None)
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(xs) for _ in range(n)) / n for _ in range(resamples))
    tail = (1 - level) / 2
    lo = means[max(0, math.floor(tail * resamples))]
    hi = means[min(resamples - 1, math.ceil((1 - tail) * resamples) - 1)]
    return (lo, hi)


@dataclass(frozen=True)
class Comparison:
    """Setting ``a`` against setting ``b`` on metric ``key``, paired by seed; ``expect`` is the
    paper's claim about the difference a − b: ``">"`` (a is larger) or ``"<"``. With ``b_key``,
    b's metric ``b_key`` is the other side (two quantities of the same runs when ``a == b``: e.g.
    D's mean output on training reals against that on held-out reals, paired within each run)."""

    a: str
    b: str
    key: str
    expect: str
    label: str = ""
    b_key: str = ""

    def __post_init__(self):
        if self.expect not in (">", "<"):
            raise ValueError(f"expect: expected '>' or '<', got {self.expect!r}")


def compare_values(a_by_seed: dict, b_by_seed: dict, expect: str, *, level: float = 0.95) -> dict:
    """The paired comparison of two settings' values (``{seed: value}``; seeds missing from either,
    or with a None value, are left out): ``{"mean", "lo", "hi", "n", "outcome"}`` of the
    differences a − b. ``outcome`` is "as claimed" where the whole interval lies on the side of 0
    that ``expect`` names, "opposite" where it lies wholly on the other side, else "inconclusive"
    (the interval contains 0, there are fewer than two pairs, or a value is not finite)."""
    if expect not in (">", "<"):
        raise ValueError(f"expect: expected '>' or '<', got {expect!r}")
    seeds = sorted(s for s in a_by_seed if s in b_by_seed and a_by_seed[s] is not None and b_by_seed[s] is not None)
    diffs = [float(a_by_seed[s]) - float(b_by_seed[s]) for s in seeds]
    n = len(diffs)
    mean = sum(diffs) / n if n else None
    lo, hi = bootstrap_ci(diffs, level=level)
    outcome = INCONCLUSIVE
    if lo is not None and math.isfinite(lo) and math.isfinite(hi):
        above, below = lo > 0, hi < 0
        if (above and expect == ">") or (below and expect == "<"):
            outcome = AS_CLAIMED
        elif above or below:
            outcome = OPPOSITE
    return {"mean": mean, "lo": lo, "hi": hi, "n": n, "outcome": outcome}


def run_comparison(comparison: Comparison, settings: list[dict]) -> dict:
    """``compare_values`` for ``comparison`` over an experiment's results (``results["settings"]``:
    each with ``name`` and ``runs`` of ``{"seed", "values"}``), with the comparison's fields."""
    by_name = {s["name"]: s for s in settings}
    for name, role in ((comparison.a, "a"), (comparison.b, "b")):
        if name not in by_name:
            raise ValueError(f"comparison {role}: no setting named {name!r} (settings: {', '.join(by_name)})")

    def values(name, key):
        return {r["seed"]: r["values"].get(key) for r in by_name[name]["runs"]}

    b_key = comparison.b_key or comparison.key
    out = {"a": comparison.a, "b": comparison.b, "key": comparison.key, "b_key": b_key, "expect": comparison.expect,
           "label": comparison.label or f"{comparison.a} {comparison.expect} {comparison.b}"}
    out.update(compare_values(values(comparison.a, comparison.key), values(comparison.b, b_key), comparison.expect))
    return out


def outcomes(comparisons: list[dict]) -> list[str]:
    """The outcome of each comparison, in order (for a judge's rules)."""
    return [c["outcome"] for c in comparisons]


def check_verdict(text) -> str:
    """``text`` if it is a verdict sentence that starts with one of ``VERDICTS``; else ValueError."""
    if not isinstance(text, str) or not text.startswith(VERDICTS):
        raise ValueError(f"a judge must return a sentence starting with one of {', '.join(map(repr, VERDICTS))}; "
                         f"got {text!r}")
    return text


def fmt_interval(c: dict, fmt: str = ".3g") -> str:
    """``mean [lo, hi]`` of a comparison, ``—`` where it has no interval."""
    if c["mean"] is None:
        return "—"
    if c["lo"] is None:
        return f"{c['mean']:{fmt}} (one pair: no interval)"
    return f"{c['mean']:{fmt}} [{c['lo']:{fmt}}, {c['hi']:{fmt}}]"


def comparison_table(comparisons: list[dict], labels: dict | None = None, fmt: str = ".3g") -> list[str]:
    """Markdown lines: one row per comparison (the claim, the metric, a − b with its 95 %
    interval, the number of seed pairs, the outcome)."""
    labels = labels or {}
    lines = ["| claim | metric | a − b, mean [95 % bootstrap CI] | pairs | outcome |", "|---|---|---|---|---|"]
    for c in comparisons:
        metric = labels.get(c["key"], c["key"])
        if c.get("b_key", c["key"]) != c["key"]:
            metric += f" − {labels.get(c['b_key'], c['b_key'])}"
        lines.append(f"| {c['label']} | {metric} | {fmt_interval(c, fmt)} | {c['n']} | {c['outcome']} |")
    return lines
