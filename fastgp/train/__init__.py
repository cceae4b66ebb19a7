"""The reference trainer: fastgp's regularizers inside a real GAN training loop.

Command line: ``python -m fastgp.train`` / ``fastgp-train`` (see ``--help``). From Python::

    from fastgp.train import config, train
    cfg = config.resolve(files=["configs/ring.yaml"], sets=["steps=500"])
    run = train(cfg, "runs/ring")
    run.last  # the final metrics record
"""

from . import config
from .checkpoint import CheckpointError
from .config import ConfigError
from .loop import Run, train

__all__ = ["CheckpointError", "ConfigError", "Run", "config", "train"]
