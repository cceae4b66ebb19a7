"""Fuzz the regularizers added in the last waves with hostile arguments: every call returns a
result that agrees with a plain-torch oracle, or raises a ValueError / TypeError (or RuntimeError
from a documented refusal) — never a raw torch error, a crash or a silent wrong value.

    python scripts/fuzz_api.py --count 2000 --seed 0

APIs: fastgp.ada.random_apply, AdaptiveAugment.load_state_dict, fastgp.lecam.lecam_penalty,
fastgp.top_k, fastgp.r1_r2_penalty, fastgp.losses.get(name) for the relativistic losses.
"""

from __future__ import annotations

import argparse
import math
import random
import sys

import torch
import torch.nn.functional as F

import fastgp
import fastgp.losses
from fastgp.ada import AdaptiveAugment, random_apply
from fastgp.lecam import lecam_penalty

CLEAR = (ValueError, TypeError)
HOSTILE = [float("nan"), float("inf"), -1, 0, 1, 2.5, True, None, [1], "x", 1e30, -0.0]


def _pick(rng: random.Random, valid: list):
    """A valid value most of the time, a hostile one otherwise."""
    return rng.choice(valid) if rng.random() < 0.7 else rng.choice(HOSTILE)


def _tensor(rng: random.Random, shape=None):
    shape = shape if shape is not None else [rng.choice([0, 1, 3])] + [rng.choice([1, 2, 4])] * rng.choice([0, 1, 3])
    dtype = rng.choice([torch.float32, torch.float64] * 4 + [torch.float16, torch.int64, torch.bool, torch.complex64])
    t = torch.randn(shape).to(dtype) if dtype != torch.bool else torch.rand(shape) > 0.5
    if dtype.is_floating_point and t.numel() and rng.random() < 0.2:
        t.view(-1)[0] = rng.choice([float("nan"), float("inf")])
    return t


def case_random_apply(rng):
    x = _tensor(rng, [rng.choice([0, 2, 3]), 3, 4, 4])
    p = _pick(rng, [0.0, 0.5, 1.0])
    fn = rng.choice([lambda t: t.flip(-1)] * 4 + [lambda t: t[:, :1], lambda t: t[:0], lambda t: t.double(),
                     lambda t: "not a tensor", lambda t: torch.cat([t, t])])
    try:
        out = random_apply(x, p, fn, generator=torch.Generator().manual_seed(0))
    except CLEAR:
        return "refused"
    # Oracle: rows are either x's row or fn(x)'s row, shape and dtype kept.
    assert out.shape[1:] == x.shape[1:] and out.dtype == x.dtype, "random_apply changed the shape or dtype"
    return "ok"


def case_ada_state(rng):
    ada = AdaptiveAugment(4, target=0.6, interval=4, kimg=1)
    before = ada.state_dict()
    state = dict(before)
    for key in rng.sample(sorted(state), rng.randint(1, len(state))):
        state[key] = _pick(rng, [0, 1, 0.5, 3, None])
    try:
        ada.load_state_dict(state)
    except CLEAR:
        assert ada.state_dict() == before, "a refused load_state_dict changed the state"
        return "refused"
    for key, value in ada.state_dict().items():
        assert not (isinstance(value, float) and math.isnan(value)), f"{key} accepted NaN"
        assert not isinstance(value, bool), f"{key} accepted a bool"
    return "ok"


def case_lecam(rng):
    real, fake = _tensor(rng, [rng.choice([0, 3])]), _tensor(rng, [rng.choice([0, 3])])
    anchor_real = _pick(rng, [0.3, torch.tensor(0.3), _tensor(rng, [])])
    anchor_fake = _pick(rng, [-0.3, torch.tensor(-0.3), _tensor(rng, [])])
    try:
        out = lecam_penalty(real, fake, anchor_real, anchor_fake)
    except CLEAR:
        return "refused"
    # Oracle (the authors' lecam_reg): mean(relu(real - anchor_fake)^2) + mean(relu(anchor_real - fake)^2)
    ar, af = torch.as_tensor(anchor_real, dtype=torch.float64), torch.as_tensor(anchor_fake, dtype=torch.float64)
    expected = (F.relu(real.double() - af).pow(2).mean() + F.relu(ar - fake.double()).pow(2).mean())
    assert torch.allclose(out.double(), expected, rtol=1e-3, atol=1e-6, equal_nan=True), (out, expected)
    return "ok"


