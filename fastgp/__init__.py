"""fastgp: fused kernels for the regularizers that make GAN training stable.

The public API of the gradient-penalty family lives at the top level; ``fastgp.backend`` decides
which implementation (C++/CUDA extension, Triton, pure-PyTorch reference) runs each call.
"""

__version__ = "0.1.0"

from . import backend as _backend  # noqa: E402
from .backend import BACKENDS, get_backend, info, set_backend, use_backend  # noqa: E402

_backend._load_extension()  # warns once, here, if the compiled kernels cannot be loaded
from .penalty import (  # noqa: E402
    KINDS,
    LazyRegularizer,
    R1R2,
    grad_norm_penalty,
    gradient_penalty,
    gradient_penalty_at,
    interpolate,
    latent_path_penalty,
    latent_path_points,
    r1_penalty,
    r1_r2_penalty,
)
from .lecam import LeCam, lecam_penalty  # noqa: E402
from .select import TopKSchedule, top_k  # noqa: E402
from . import augment, combine, correction, diagnostics, losses, nn, select, spectral  # noqa: E402
from . import ada, consistency  # noqa: E402
from .ada import AdaptiveAugment  # noqa: E402
from .consistency import consistency_penalty, latent_consistency, latent_diversity, perturb_latent  # noqa: E402

__all__ = [
    "AdaptiveAugment",
    "BACKENDS",
    "KINDS",
    "LazyRegularizer",
    "LeCam",
    "R1R2",
    "TopKSchedule",
    "ada",
    "augment",

    "combine",
    "consistency",
    "consistency_penalty",
    "correction",
    "diagnostics",
    "get_backend",
    "grad_norm_penalty",
    "gradient_penalty",
    "gradient_penalty_at",
    "info",
    "interpolate",
    "latent_consistency",
    "latent_diversity",
    "latent_path_penalty",
    "latent_path_points",
    "lecam_penalty",
    "losses",
    "nn",
    "perturb_latent",
    "r1_penalty",
    "r1_r2_penalty",
    "select",
    "set_backend",
    "spectral",
    "top_k",
    "use_backend",
]
