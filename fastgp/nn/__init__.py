"""nn.Module drop-ins of fastgp's ops."""

from .augment import Augment  # noqa: F401
