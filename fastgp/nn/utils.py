"""fastgp's counterpart of the ``torch.nn.utils`` namespace: the legacy hook-based spectral norm.

``torch.nn.utils.spectral_norm(m)`` becomes ``fastgp.nn.utils.spectral_norm(m)`` (same for
``remove_spectral_norm``), as ``torch.nn.utils.parametrizations.spectral_norm`` becomes
``fastgp.nn.spectral_norm``. The implementation is in ``spectral_norm_legacy.py``.
"""

from .spectral_norm_legacy import (  # noqa: F401
    __all__,
    SpectralNorm,
    SpectralNormLoadStateDictPreHook,
    SpectralNormStateDictHook,
    remove_spectral_norm,
    spectral_norm,
)

