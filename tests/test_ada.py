"""Adaptive augmentation probability (fastgp.ada): the controller against StyleGAN2-ADA's update
written out (training_loop.py + training_stats), per-sample gating, state, DDP with two gloo
processes, and bad inputs."""


import numpy as np
import pytest
import torch
import torch.distributed as dist

import fastgp
from helpers import run_gloo_ranks
from fastgp.ada import AdaptiveAugment, random_apply


class OriginalADA:
    """StyleGAN2-ADA's heuristic as its training loop runs it: every reported sign since the last
    update averaged in float64 (training_stats), then
    p.copy_((p + sign(r − target) · batch · interval / (kimg · 1000)).max(0)) on a float32 tensor."""

    def __init__(self, batch_size, target=0.6, interval=4, kimg=500):
        self.batch_size, self.target, self.interval, self.kimg = batch_size, target, interval, kimg
        self.p = torch.zeros([])  # augment_pipe.p: float32
        self.signs, self.batch_idx = [], 0

    def report(self, logits):
        self.signs.append(logits.detach().sign().double().flatten())

    def iteration(self):
        self.batch_idx += 1
        if self.batch_idx % self.interval == 0:
            r = float(torch.cat(self.signs).mean())
            self.signs = []
            adjust = np.sign(r - self.target) * (self.batch_size * self.interval) / (self.kimg * 1000)
            self.p.copy_((self.p + adjust).max(torch.tensor(0.0)))
            return r
        return None


def _logit_stream(steps, seed=0, bias=0.0):
    gen = torch.Generator().manual_seed(seed)
    # A drifting D: the share of positive real logits rises and falls around the target.
    for t in range(steps):
        shift = bias + 1.5 * np.sin(t / 7.0)
        yield torch.randn(8, 1, generator=gen) + shift


@pytest.mark.parametrize("interval, kimg", [(4, 500), (1, 0.1), (3, 0.05)])
def test_controller_is_stylegan2_adas_update(interval, kimg):
    ours = AdaptiveAugment(8, interval=interval, kimg=kimg)
    original = OriginalADA(8, interval=interval, kimg=kimg)
    ps = []
    for logits in _logit_stream(120):
        ours.accumulate(logits)
        original.report(logits)
        updated = ours.step()
        r = original.iteration()
        assert updated == (r is not None)
        if updated:
            assert ours.rt == r
        assert ours.p == float(original.p)  # bit for bit, float32 rounding included
        ps.append(ours.p)
    assert len(set(ps)) > 3  # p actually moved (up and down)
    assert min(ps) == 0.0 or interval == 4  # with a fast kimg p hits the floor at 0 and stays >= 0
    assert all(p >= 0 for p in ps)


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
    ada, original = AdaptiveAugment(4, interval=2, kimg=0.01), OriginalADA(4, interval=2, kimg=0.01)
    for logits in _logit_stream(20, seed=3, bias=0.2):
        for part in (logits[:3], logits[3:]):
            ada.accumulate(part)
            original.report(part)
        ada.step()
        original.iteration()
        assert ada.p == float(original.p)


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
    (lambda: [AdaptiveAugment(8, interval=1).step()], RuntimeError, "no real logits were accumulated"),
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
