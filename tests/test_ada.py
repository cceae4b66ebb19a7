"""Adaptive augmentation probability (fastgp.ada): the controller against our re-statement of
StyleGAN2-ADA's update (training_loop.py + training_stats), per-sample gating, state, DDP with two
gloo processes, and bad inputs."""


import math

import numpy as np
import pytest
import torch
import torch.distributed as dist

import fastgp
from helpers import run_gloo_ranks
from fastgp.ada import AdaptiveAugment, random_apply


# ----------------------------------------------------------------------------------------------
# The reference: our own re-statement of StyleGAN2-ADA's p update, written from the facts of
# NVlabs/stylegan2-ada-pytorch at commit d72cc7d041b42ec8e806021a205ed9349f87c6a4 (none of its
# code is reproduced here; it is under the NVIDIA Source Code License). Sources of the facts:
#   torch_utils/training_stats.py, lines 23-30 (3 moments, float32 per-report reduction, float64
#     counters), 79-99 (report), 133-168 (Collector: construction and update, the
#     delta-count test on line 167), 188-196 (mean: NaN without moments), 234-266 (_sync);
#   training/training_loop.py, lines 172-178 (the collector, p set to augment_p) and 308-315
#     (the update every ada_interval batches); training/augment.py, line 126 (p is a float32
#     buffer); training/loss.py, line 114 (what is reported: the signs of the real logits).
# It is written independently of fastgp.ada, so the tests compare two separate statements.
# ----------------------------------------------------------------------------------------------


class ReferenceSignStats:
    """One statistic as training_stats keeps it, single process, with a keep_previous=True collector.

    Every report reduces its values in float32 to (count, sum, sum of squares) and adds them to
    float64 running totals. An update takes the interval's moments as the change of the totals
    since the previous update, but only replaces the kept moments when that change has a non-zero
    count: an interval without reports keeps the previous interval's moments, hence its mean.
    The mean is NaN while no interval has had a report."""

    def __init__(self):
        self.totals = torch.zeros(3, dtype=torch.float64)
        self.at_last_update = self.totals.clone()  # the collector starts after every earlier report
        self.interval_moments = None  # None: no interval with reports yet

    def report(self, values):
        flat = torch.as_tensor(values).detach().reshape(-1).to(torch.float32)
        if flat.numel() == 0:
            return
        per_report = torch.stack([torch.ones_like(flat).sum(), flat.sum(), (flat * flat).sum()])
        self.totals += per_report.to(torch.float64)

    def update(self):
        change = self.totals - self.at_last_update
        self.at_last_update = self.totals.clone()
        if float(change[0]) != 0:
            self.interval_moments = change

    def mean(self):
        if self.interval_moments is None:
            return float("nan")
        count, total = float(self.interval_moments[0]), float(self.interval_moments[1])
        return total / count


class ReferenceADA:
    """StyleGAN2-ADA's controller around ReferenceSignStats: after every `interval`-th batch,
    r_t = the interval's mean sign; p moves by sign(r_t − target) · batch · interval / (kimg·1000)
    (numpy's sign: 0 at equality, NaN for NaN) and is floored at 0, on a float32 scalar tensor
    that starts at 0. Left out: the networks and the rest of the training loop."""

    def __init__(self, batch_size, target=0.6, interval=4, kimg=500):
        self.batch_size, self.target, self.interval, self.kimg = batch_size, target, interval, kimg
        self.p = torch.zeros([], dtype=torch.float32)
        self.stats = ReferenceSignStats()
        self.batches = 0

    def report(self, real_logits):
        self.stats.report(real_logits.sign())

    def iteration(self):
        """Ends one batch; returns the r_t used when p was updated, else None."""
        self.batches += 1
        if self.batches % self.interval != 0:
            return None
        self.stats.update()
        r_t = self.stats.mean()
        step = np.sign(r_t - self.target) * (self.batch_size * self.interval) / (self.kimg * 1000)
        # A float32 tensor plus a Python float stays float32: p is rounded as the buffer rounds it.
        self.p = torch.clamp(self.p + step, min=0.0)
        return r_t