def case_top_k(rng):
    scores = _tensor(rng, [rng.choice([0, 1, 5])])
    k = _pick(rng, [1, 3, 5, 6])
    try:
        values, index = fastgp.top_k(scores, k)
    except CLEAR:
        return "refused"
    # The documented order (not torch.topk's): descending, NaN after every number, ties by index.
    expected = torch.sort(-scores.reshape(-1), stable=True).indices[:k]
    assert torch.equal(index, expected), (scores, k, index, expected)
    assert torch.equal(values, scores.reshape(-1)[expected]) or torch.allclose(values, scores.reshape(-1)[expected], equal_nan=True)
    return "ok"


def case_r1_r2(rng):
    real = _tensor(rng, [rng.choice([0, 2, 3]), 3, 2, 2])
    fake = _tensor(rng, [rng.choice([2, 3]), 3, 2, 2])
    D = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 1))
    D = D.to(real.dtype) if real.dtype.is_floating_point else D.double()  # D's own dtype errors are not ours
    gamma = _pick(rng, [1.0, 10.0])
    batching = _pick(rng, ["auto", "concat", "separate"])
    try:
        out = fastgp.r1_r2_penalty(D, real, fake, gamma=gamma, batching=batching)
    except CLEAR:
        return "refused"
    # Oracle: for a linear D the input gradient is its weight in every row.
    w2 = D[1].weight.detach().pow(2).sum()
    expected = gamma / 2 * (w2 + w2)
    assert torch.allclose(out.penalty.detach(), expected.to(out.penalty.dtype), rtol=1e-3), (out.penalty, expected)
    return "ok"


def case_relativistic(rng):
    name = rng.choice(["relativistic-pairing", "relativistic-average"])
    loss = fastgp.losses.get(name)
    real, fake = _tensor(rng, [rng.choice([0, 3])]), _tensor(rng, [rng.choice([0, 3])])
    try:
        d = loss.d_loss(real, fake)
        g = loss.g_loss(fake, real)
    except CLEAR:
        return "refused"
    r, f = real.double(), fake.double()
    if name == "relativistic-pairing":
        ed, eg = F.softplus(-(r - f)).mean(), F.softplus(-(f - r)).mean()
    else:
        ed = F.softplus(-(r - f.mean())).mean() + F.softplus(f - r.mean()).mean()
        eg = F.softplus(-(f - r.mean())).mean() + F.softplus(r - f.mean()).mean()
    for got, want in ((d, ed), (g, eg)):
        assert torch.allclose(got.double(), want, rtol=1e-2, atol=1e-3, equal_nan=True), (name, got, want)
    return "ok"


CASES = [case_random_apply, case_ada_state, case_lecam, case_top_k, case_r1_r2, case_relativistic]


def fuzz(count: int, seed: int) -> dict:
    rng = random.Random(seed)
    torch.manual_seed(seed)
    result = {"ok": 0, "refused": 0, "findings": []}
    for i in range(count):
        case = CASES[i % len(CASES)]
        state = rng.getstate()
        try:
            result[case(rng)] += 1
        except AssertionError as error:
            result["findings"].append(f"{case.__name__} (call {i}): silent wrong result: {error}")
        except Exception as error:  # noqa: BLE001 - a raw error is a finding
            result["findings"].append(f"{case.__name__} (call {i}): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        del state
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = fuzz(args.count, args.seed)
    for line in result["findings"]:
        print(line)
    print(f"{args.count} calls: {result['ok']} results checked against the oracle, {result['refused']} clear refusals, "
          f"{len(result['findings'])} findings")
    return 1 if result["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
