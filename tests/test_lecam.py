"""fastgp.LeCam / fastgp.lecam_penalty against the authors' formulation (google/lecam-gan)."""


import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import fastgp
from helpers import run_gloo_ranks


# ----------------------------------------------------------------------------------------------
# The authors' code AS WRITTEN: google/lecam-gan at commit f9af9485eda4637b25e694c142ce8e6992eb7243.
# Kept verbatim as the comparison target under the Apache License 2.0 (notice below, as in the
# authors' files). Transcribed unchanged (names, two-space indents, comments) except where marked;
# do not "tidy" it, the point is to run their code.
#
# Copyright 2021 Google Inc.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
# http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# ----------------------------------------------------------------------------------------------

# third_party/utils.py, class ema_losses (lines 637-661)
class ema_losses(object):
    def __init__(self, init=1000., decay=0.9, start_itr=0):
        self.G_loss = init
        self.D_loss_real = init
        self.D_loss_fake = init
        self.D_real = init
        self.D_fake = init
        self.decay = decay
        self.start_itr = start_itr

    def update(self, cur, mode, itr):
        if itr < self.start_itr:
            decay = 0.0
        else:
            decay = self.decay
        if mode == 'G_loss':
          self.G_loss = self.G_loss*decay + cur*(1 - decay)
        elif mode == 'D_loss_real':
          self.D_loss_real = self.D_loss_real*decay + cur*(1 - decay)
        elif mode == 'D_loss_fake':
          self.D_loss_fake = self.D_loss_fake*decay + cur*(1 - decay)
        elif mode == 'D_real':
          self.D_real = self.D_real*decay + cur*(1 - decay)
        elif mode == 'D_fake':
          self.D_fake = self.D_fake*decay + cur*(1 - decay)


# biggan_cifar/losses.py, lecam_reg and loss_hinge_dis (the default discriminator_loss)
# LeCam Regularziation loss
def lecam_reg(dis_real, dis_fake, ema):
  reg = torch.mean(F.relu(dis_real - ema.D_fake).pow(2)) + \
        torch.mean(F.relu(ema.D_real - dis_fake).pow(2))
  return reg


def loss_hinge_dis(dis_fake, dis_real, ema=None, it=None):
  if ema is not None:
    # track the prediction
    ema.update(torch.mean(dis_fake).item(), 'D_fake', it)
    ema.update(torch.mean(dis_real).item(), 'D_real', it)

  loss_real = F.relu(1. - dis_real)
  loss_fake = F.relu(1. + dis_fake)
  return torch.mean(loss_real), torch.mean(loss_fake)


def authors_run(batches, lc, start_itr, n_dis, **ema_kwargs):
    """The LeCam lines of the authors' training loop, as written, around given D outputs.

    third_party/run_train.py: ``state_dict = {'itr': 0, ...}``, then per batch ``train(x, y)`` and
    ``state_dict['itr'] += 1`` after it; biggan_cifar/train.py: ``ema_losses(start_itr=1000)``;
    third_party/train_fns.py, GAN_training_function's D steps (``for step_index in
    range(config['num_D_steps'])``): the two statements quoted below. Left out: D's forward (the
    given ``batches`` are its outputs), G's step and the optimizers. Returns the LeCam term of
    every D step (0 where the authors use ``torch.tensor(0.)``) and the final (D_real, D_fake)."""
    ema_losses_ = ema_losses(start_itr=start_itr, **ema_kwargs)
    config, state_dict = {'LC': lc, 'num_D_steps': n_dis}, {'itr': 0}
    batches, out = iter(batches), []
    for _ in range(10**6):
        try:
            pairs = [next(batches) for step_index in range(config['num_D_steps'])]
        except StopIteration:
            break
        for D_real, D_fake in pairs:
            # --- train_fns.py, as written ---
            D_loss_real, D_loss_fake = loss_hinge_dis(
                D_fake, D_real, ema_losses_, state_dict['itr'])

            # consistency along time dimension
            if config['LC'] > 0 and state_dict['itr'] > ema_losses_.start_itr:
                D_loss_LC = lecam_reg(D_real, D_fake, ema_losses_)*config['LC']
            else:
                D_loss_LC = torch.tensor(0.)
            # --- end ---
            out.append(D_loss_LC)
        state_dict['itr'] += 1
    return out, (ema_losses_.D_real, ema_losses_.D_fake)