def _logit_stream(steps, seed=0, bias=0.0):
    gen = torch.Generator().manual_seed(seed)
    # A drifting D: the share of positive real logits rises and falls around the target.
    for t in range(steps):
        shift = bias + 1.5 * np.sin(t / 7.0)
        yield torch.randn(8, 1, generator=gen) + shift


@pytest.mark.parametrize("interval, kimg", [(4, 500), (1, 0.1), (3, 0.05)])
def test_controller_is_stylegan2_adas_update(interval, kimg):
    ours = AdaptiveAugment(8, interval=interval, kimg=kimg)
    reference = ReferenceADA(8, interval=interval, kimg=kimg)
    ps = []
    for logits in _logit_stream(120):
        ours.accumulate(logits)
        reference.report(logits)
        updated = ours.step()
        r = reference.iteration()
        assert updated == (r is not None)
        if updated:
            assert ours.rt == r
        assert ours.p == float(reference.p)  # bit for bit, float32 rounding included
        ps.append(ours.p)
    assert len(set(ps)) > 3  # p actually moved (up and down)
    assert min(ps) == 0.0 or interval == 4  # with a fast kimg p hits the floor at 0 and stays >= 0
    assert all(p >= 0 for p in ps)


@pytest.mark.parametrize("interval", [1, 3])
def test_an_interval_without_reports_reuses_the_previous_rt(interval):
    """StyleGAN2-ADA's Collector keeps the previous mean for a round with no reports
    (keep_previous=True): p moves again by the previous r_t's sign. Here whole intervals report
    nothing (e.g. D steps skipped), including several in a row."""
    ours, reference = AdaptiveAugment(8, interval=interval, kimg=0.1), ReferenceADA(8, interval=interval, kimg=0.1)
    silent = {2, 5, 6, 7, 11}  # interval indices without a report
    reused, ps = 0, set()
    for t, logits in enumerate(_logit_stream(16 * interval, seed=4)):
        if t // interval not in silent:
            ours.accumulate(logits)
            reference.report(logits)
        updated, r = ours.step(), reference.iteration()
        assert updated == (r is not None)
        if updated:
            assert ours.rt == r
            reused += t // interval in silent
        assert ours.p == float(reference.p)
        ps.add(ours.p)
    assert reused == len(silent) and len(ps) > 2  # p moved, up and down


def test_no_report_before_the_first_update_is_refused_where_the_original_gets_nan():
    reference = ReferenceADA(8, interval=2, kimg=0.1)
    reference.iteration()
    assert math.isnan(reference.iteration()) and math.isnan(float(reference.p))  # r_t undefined: p = NaN
    ours = AdaptiveAugment(8, interval=2, kimg=0.1)
    assert ours.step() is False
    with pytest.raises(RuntimeError, match="update at step 2 has no r_t"):
        ours.step()
    assert ours.p == 0.0
    # A restored r_t is reused (the original's collector would restart empty: NaN again).
    ours.load_state_dict({"p": 0.5, "steps": 2, "rt": 0.75, "sign_sum": 0.0, "count": 0.0})
    ours.step()
    assert ours.step() is True and ours.rt == 0.75 and ours.p == float(torch.tensor(0.5) + 8 * 2 / 100)


def test_p_is_not_clamped_above_one_and_target_equality_keeps_p():
    ada = AdaptiveAugment(10, interval=1, kimg=0.005)  # 10 images per step: p += 2 per update
    for _ in range(3):
        ada.accumulate(torch.ones(10))
        ada.step()
    assert ada.p == 6.0 and ada.rt == 1.0
    x = torch.randn(16, 3, 8, 8)
    assert torch.equal(ada(x, generator=torch.Generator().manual_seed(0)),
                       random_apply(x, 1.0, "color,translation,cutout", generator=torch.Generator().manual_seed(0)))
    ada = AdaptiveAugment(10, target=0.0, interval=1, kimg=0.005, p=0.5)
    ada.accumulate(torch.tensor([1.0, -1.0, 0.0, 2.0, -3.0]))  # r_t = 0 = target: np.sign(0) = 0
    ada.step()
    assert ada.p == 0.5 and ada.rt == 0.0


