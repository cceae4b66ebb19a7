"""The registry of regularizers the trainer can switch on: the keys of the config's
``regularizers`` section.

Each registered class declares its options (``OPTIONS``: defaults, types, help, value checks),
the checks that involve other options or the dataset (``check``, run by config validation before
anything trains) and builds the object the training loop calls:

================  ==========================================  ===================================
key               what it does in a discriminator step        hook in ``loop.py``
================  ==========================================  ===================================
penalty           a gradient penalty on D (lazy if asked;     the D loss (the encoder: after G's
                  on the latent path with an encoder E)       step)
spectral-norm     spectral normalization of D and/or G        the models and their optimizers
augment           translation (K copies) or DiffAugment       every input of D, D and G steps
fake-as-real      the lowest-scored candidates become reals   the real batch
combine           pixel-wise combinations as extra negatives  the D loss
correction        realistic fakes replaced from a pool        the fake batch
================  ==========================================  ===================================

Every random draw comes from a generator the run owns and checkpoints (``loop.Run``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from .. import augment, combine, correction, losses, penalty
from ..nn import SpectralNormStep, apply_spectral_norm
from ..penalty import LazyRegularizer
from ..select import FakeAsReal
from .options import ConfigError, Option, at_least, choice, positive, unit_interval


def _policy(value):
    words = value.split(",")
    unknown = [w for w in words if w not in augment.POLICY_WORDS]
    if unknown:
        return f"unknown DiffAugment policy word {unknown[0]!r}; use comma-separated words of {', '.join(augment.POLICY_WORDS)}"
    return None


class DataFacts(NamedTuple):
    """What the cross-option checks need to know of the configured dataset."""

    name: str
    image: bool  # [B, C, H, W] images (else 2-D points)
    binary: bool  # images whose pixels take two values (-1 and 1), e.g. rectangles
    finite: bool  # a finite training set exists (image datasets, finite-gaussian)


class GradientPenalty:
    """``fastgp.gradient_penalty`` on D, every ``interval`` D steps with gain ``interval`` (lazy).

    The kinds and their papers: see ``fastgp.penalty`` (WGAN-GP, Gulrajani et al. 2017; 0-GP,
    Thanh-Tung et al. 2019; R1/R2, Mescheder et al. 2018; ...). With augmentation on, the penalty
    is taken at D's augmented inputs (each translated copy is a sample D is trained on).
    """

    KINDS = ("none",) + tuple(penalty.KINDS)
    # Kinds taken at points between real and fake: those the latent path can replace.
    BETWEEN = tuple(k for k, spec in penalty.KINDS.items() if spec.point == "interpolate")
    PATHS = ("linear", "latent")
    OPTIONS = {
        "kind": Option("zero-gp", "penalty kind: " + ", ".join(KINDS), choice(KINDS)),
        "weight": Option(1.0, "penalty weight λ (no hidden ½)", at_least(0.0)),
        "interval": Option(1, "lazy regularization: apply every N discriminator steps with gain N", at_least(1)),
        "path": Option(
            "linear",
            "where the interpolating kinds take their points: linear (α·real + (1−α)·fake) or latent "
            "(G(α·E(real) + (1−α)·z), Thanh-Tung et al.'s Algorithm 1, with an encoder E trained alongside)",
            choice(PATHS),
        ),
        "encoder_lr": Option(1.0e-3, "path latent: learning rate of the encoder E (the run's optimizer and betas)",
                             positive),
        "encoder_prior": Option(
            1.0, "path latent: weight of the moment-matching term that keeps E(real) near the noise distribution",
            at_least(0.0),
        ),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.penalty."
        if flat[key + "path"] == "latent":
            kind = flat[key + "kind"]
            if kind not in GradientPenalty.BETWEEN:
                return (f"{key}path: 'latent' replaces the line between real and fake, so it needs a kind taken "
                        f"there ({', '.join(GradientPenalty.BETWEEN)}); kind is {kind!r}")
            if flat["regularizers.augment.kind"] != "none":
                return (f"{key}path: 'latent' is not combined with regularizers.augment (the encoder reads "
                        "un-augmented reals); set regularizers.augment.kind=none")
        return None

    def __init__(self, cfg: dict):
        self.kind = cfg["kind"]
        self.weight = cfg["weight"]
        self.lazy = LazyRegularizer(cfg["interval"])
        self.path = cfg["path"]

    @property
    def enabled(self) -> bool:
        return self.kind != "none" and self.weight > 0

    def adjust_optimizer(self, d_opt: torch.optim.Optimizer) -> None:
        # StyleGAN2's lazy-regularization optimizer correction; a no-op ratio for interval 1.
        if self.enabled and self.lazy.interval > 1:
            self.lazy.adjust_optimizer(d_opt)

    def d_loss(self, D, real, fake, d_loss_fn, d_step: int, generator: torch.Generator, latent=None):
        """D's main loss plus the penalty when due; returns (total, main loss, penalty or None).
        With the latent path, ``latent`` is (G, E, z): z the noise of the fake batch."""
        if not (self.enabled and self.lazy.due(d_step)):
            main = d_loss_fn(D(real), D(fake))
            return main, main, None
        if self.kind == "r1":
            # One D forward serves the main loss and R1 (the shared-forward pattern).
            real = real.detach().requires_grad_(True)
            real_logits = D(real)
            main = d_loss_fn(real_logits, D(fake))
            gp = penalty.r1_penalty(real_logits, real, self.weight)
        elif self.path == "latent":
            main = d_loss_fn(D(real), D(fake))
            G, E, z = latent
            gp = penalty.latent_path_penalty(D, G, E, real, z, kind=self.kind, weight=self.weight, generator=generator)
        else:
            main = d_loss_fn(D(real), D(fake))
            gp = penalty.gradient_penalty(D, real, fake, kind=self.kind, weight=self.weight, generator=generator)
        return main + self.lazy.gain * gp, main, gp


class LatentPathEncoder:
    """The encoder E of the latent-path penalty (``regularizers.penalty.path: latent``; Thanh-Tung,
    Tran & Venkatesh, ICLR 2019, Appendix F): E maps real data to latent codes distributed as the
    noise, so that G(α·E(x) + (1−α)·z) runs along G's manifold from (near) x to the fake G(z).

    The authors' public code (htt210/GeneralizationAndStabilityInGANs) has no encoder, so its
    objective is ours, one Adam (or RMSprop) step per generator step, after G's step: with σ the
    noise's per-coordinate standard deviation (noise.scale, or noise.scale/√3 for uniform noise),
    fresh noise z and G's samples G(z) (no gradient to G), and u = E(real)/σ,

        L_E = mean ‖(E(G(z)) − z)/σ‖² / d  +  encoder_prior · mean_j [ mean_b(u)_j² + (var_b(u)_j − 1)² ]

    the first term a latent regression (E inverts G on G's samples), the second matching the mean
    and variance of each coordinate of E(real) to those of the noise (E(real) stays where G's
    inputs are). E, its optimizer and its noise generator are part of every checkpoint.
    """

    def __init__(self, E: torch.nn.Module, E_train: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 noise_std: float, prior: float, generator: torch.Generator):
        self.E, self.E_train, self.optimizer = E, E_train, optimizer
        self.noise_std, self.prior, self.generator = noise_std, prior, generator

    def loss(self, G, real: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            fake = G(z)
        regression = ((self.E_train(fake) - z) / self.noise_std).pow(2).mean()
        u = self.E_train(real) / self.noise_std
        moments = (u.mean(0).pow(2) + (u.var(0, unbiased=False) - 1).pow(2)).mean()
        return regression + self.prior * moments

    def step(self, G, real: torch.Tensor, z: torch.Tensor) -> float:
        loss = self.loss(G, real, z)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        return {"model": self.E.state_dict(), "optimizer": self.optimizer.state_dict()}



class SpectralNormalization:
    """Spectral normalization (Miyato et al., "Spectral Normalization for Generative Adversarial
    Networks", ICLR 2018) of every Linear / Conv / ConvTranspose weight of D and/or G, with
    ``fastgp.nn.apply_spectral_norm``.

    By default each training forward runs ``n_power_iterations`` (torch's behaviour). With
    ``once_per_step`` (``fastgp.nn.SpectralNormStep``) u, v and σ advance only after each optimizer
    step of that network, all layers in one grouped call, so every forward of a D step (real, fake,
    interpolates, candidates) sees the same σ. The u, v buffers are part of the models' state
    dicts, hence of every checkpoint.
    """

    OPTIONS = {
        "d": Option(False, "spectral-normalize every Linear/Conv layer of D"),
        "g": Option(False, "spectral-normalize every Linear/Conv/ConvTranspose layer of G"),
        "n_power_iterations": Option(
            1, "power iterations per training forward (with once_per_step: per optimizer step)", at_least(1)
        ),
        "once_per_step": Option(
            False, "σ fixed within a step: u, v advance once per optimizer step of the network (SpectralNormStep)"
        ),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.spectral-norm."
        if flat[key + "once_per_step"] and not (flat[key + "d"] or flat[key + "g"]):
            return f"{key}once_per_step: applies to spectral-normalized networks; set {key}d and/or {key}g"
        return None

    def __init__(self, cfg: dict):
        self.on_d, self.on_g = cfg["d"], cfg["g"]
        self.n_power_iterations = cfg["n_power_iterations"]
        self.once_per_step = cfg["once_per_step"]
        self.steps: list[SpectralNormStep] = []

    def wrap(self, G: torch.nn.Module, D: torch.nn.Module) -> None:
        """Add the parametrizations (before G's EMA copy and the optimizers are made)."""
        for model, on in ((G, self.on_g), (D, self.on_d)):
            if on:
                apply_spectral_norm(model, n_power_iterations=self.n_power_iterations)

    def attach(self, G, D, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer) -> None:
        """The once-per-step mode: each network's SN step runs after its optimizer's step."""
        if not self.once_per_step:
            return
        for model, opt, on in ((G, opt_g, self.on_g), (D, opt_d, self.on_d)):
            if on:
                self.steps.append(SpectralNormStep(model, opt))

    def state_dict(self) -> list[dict]:
        """The once-per-step σ of every layer (u, v are in the models' state dicts)."""
        return [step.state_dict() for step in self.steps]

    def load_state_dict(self, state: list[dict]) -> None:
        if len(state) != len(self.steps):
            raise ValueError(f"holds spectral-norm state for {len(state)} networks, the run has {len(self.steps)}")
        for step, s in zip(self.steps, state):
            step.load_state_dict(s)


class Augmentation:
    """D's input transform: random translation with K copies per image (DiffAugment's
    ``rand_translation`` batched, ``fastgp.augment.translate``) or a DiffAugment policy (Zhao et al.,
    "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020,
    ``fastgp.augment.DiffAugment``).

    Every input of D in training goes through it — reals, fakes and combinations in the D step,
    fakes in the G step (differentiably: G learns through the augmentation). With K copies D sees
    B·K rows per batch, sample-major (row b·K + k is copy k of sample b), and each copy counts as a
    sample of the loss and of the penalty.
    """

    KINDS = ("none", "translate", "diffaugment")
    OPTIONS = {
        "kind": Option("none", "D-input augmentation: " + ", ".join(KINDS), choice(KINDS)),
        "copies": Option(1, "translate: K translated copies of every real and fake image", at_least(1)),
        "max_shift": Option(4, "translate: shifts drawn uniformly from [-s, s] pixels per axis", at_least(0)),
        "padding": Option("zeros", "translate: what enters at the border: zeros, reflect or replicate",
                          choice(("zeros", "reflect", "replicate"))),
        "policy": Option("color,translation,cutout", "diffaugment: comma-separated words of "
                         + ", ".join(augment.POLICY_WORDS), _policy),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.augment."
        kind = flat[key + "kind"]
        if kind != "none" and not data.image:
            return f"{key}kind: {kind!r} augments images [B, C, H, W]; data.name={data.name!r} is 2-D"
        if kind == "diffaugment" and flat[key + "copies"] != 1:
            return f"{key}copies: applies to kind 'translate' (a DiffAugment policy gives one output per image)"
        return None

    def __init__(self, cfg: dict, generator: torch.Generator | None, data_shape: tuple):
        self.kind = cfg["kind"]
        self.copies, self.max_shift, self.padding, self.policy = cfg["copies"], cfg["max_shift"], cfg["padding"], cfg["policy"]
        self.generator = generator
        if self.kind == "translate" and self.max_shift >= min(data_shape[-2:]):
            raise ConfigError(
                f"regularizers.augment.max_shift: must be smaller than the image size "
                f"{data_shape[-2]}×{data_shape[-1]}, got {self.max_shift}"
            )

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def rows_per_sample(self) -> int:
        return self.copies if self.kind == "translate" else 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "translate":
            return augment.translate(x, max_shift=self.max_shift, copies=self.copies, padding=self.padding,
                                     generator=self.generator)
        if self.kind == "diffaugment":
            return augment.DiffAugment(x, self.policy, generator=self.generator)
        return x


class FakeAsRealSelection:
    """Fake-As-Real (Tao & Wang, "Alleviation of Gradient Exploding in GANs: Fake Can Be Real",
    CVPR 2020): per D step, D scores ``n_candidates`` (M1) fresh fakes and the ``n_far`` (M0) it
    scores lowest replace the last M0 reals of the batch (``fastgp.select.FakeAsReal.mixed_batch``,
    the fused ``far_batch``). An R1 penalty is then taken on real ∪ FAR with the loss's forward.

    Candidates are scored by D on clean (un-augmented) inputs: the selection asks which fakes D
    finds least real, a question random shifts would only add noise to.
    """

    OPTIONS = {
        "n_far": Option(0, "M0: fakes trained as real per D step (0 disables Fake-As-Real)", at_least(0)),
        "n_candidates": Option(256, "M1: candidate fakes scored per D step", at_least(1)),
        "global": Option(
            False,
            "under torchrun: pick the M0·N lowest-scored of all N ranks' candidates and give each rank its "
            "share (fastgp.select.far_select_global) instead of each rank's own M0 lowest",
        ),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.fake-as-real."
        m0, m1, batch = flat[key + "n_far"], flat[key + "n_candidates"], flat["batch_size"]
        if m0 > m1:
            return f"{key}n_far: M0 = {m0} must be <= n_candidates (M1 = {m1})"
        if m0 > batch:
            return f"{key}n_far: M0 = {m0} must be <= batch_size ({batch}): FAR samples replace reals of the batch"
        return None

    def __init__(self, cfg: dict):
        self.n_far, self.n_candidates = cfg["n_far"], cfg["n_candidates"]
        # Global selection needs the process group; a single process selects on its own.
        global_selection = cfg["global"] and dist.is_available() and dist.is_initialized()
        self.selector = (
            FakeAsReal(self.n_far, self.n_candidates, weight=0.0, global_selection=global_selection)
            if self.n_far
            else None
        )
        self.last: dict = {}

    @property
    def enabled(self) -> bool:
        return self.selector is not None

    @torch.no_grad()
    def mixed_batch(self, D, real: torch.Tensor, candidates: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(real ∪ FAR batch, mean logit of the selected candidates)."""
        logits = D(candidates).reshape(-1)
        batch, indices = self.selector.mixed_batch(real, logits, candidates)
        self.last = {"candidates": candidates, "logits": logits, "indices": indices, "batch": batch}
        if self.selector.global_selection:
            # Global indices rank·M1 + i point into every rank's logits, concatenated in rank order.
            everyone = [torch.empty_like(logits) for _ in range(dist.get_world_size())]
            dist.all_gather(everyone, logits)
            return batch, float(torch.cat(everyone)[indices].mean())
        return batch, float(logits[indices].mean())


class Combination:
    """Pixel-wise combination regularization (Xuan et al., "On the Anomalous Generalization of
    GANs", arXiv:1909.12638, 2019): pixel-wise combinations of pairs of different reals of the
    batch (``fastgp.combine.pixelwise``) are extra negatives, and D minimizes
    E_real f1 + ½[E_fake f2 + E_comb f2] (``fastgp.combine.d_loss``) with the run's loss and its
    parameters: every trainer loss is separable, E f1(real) + E f2(fake), so none is refused.

    ``and`` / ``or`` binarize at 0 and map the result back to the data's {−1, 1}.
    """

    MODES = ("none",) + tuple(combine.MODES)
    BINARY = ("and", "or")
    OPTIONS = {
        "mode": Option("none", "combination of two reals: " + ", ".join(MODES) + " (and/or: binary images only)",
                       choice(MODES)),
        "n_pairs": Option(0, "combinations per D step (0: batch_size)", at_least(0)),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.combine."
        mode = flat[key + "mode"]
        if mode == "none":
            return None
        if mode in Combination.BINARY and not data.binary:
            return f"{key}mode: {mode!r} combines binary images (rectangles); data.name={data.name!r} is not binary"
        if flat["batch_size"] < 2:
            return f"{key}mode: combinations need pairs of different reals: batch_size must be >= 2"
        return None

    def __init__(self, cfg: dict, loss: losses.GANLoss, generator: torch.Generator | None):
        self.mode, self.n_pairs = cfg["mode"], cfg["n_pairs"]
        self.loss, self.generator = loss, generator  # the run's loss, parameters bound

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def combinations(self, real: torch.Tensor) -> torch.Tensor:
        n = self.n_pairs or real.shape[0]
        out = combine.pixelwise(real, self.mode, generator=self.generator, threshold=0.0, num_pairs=n)
        return out * 2 - 1 if self.mode in self.BINARY else out

    def d_loss(self, real_logits, fake_logits, comb_logits) -> torch.Tensor:
        return combine.d_loss(real_logits, fake_logits, comb_logits, loss=self.loss)


def training_set(data) -> torch.Tensor | None:
    """The finite training set of a dataset object (images, or finite-gaussian's points), else None."""
    images = getattr(data, "images", None)
    if isinstance(images, torch.Tensor):
        return images
    if getattr(data, "name", None) == "finite-gaussian":
        return data.ref
    return None


class SampleCorrection:
    """Sample correction (Xuan et al., "On the Anomalous Generalization of GANs", arXiv:1909.12638,
    2019): fakes whose normalized distance to the nearest training sample is below ``threshold`` are
    replaced in D's fake batch by extra fakes that are not (``fastgp.correction.replace_realistic``).

    The normalized distance is the root-mean-square per-element distance divided by the value range
    of the training set (2 for images in [−1, 1]).
    """

    OPTIONS = {
        "enabled": Option(False, "replace realistic fakes in D's fake batch"),
        "threshold": Option(0.1, "normalized nearest-neighbour distance below which a fake is replaced",
                            unit_interval),
        "pool": Option(64, "extra fakes drawn per D step as replacements (0: the batch's own other fakes)",
                       at_least(0)),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.correction.enabled"
        if flat[key] and not data.finite:
            return f"{key}: needs a finite training set (image data or finite-gaussian); data.name={data.name!r} has none"
        return None

    def __init__(self, cfg: dict, bank: torch.Tensor | None):
        self.enabled, self.threshold, self.pool = cfg["enabled"], cfg["threshold"], cfg["pool"]
        self.bank = bank
        if self.enabled:
            if bank is None:
                    raise ConfigError("regularizers.correction.enabled: this dataset exposes no finite training set")
            self.value_range = float(bank.max() - bank.min()) or 1.0
        self.last_mask: torch.Tensor | None = None

    @torch.no_grad()
    def correct(self, fake: torch.Tensor, pool: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """(corrected fakes, replaced fraction)."""
        corrected, mask = correction.replace_realistic(fake, self.bank, self.threshold, pool, self.value_range)
        self.last_mask = mask
        return corrected, float(mask.float().mean())


REGISTRY = {
    "penalty": GradientPenalty,
    "spectral-norm": SpectralNormalization,
    "augment": Augmentation,
    "fake-as-real": FakeAsRealSelection,
    "combine": Combination,
    "correction": SampleCorrection,
}

# Losses configurable by name: the custom "lgan" pair needs Python functions (phi, varphi).
LOSS_NAMES = tuple(n for n in losses.NAMES if n != "lgan")
