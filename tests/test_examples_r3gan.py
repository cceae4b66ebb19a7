"""examples/r3gan_client.py: an R3GAN-style client swapped to fastgp trains the same run."""

import pytest
import torch

from examples import r3gan_client

pytestmark = pytest.mark.usefixtures("one_thread")


def test_swapped_client_trains_the_same_run():
    r = r3gan_client.compare(30, seed=0, dtype=torch.float64)
    # Step 0: the same losses, penalties and D gradients, to rounding.
    torch.testing.assert_close(torch.tensor(r["step0_fastgp"]), torch.tensor(r["step0_reference"]),
                               rtol=1e-12, atol=1e-14)
    assert r["step0_grad_rel_diff"] < 1e-12
    # The same curves over the run (rounding differences grow with the GAN's dynamics, ~10× per
    # 12 steps from 1e-16: still far below 1e-10 at step 30).
    assert r["fastgp"].shape == r["reference"].shape == (30, 4)
    assert r["curve_max_abs_diff"] < 1e-10
    assert r["reference_s_per_step"] > 0 and r["fastgp_s_per_step"] > 0


def test_swap_is_the_two_methods():
    """The client's change is FastgpTraining: the two step methods, nothing else."""
    own = {k for k in vars(r3gan_client.FastgpTraining) if not k.startswith("__")}
    assert own == {"generator_step", "discriminator_step"}


def test_main_prints_the_comparison(capsys):
    r3gan_client.main(["--steps", "2"])
    out = capsys.readouterr().out
    assert "step 0 D gradients" in out and "time per step" in out