def _batches(n, dtype=torch.float32, b=16):
    gen = torch.Generator().manual_seed(0)
    # D's outputs drifting apart, as in training: the anchors move and both ReLUs see both signs.
    return [((torch.randn(b, 1, generator=gen) + 0.05 * i).to(dtype), (torch.randn(b, 1, generator=gen) - 0.05 * i).to(dtype))
            for i in range(n)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("start,init,n_dis", [(3, None, 1), (3, 1000.0, 2), (0, 1000.0, 1), (1, 1000.0, 4)])
def test_matches_the_authors_code_number_for_number(dtype, start, init, n_dis):
    """fastgp's defaults (decay) and the documented loop (iterations counted from 0, shared by the
    n_dis D steps of a G step) against the authors' loop run as written."""
    batches = _batches(24, dtype)
    expected, anchors = authors_run(batches, 0.3, start, n_dis)
    lecam = fastgp.LeCam(weight=0.3, start=start, init=init)
    got = [lecam(real, fake, i // n_dis) for i, (real, fake) in enumerate(batches)]
    assert any(float(e) != 0 for e in expected)
    for e, g in zip(expected, got):
        assert g.dtype == (dtype if float(e) != 0 else g.dtype)
        assert float(g) == float(e)
    assert (float(lecam.anchor_real), float(lecam.anchor_fake)) == anchors


def test_init_none_equals_the_authors_once_the_first_update_has_no_decay():
    # start >= 1 (iterations from 0): the authors' first update has decay 0, so their 1000.0 never counts.
    batches = _batches(10)
    expected, _ = authors_run(batches, 1.0, 1, 1)
    lecam = fastgp.LeCam(weight=1.0, start=1)
    assert [float(lecam(r, f, i)) for i, (r, f) in enumerate(batches)] == [float(e) for e in expected]


def test_the_penalty_starts_where_the_authors_does():
    """start=1000 as the authors' scripts: decay 0 through iteration 999, the penalty from iteration
    1001 (the 1,002nd training step, counting from 0 as their run_train.py)."""
    batches = [(torch.full((2,), 1.0), torch.full((2,), -1.0))] * 1003
    expected, anchors = authors_run(batches, 1.0, 1000, 1)
    assert [i for i, e in enumerate(expected) if float(e) != 0][:1] == [1001]
    lecam = fastgp.LeCam(start=1000)
    got = [lecam(r, f, i) for i, (r, f) in enumerate(batches)]
    assert [float(g) for g in got] == [float(e) for e in expected]
    assert (float(lecam.anchor_real), float(lecam.anchor_fake)) == anchors


def test_defaults_are_the_authors_pytorch_code():
    # ema_losses(start_itr=1000) in biggan_cifar/train.py: decay left at its default, 0.9.
    authors = ema_losses(start_itr=1000)
    lecam = fastgp.LeCam()
    assert (lecam.decay, lecam.start) == (authors.decay, authors.start_itr) == (0.9, 1000)


def test_penalty_formula_rectified_and_papers():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([[-2.0], [1.0]])
    a_r, a_f = 0.25, -0.5
    rect = ((real - a_f).clamp(min=0) ** 2).mean() + ((a_r - fake).clamp(min=0) ** 2).mean()
    plain = ((real - a_f) ** 2).mean() + ((fake - a_r) ** 2).mean()
    torch.testing.assert_close(fastgp.lecam_penalty(real, fake, a_r, a_f), rect)
    torch.testing.assert_close(fastgp.lecam_penalty(real, fake, torch.tensor(a_r), torch.tensor([a_f])), rect)
    torch.testing.assert_close(fastgp.lecam_penalty(real, fake, a_r, a_f, rectified=False), plain)
    # The ReLU drops the real outputs below α_F and the fakes above α_R: they get no gradient.
    real = real.clone().requires_grad_(True)
    fastgp.lecam_penalty(real, torch.tensor([0.0]), 0.0, 0.0).backward()
    torch.testing.assert_close(real.grad, torch.tensor([2 * 2.0 / 3, 0.0, 2 * 0.5 / 3]))


@pytest.mark.parametrize("rectified", [True, False])
def test_gradcheck_and_gradgradcheck(rectified):
    gen = torch.Generator().manual_seed(1)
    # Away from the ReLUs' kink (|x − anchor| > 0.1).
    real = (torch.rand(6, generator=gen, dtype=torch.float64) * 2 + 0.2) * torch.tensor([1, -1] * 3)
    fake = (torch.rand(5, 1, generator=gen, dtype=torch.float64) * 2 + 0.2) * torch.tensor([[1], [-1]] * 2 + [[1]])
    real.requires_grad_(True)
    fake.requires_grad_(True)

    def fn(r, f):
        return fastgp.lecam_penalty(r, f, 0.05, -0.05, rectified=rectified)

    assert torch.autograd.gradcheck(fn, (real, fake))
    assert torch.autograd.gradgradcheck(fn, (real, fake))


def test_anchors_are_detached_and_penalty_keeps_the_logits_dtype():
    lecam = fastgp.LeCam(weight=1.0, start=0)
    real = torch.randn(8, requires_grad=True)
    fake = torch.randn(8, requires_grad=True)
    out = lecam(real, fake, 1)
    assert out.dtype == torch.float32 and out.requires_grad
    assert lecam.anchor_real.dtype == torch.float64 and not lecam.anchor_real.requires_grad
    half = fastgp.LeCam(weight=1.0, start=0)
    assert half(real.detach().to(torch.bfloat16), fake.detach().to(torch.bfloat16), 1).dtype == torch.bfloat16


def test_inactive_until_after_start_and_weight_zero():
    lecam = fastgp.LeCam(weight=0.5, start=3)
    real, fake = torch.full((4,), 3.0), torch.full((4,), -3.0)
    assert [float(lecam(real, fake, s)) for s in (1, 2, 3)] == [0.0, 0.0, 0.0]
    assert float(lecam(real + 1, fake, 4)) > 0
    assert not lecam.active(3) and lecam.active(4)
    off = fastgp.LeCam(weight=0.0, start=0)
    assert float(off(real, fake, 5)) == 0.0 and float(off.anchor_real) == 3.0  # anchors still tracked


def test_state_dict_round_trip_continues_identically():
    batches = _batches(12)
    whole = fastgp.LeCam(weight=0.3, start=2)
    first = [whole(r, f, i + 1) for i, (r, f) in enumerate(batches)]
    part = fastgp.LeCam(weight=0.3, start=2)
    for i, (r, f) in enumerate(batches[:5]):
        part(r, f, i + 1)
    resumed = fastgp.LeCam(weight=0.3, start=2)
    assert resumed.state_dict()["anchor_real"] is None
    resumed.load_state_dict(part.state_dict())
    rest = [resumed(r, f, i + 6) for i, (r, f) in enumerate(batches[5:])]
    assert [float(x) for x in rest] == [float(x) for x in first[5:]]
    assert resumed.state_dict() == whole.state_dict()
    empty = fastgp.LeCam()
    empty.load_state_dict(fastgp.LeCam().state_dict())
    assert empty.anchor_real is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_cuda_matches_cpu_and_loads_a_cpu_state():
    batches = _batches(8)
    cpu, gpu = fastgp.LeCam(weight=0.3, start=2), fastgp.LeCam(weight=0.3, start=2)
    for i, (r, f) in enumerate(batches):
        a, b = cpu(r, f, i + 1), gpu(r.cuda(), f.cuda(), i + 1)
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a)
    gpu.load_state_dict(cpu.state_dict())
    assert gpu(batches[0][0].cuda(), batches[0][1].cuda(), 9).device.type == "cuda"


@pytest.mark.parametrize("kwargs,error,message", [
    ({"weight": -1.0}, ValueError, "weight must be >= 0"),
    ({"weight": "big"}, TypeError, "weight"),
    ({"decay": 1.0}, ValueError, r"decay must be in \[0, 1\)"),
    ({"decay": -0.1}, ValueError, "decay must be >= 0"),
    ({"start": -1}, ValueError, "start must be >= 0"),
    ({"start": 1.5}, TypeError, "start must be an int"),
    ({"init": "x"}, TypeError, "init"),
    ({"rectified": 1}, TypeError, "rectified must be a bool"),
])
def test_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastgp.LeCam(**kwargs)


def test_bad_call_arguments():
    lecam = fastgp.LeCam()
    good = torch.randn(4)
    with pytest.raises(TypeError, match="real_logits"):
        lecam([1.0], good, 1)
    with pytest.raises(TypeError, match="fake_logits"):
        lecam(good, torch.ones(4, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match=r"real_logits must have shape \[B\] or \[B, 1\]"):
        lecam(torch.randn(4, 2), good, 1)
    with pytest.raises(ValueError, match="fake_logits must hold at least one"):
        lecam(good, torch.randn(0), 1)
    with pytest.raises(ValueError, match="step must be >= 0"):
        lecam(good, good, -1)
    with pytest.raises(TypeError, match="same dtype and device"):
        fastgp.lecam_penalty(good, good.double(), 0.0, 0.0)
    with pytest.raises(ValueError, match="anchor_real must be a number or a one-element tensor"):
        fastgp.lecam_penalty(good, good, torch.zeros(2), 0.0)
    with pytest.raises(TypeError, match="anchor_fake"):
        fastgp.lecam_penalty(good, good, 0.0, "0")
    with pytest.raises(ValueError, match="keys 'anchor_real' and 'anchor_fake'"):
        lecam.load_state_dict({"real": 1.0})
    with pytest.raises(ValueError, match="one anchor without the other"):
        lecam.load_state_dict({"anchor_real": 1.0, "anchor_fake": None})


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64, torch.complex128])
@pytest.mark.parametrize("which", ["anchor_real", "anchor_fake"])
def test_bool_and_complex_anchor_tensors_are_a_clear_type_error(dtype, which):
    good = torch.randn(4)
    anchors = {"anchor_real": 0.0, "anchor_fake": 0.0, which: torch.ones((), dtype=dtype)}
    with pytest.raises(TypeError, match=f"{which} must be a real number or a real \\(floating or integer\\) tensor, "
                                        f"got {dtype}"):
        fastgp.lecam_penalty(good, good, anchors["anchor_real"], anchors["anchor_fake"])
    # A real tensor anchor of either kind is taken (an integer one promotes as a Python int would).
    anchors[which] = torch.ones((), dtype=torch.int64)
    expected = fastgp.lecam_penalty(good, good, *(1.0 if isinstance(v, torch.Tensor) else v for v in anchors.values()))
    assert torch.equal(fastgp.lecam_penalty(good, good, anchors["anchor_real"], anchors["anchor_fake"]), expected)


WORLD = 2


def _lecam_steps(rank):
    lecam = fastgp.LeCam(weight=0.3, start=1)
    gen = torch.Generator().manual_seed(10 + rank)
    outs = []
    for step in range(1, 5):
        real, fake = torch.randn(6, generator=gen) + rank, torch.randn(6, generator=gen) - rank
        outs.append(lecam(real, fake, step))
    return {"state": lecam.state_dict(), "last": outs[-1]}


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
@pytest.mark.slow  # spawns gloo processes
def test_ddp_anchors_are_the_global_batch_means_on_every_rank():
    results = run_gloo_ranks(_lecam_steps, WORLD)
    assert results[0]["state"] == results[1]["state"]
    # One process seeing both ranks' batches concatenated (equal sizes: mean of means = global mean).
    gens = [torch.Generator().manual_seed(10 + r) for r in range(WORLD)]
    single = fastgp.LeCam(weight=0.3, start=1)
    for step in range(1, 5):
        pairs = [(torch.randn(6, generator=g) + r, torch.randn(6, generator=g) - r) for r, g in enumerate(gens)]
        single.update(torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs]), step)
    for key in ("anchor_real", "anchor_fake"):
        assert results[0]["state"][key] == pytest.approx(single.state_dict()[key], rel=1e-6, abs=1e-6)  # float32 means
