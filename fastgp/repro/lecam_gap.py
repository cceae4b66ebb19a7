"""The ``lecam`` experiment's own measurement: does D tell its training reals from reals it never
saw? (Tseng et al., CVPR 2021: under limited data D overfits its training set; LeCam is meant to
keep it from doing so.)

For a finished limited-data digits run (``data.subset``: the 200 training images; the other 1,597
digits are held out, ``Digits.held_out``), the final D (a copy, in eval mode, so spectral norm uses
its stored vectors and runs no power iteration) scores every training image and every held-out
image. Reported per run:

- ``d_train`` / ``d_held``: D's mean output (logit) on the training reals / on the held-out reals;
- ``d_overfit``: ``d_train − d_held``, the premise's gap: 0 for a D that scores reals it never saw
  as it scores its training reals, > 0 for one that has learned its training set;
- ``d_auc``: the probability that D scores a random training real above a random held-out real
  (ties count half): 0.5 for no difference, 1 for a D that separates them completely. Unlike the
  gap it does not change when D's outputs are scaled, which LeCam does (it pulls D's outputs on
  reals and fakes towards each other's average), so it tells a smaller gap from smaller outputs.
"""

from __future__ import annotations

import copy

import torch

from .runner import ReproError


def auc(above: torch.Tensor, below: torch.Tensor) -> float:
    """P(a > b) + P(a = b)/2 for a drawn from ``above`` and b from ``below`` (1-D, non-empty): the
    area under the ROC curve of telling them apart by their value (the Mann–Whitney statistic)."""
    for name, x in (("above", above), ("below", below)):
        if not isinstance(x, torch.Tensor) or x.dim() != 1 or x.numel() == 0:
            raise ValueError(f"{name}: expected a non-empty 1-D tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    a, b = above.double()[:, None], below.double()[None, :]
    return float((a > b).double().mean() + 0.5 * (a == b).double().mean())


@torch.no_grad()
def d_outputs(D, train: torch.Tensor, held: torch.Tensor) -> dict:
    """``d_train``, ``d_held``, ``d_overfit`` and ``d_auc`` of discriminator ``D`` (called as is:
    pass it in eval mode) on training images ``train`` and held-out images ``held``."""
    on_train, on_held = D(train).reshape(-1).double(), D(held).reshape(-1).double()
    d_train, d_held = float(on_train.mean()), float(on_held.mean())
    return {"d_train": d_train, "d_held": d_held, "d_overfit": d_train - d_held, "d_auc": auc(on_train, on_held)}


def measure(run) -> dict:
    """Experiment.measure: D's outputs on the training and the held-out digits of a finished run."""
    held = getattr(run.data, "held_out", None)
    if held is None:
        raise ReproError("lecam: D's outputs on held-out reals need a limited-data digits run (data.subset > 0)")
    D = copy.deepcopy(run.D).cpu().eval()
    return d_outputs(D, run.data.images.cpu(), held)
