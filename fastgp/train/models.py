"""Networks of the reference trainer.

The 2-D pair is the zero-centred-GP paper's (Thanh-Tung et al. 2019): G and D are MLPs with two
hidden layers; the width and activation are options.
"""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, activation: str) -> nn.Sequential:
    def act():
        return nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2)

    return nn.Sequential(
        nn.Linear(in_dim, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, out_dim)
    )


def build(cfg: dict, data_dim: int) -> tuple[nn.Module, nn.Module]:
    """(G, D) for a resolved config: G maps noise [B, noise.dim] to [B, data_dim], D to logits [B, 1]."""
    m = cfg["model"]
    G = mlp(cfg["noise"]["dim"], m["hidden"], data_dim, m["activation"])
    D = mlp(data_dim, m["hidden"], 1, m["activation"])
    return G, D
