"""nn.Module and parametrization drop-ins built on fastgp's kernels."""

from .augment import Augment  # noqa: F401
from .spectral_norm import SpectralNormStep, apply_spectral_norm, remove_spectral_norm, spectral_norm  # noqa: F401
from . import utils  # noqa: F401  (fastgp.nn.utils.spectral_norm: the legacy torch.nn.utils.spectral_norm)