def test_several_reports_per_step_are_averaged_together():
    """Lazy R1 in StyleGAN2-ADA reports the reals' signs twice in a step: every report counts."""
    ada, reference = AdaptiveAugment(4, interval=2, kimg=0.01), ReferenceADA(4, interval=2, kimg=0.01)
    for logits in _logit_stream(20, seed=3, bias=0.2):
        for part in (logits[:3], logits[3:]):
            ada.accumulate(part)
            reference.report(part)
        ada.step()
        reference.iteration()
        assert ada.p == float(reference.p)


def test_state_dict_resumes_mid_interval_exactly():
    stream = list(_logit_stream(40, seed=1))
    whole = AdaptiveAugment(8, interval=4, kimg=0.1)
    for logits in stream:
        whole.accumulate(logits)
        whole.step()
    first = AdaptiveAugment(8, interval=4, kimg=0.1)
    for logits in stream[:18]:  # stops 2 steps into an interval
        first.accumulate(logits)
        first.step()
    state = first.state_dict()
    assert state["count"] == 16 and state["steps"] == 18
    resumed = AdaptiveAugment(8, interval=4, kimg=0.1)
    resumed.load_state_dict(state)
    assert resumed.p == first.p and resumed.rt == first.rt
    for logits in stream[18:]:
        resumed.accumulate(logits)
        resumed.step()
    assert resumed.p == whole.p and resumed.rt == whole.rt and resumed.steps == whole.steps


def test_random_apply_gates_each_word_per_sample():
    x = torch.randn(64, 3, 8, 8, dtype=torch.float64)
    p = 0.3
    out = random_apply(x, p, "color,cutout", generator=torch.Generator().manual_seed(2))
    # Per word: the word's DiffAugment draws, then one uniform per sample; augmented where U < p.
    g = torch.Generator().manual_seed(2)
    expected = x
    masks = []
    for word in ("color", "cutout"):
        augmented = fastgp.augment.DiffAugment(expected, word, generator=g)
        mask = torch.rand(64, generator=g) < p
        masks.append(mask)
        expected = torch.where(mask.view(-1, 1, 1, 1), augmented, expected)
    assert torch.equal(out, expected)
    untouched = ~(masks[0] | masks[1])
    assert torch.equal(out[untouched], x[untouched]) and not torch.equal(out[~untouched], x[~untouched])
    assert 0.15 < masks[0].double().mean() < 0.45  # 64 Bernoulli(0.3) draws with this seed
    # p = 0: the input, every draw still made; p = 1: the policy applied word by word.
    assert torch.equal(random_apply(x, 0.0, "color,cutout", generator=torch.Generator().manual_seed(2)), x)
    g = torch.Generator().manual_seed(2)
    full = x
    for word in ("color", "cutout"):
        full = fastgp.augment.DiffAugment(full, word, generator=g)
        torch.rand(64, generator=g)
    assert torch.equal(random_apply(x, 1.0, "color,cutout", generator=torch.Generator().manual_seed(2)), full)


def test_random_apply_callable_with_copies_and_gradients():
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64, requires_grad=True)

    def shift(t):
        return fastgp.augment.translate(t, max_shift=2, copies=3, generator=torch.Generator().manual_seed(9))

    out = random_apply(x, 0.5, shift, generator=torch.Generator().manual_seed(1))
    mask = torch.rand(12, generator=torch.Generator().manual_seed(1)) < 0.5
    expected = torch.where(mask.view(-1, 1, 1, 1), shift(x), x.repeat_interleave(3, dim=0))
    assert torch.equal(out, expected) and 0 < mask.sum() < 12
    assert torch.autograd.gradcheck(
        lambda t: random_apply(t, 0.5, shift, generator=torch.Generator().manual_seed(1)), (x,))
    assert torch.autograd.gradcheck(
        lambda t: random_apply(t, 0.5, "color", generator=torch.Generator().manual_seed(1)), (x,))


