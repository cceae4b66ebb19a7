"""examples/r3gan_client.py: an R3GAN-style client swapped to fastgp trains the same run."""

import pytest
import torch

from client_examples import assert_same_run
from examples import r3gan_client

pytestmark = pytest.mark.usefixtures("one_thread")


def test_swapped_client_trains_the_same_run():
    r = r3gan_client.compare(30, seed=0, dtype=torch.float64)
    # Step 0: the same losses, penalties and D gradients, to rounding. The same curves over the run
    # (rounding differences grow with the GAN's dynamics, ~10× per 12 steps from 1e-16: still far
    # below 1e-10 at step 30).
    assert_same_run(r, steps=30, columns=4, curve_atol=1e-10)


def test_swap_is_the_two_methods():
    """The client's change is FastgpTraining: the two step methods, nothing else."""
    own = {k for k in vars(r3gan_client.FastgpTraining) if not k.startswith("__")}
    assert own == {"generator_step", "discriminator_step"}


def test_main_prints_the_comparison(capsys):
    r3gan_client.main(["--steps", "2"])
    out = capsys.readouterr().out
    assert "step 0 D gradients" in out and "time per step" in out
