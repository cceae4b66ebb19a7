"""examples/sr_client.py: a BasicSR-style SR GAN swapped to fastgp's legacy spectral norm trains the same run."""

import pytest
import torch
from torch.nn.utils.spectral_norm import SpectralNorm as TorchSpectralNorm

import fastgp.nn.utils
from client_examples import assert_same_run
from examples import sr_client

pytestmark = pytest.mark.usefixtures("one_thread")

SN_CONVS = [f"conv{i}" for i in range(1, 9)]


def hooks(module):
    return list(module._forward_pre_hooks.values())


@pytest.mark.slow  # two training runs
def test_swapped_client_trains_the_same_run():
    r = sr_client.compare(20, seed=0, dtype=torch.float64)
    # Step 0: the same losses and D gradients, to rounding. The same curves over the run (measured:
    # 3e-16 over 20 steps, 1.5e-13 over 200; still far below 1e-10 here).
    assert_same_run(r, steps=20, columns=4, curve_atol=1e-10)
    # The run trains: the pixel loss falls.
    assert r["reference"][-5:, 0].mean() < 0.7 * r["reference"][0, 0]
    # The two D end the run with the same legacy state (weight_orig, u, v), to rounding.
    ref_state, our_state = r["reference_D"].state_dict(), r["fastgp_D"].state_dict()
    assert ref_state.keys() == our_state.keys()
    for k in ref_state:
        torch.testing.assert_close(our_state[k], ref_state[k], rtol=1e-10, atol=1e-12)


def test_swapped_discriminator_runs_fastgps_hook():
    """The swapped D's SN convs carry fastgp's legacy hook, the original's torch's own; the first and
    last convs none (as BasicSR's)."""
    torch.manual_seed(0)
    ours, ref = sr_client.FastgpUNetDiscriminatorSN(), sr_client.UNetDiscriminatorSN()
    for name in SN_CONVS:
        (our_hook,) = hooks(getattr(ours, name))
        (ref_hook,) = hooks(getattr(ref, name))
        assert isinstance(our_hook, fastgp.nn.utils.SpectralNorm)
        assert type(ref_hook) is TorchSpectralNorm
        assert not isinstance(ref_hook, fastgp.nn.utils.SpectralNorm)
        for d in (ours, ref):  # the legacy surgery both clients' checkpoints rely on
            conv = getattr(d, name)
            assert hasattr(conv, "weight_orig") and hasattr(conv, "weight_u") and hasattr(conv, "weight_v")
    for name in ("conv0", "conv9"):
        assert hooks(getattr(ours, name)) == [] and hooks(getattr(ref, name)) == []


def test_swapped_discriminator_calls_fastgps_power_iteration(monkeypatch):
    """A training forward of the swapped D goes through fastgp's hook (not only its class name)."""
    calls = []
    original = fastgp.nn.utils.SpectralNorm.compute_weight

    def spy(self, module, do_power_iteration):
        calls.append(do_power_iteration)
        return original(self, module, do_power_iteration)

    monkeypatch.setattr(fastgp.nn.utils.SpectralNorm, "compute_weight", spy)
    torch.manual_seed(0)
    sr_client.FastgpUNetDiscriminatorSN()(torch.rand(2, 3, 16, 16))
    assert calls == [True] * len(SN_CONVS)
    calls.clear()
    sr_client.UNetDiscriminatorSN()(torch.rand(2, 3, 16, 16))
    assert calls == []


def test_swap_is_one_line():
    """The client's change is FastgpUNetDiscriminatorSN: the ``norm`` it builds D with, nothing else."""
    own = {k for k in vars(sr_client.FastgpUNetDiscriminatorSN) if not k.startswith("__")}
    assert own == {"norm"}
    assert sr_client.FastgpUNetDiscriminatorSN.norm is fastgp.nn.utils.spectral_norm
    assert sr_client.UNetDiscriminatorSN.norm is torch.nn.utils.spectral_norm


def test_main_prints_the_comparison(capsys):
    sr_client.main(["--steps", "2"])
    out = capsys.readouterr().out
    assert "step 0 D gradients" in out and "time per step" in out