BAD = [
    (lambda: AdaptiveAugment(0), ValueError, "batch_size must be >= 1"),
    (lambda: AdaptiveAugment(8, target=1.5), ValueError, r"target must lie in \[-1, 1\]"),
    (lambda: AdaptiveAugment(8, interval=0), ValueError, "interval must be >= 1"),
    (lambda: AdaptiveAugment(8, kimg=0), ValueError, "kimg must be > 0"),
    (lambda: AdaptiveAugment(8, p=-0.1), ValueError, "p must be >= 0.0"),
    (lambda: AdaptiveAugment(8, augment="rotate"), ValueError, "augment has an unknown word 'rotate'"),
    (lambda: AdaptiveAugment(8, augment=5), TypeError, "augment must be a DiffAugment policy string or a callable"),
    (lambda: AdaptiveAugment(8).accumulate(torch.ones(3, dtype=torch.int64)), TypeError, "real_logits must have a floating"),
    (lambda: AdaptiveAugment(8).accumulate(torch.ones(0)), ValueError, "real_logits is empty"),
    (lambda: [AdaptiveAugment(8, interval=1).step()], RuntimeError,
     "update at step 1 has no r_t: no rank accumulated real logits in this interval and there is no earlier r_t"),
    (lambda: AdaptiveAugment(8).load_state_dict({"p": 0.1}), ValueError, "state lacks count, rt, sign_sum, steps"),
    (lambda: AdaptiveAugment(8).load_state_dict({"p": 0.1, "steps": 1, "rt": None, "sign_sum": 0, "count": -1}),
     ValueError, r"state\['count'\] must be >= 0"),
    (lambda: random_apply(torch.randn(2, 3, 4, 4), -0.5), ValueError, "p must be >= 0.0"),
    (lambda: random_apply(torch.randn(2, 3, 4, 4), float("inf")), ValueError, "p must be finite"),
    (lambda: random_apply(torch.randn(2, 3), 0.5), ValueError, r"x must have shape \[B, C, H, W\]"),
    (lambda: random_apply(torch.randn(2, 3, 4, 4), 0.5, ""), ValueError, "augment must not be empty"),
    (lambda: random_apply(torch.randn(2, 3, 4, 4), 0.5, lambda t: t[:1]), ValueError, "must return K·B rows"),
    (lambda: random_apply(torch.randn(2, 3, 4, 4), 0.5, generator="g"), TypeError, "generator must be a torch.Generator"),
]


@pytest.mark.parametrize("call, error, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_inputs(call, error, message):
    with pytest.raises(error, match=message):
        call()


def _shrink(t):
    return t[:, :, :2, :2]


# Callables whose output torch.where would broadcast against the batch, or keep empty, silently.
BAD_CALLABLES = [
    (_shrink, ValueError, r"augment \(_shrink\) must return K·B rows of x's per-sample shape, i\.e\. \[K·2, 3, 4, 4\] "
     r"with K >= 1, got \[2, 3, 2, 2\]"),
    (lambda t: t[:, :1], ValueError, r"\[K·2, 3, 4, 4\] with K >= 1, got \[2, 1, 4, 4\]"),  # one channel
    (lambda t: t.mean(dim=(2, 3), keepdim=True), ValueError, r"got \[2, 3, 1, 1\]"),
    (lambda t: t[:0], ValueError, r"got \[0, 3, 4, 4\]"),  # an empty batch
    (lambda t: t[:1].expand(3, 3, 4, 4), ValueError, r"got \[3, 3, 4, 4\]"),  # 3 rows for 2 samples
    (lambda t: t.flatten(1), ValueError, r"got \[2, 48\]"),
    (lambda t: t.double(), TypeError, r"augment \(.*<lambda>\) must return x's dtype torch\.float32, got torch\.float64"),
    (lambda t: t.numpy(), TypeError, r"must return a torch\.Tensor, got ndarray"),
]


@pytest.mark.parametrize("fn, error, message", BAD_CALLABLES, ids=[str(i) for i in range(len(BAD_CALLABLES))])
def test_random_apply_refuses_a_callable_that_changes_the_shape(fn, error, message):
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(error, match=message):
        random_apply(x, 0.5, fn, generator=torch.Generator().manual_seed(0))
    # K·B rows of the same per-sample shape (here K = 2: the batch twice, sample-major) is accepted.
    assert random_apply(x, 0.5, lambda t: t.repeat_interleave(2, dim=0)).shape == (4, 3, 4, 4)


def _state(**changes):
    state = {"p": 0.25, "steps": 8, "rt": 0.5, "sign_sum": 6.0, "count": 16.0}
    state.update(changes)
    return state


BAD_STATES = [
    ({"sign_sum": float("nan")}, ValueError, r"state\['sign_sum'\] must be finite, got nan"),
    ({"rt": float("nan")}, ValueError, r"state\['rt'\] must be finite, got nan"),
    ({"count": float("nan")}, ValueError, r"state\['count'\] must be finite, got nan"),
    ({"p": float("inf")}, ValueError, r"state\['p'\] must be finite"),
    ({"sign_sum": True}, TypeError, r"state\['sign_sum'\] must be a real number, got bool"),
    ({"rt": False}, TypeError, r"state\['rt'\] must be a real number, got bool"),
    ({"count": True}, TypeError, r"state\['count'\] must be a real number, got bool"),
    ({"p": True}, TypeError, r"state\['p'\] must be a real number, got bool"),
    ({"steps": True}, TypeError, r"state\['steps'\] must be an int, got bool"),
    ({"count": [16.0]}, TypeError, r"state\['count'\] must be a real number, got list"),
    ({"sign_sum": [6.0]}, TypeError, r"state\['sign_sum'\] must be a real number, got list"),
    ({"rt": [0.5]}, TypeError, r"state\['rt'\] must be a real number, got list"),
    ({"steps": [8]}, TypeError, r"state\['steps'\] must be an int, got list"),
    ({"rt": 1.5}, ValueError, r"state\['rt'\] must be None or lie in \[-1, 1\]"),
    ({"count": 2.5}, ValueError, r"state\['count'\] must be a whole number of signs, got 2\.5"),
    ({"sign_sum": 17.0}, ValueError, r"state\['sign_sum'\] must lie in \[-count, count\]"),
    ({"steps": -1}, ValueError, r"state\['steps'\] must be >= 0"),
]


@pytest.mark.parametrize("changes, error, message", BAD_STATES, ids=[str(i) for i in range(len(BAD_STATES))])
def test_load_state_dict_validates_every_field_and_changes_nothing_on_error(changes, error, message):
    ada = AdaptiveAugment(8, p=0.5)
    ada.accumulate(torch.ones(4))
    before = ada.state_dict()
    with pytest.raises(error, match=message):
        ada.load_state_dict(_state(**changes))
    assert ada.state_dict() == before
    ada.load_state_dict(_state())  # the good state loads
    assert ada.state_dict() == _state() and ada.rt == 0.5
    with pytest.raises(TypeError, match="state must be a dict"):
        ada.load_state_dict([("p", 0.1)])


# ----------------------------------------------------------------------------------------------
# Two gloo processes: the signs are summed over the ranks
# ----------------------------------------------------------------------------------------------

WORLD = 2


def _rank_logits(rank):
    return list(_logit_stream(12, seed=20 + rank, bias=0.3 * rank))


def _controller_steps(rank):
    ada = AdaptiveAugment(8 * WORLD, interval=4, kimg=0.05)
    trace = []
    for t, logits in enumerate(_rank_logits(rank)):
        ada.accumulate(logits)
        ada.step()
        trace.append((ada.p, ada.rt))
        if t == 9:
            state = ada.state_dict()  # collective, 2 steps into an interval
    resumed = AdaptiveAugment(8 * WORLD, interval=4, kimg=0.05)
    resumed.load_state_dict(state)
    for logits in _rank_logits(rank)[10:]:
        resumed.accumulate(logits)
        resumed.step()
    return {"trace": trace, "state": state, "resumed": (resumed.p, resumed.rt)}


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
@pytest.mark.slow  # spawns gloo processes
def test_two_gloo_ranks_reduce_signs_and_resume():
    results = run_gloo_ranks(_controller_steps, WORLD)
    # One process that sees both ranks' logits of each step computes the same p and r_t.
    single = AdaptiveAugment(8 * WORLD, interval=4, kimg=0.05)
    expected = []
    for a, b in zip(_rank_logits(0), _rank_logits(1)):
        single.accumulate(a)
        single.accumulate(b)
        single.step()
        expected.append((single.p, single.rt))
    assert results[0]["trace"] == results[1]["trace"] == expected
    assert len({p for p, _ in expected}) > 2
    assert results[0]["state"] == results[1]["state"] and results[0]["state"]["count"] == 2 * 8 * WORLD
    assert results[0]["resumed"] == results[1]["resumed"] == expected[-1]
