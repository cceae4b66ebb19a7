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
consistency       CR / bCR / zCR consistency terms            the D loss (zCR: the G loss too)
ada               augment's probability p steered by r_t      augment, after each D step
lecam             D's outputs pulled to anchors (LeCam)       the D loss
top-k             G's loss on its k best-scored fakes only    the G loss
================  ==========================================  ===================================

Every random draw comes from a generator the run owns and checkpoints (``loop.Run``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from .. import ada, augment, combine, consistency, correction, losses, penalty
from ..lecam import LeCam
from ..nn import SpectralNormStep, apply_spectral_norm
from ..penalty import LazyRegularizer
from ..select import FakeAsReal, TopKSchedule, top_k
from .options import ConfigError, Option, at_least, choice, open_unit_interval, positive, unit_interval


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
    counted: bool = False  # every training image holds the same number of objects (rectangles: data.n_rect)
    siblings: bool = False  # the images come in sibling pairs (rectangles with data.siblings)


class GradientPenalty:
    """``fastgp.gradient_penalty`` on D, every ``interval`` D steps with gain ``interval`` (lazy).

    The kinds and their papers: see ``fastgp.penalty`` (WGAN-GP, Gulrajani et al. 2017; 0-GP,
    Thanh-Tung et al. 2019; R1/R2, Mescheder et al. 2018; ...). With augmentation on, the penalty
    is taken at D's augmented inputs (each translated copy is a sample D is trained on).
    """

    # "r1+r2": R1 on the reals and R2 on the fakes from one call (fastgp.r1_r2_penalty, the R3GAN
    # recipe), weight λ each: λ·(mean R1 + mean R2), i.e. R3GAN's γ = 2λ.
    KINDS = ("none",) + tuple(penalty.KINDS) + ("r1+r2",)
    # Kinds taken at points between real and fake: those the latent path can replace.
    BETWEEN = tuple(k for k, spec in penalty.KINDS.items() if spec.point == "interpolate")
    PATHS = ("linear", "latent")
    OUTPUTS = ("logit", "probability")
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
        "output": Option(
            "logit",
            "whose input gradient is penalized: logit (D's output, as everywhere else in fastgp) or probability "
            "(sigmoid of it: the zero-centred-GP paper's code, whose D ends in a sigmoid; the penalty then fades "
            "where D saturates)",
            choice(OUTPUTS),
        ),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.penalty."
        on = flat[key + "kind"] != "none" and flat[key + "weight"] > 0
        if on and flat[key + "interval"] > 1 and flat["optim.name"] == "sgd":
            # The lazy correction rescales Adam's betas / RMSprop's alpha (fastgp.LazyRegularizer), none of SGD's.
            return (f"{key}interval: lazy regularization (interval {flat[key + 'interval']}) needs optim.name adam or "
                    "rmsprop, whose state the lazy correction adjusts; optim.name is 'sgd' (use interval 1)")
        if flat[key + "output"] == "probability" and flat[key + "kind"] == "r1+r2":
            return (f"{key}output: 'probability' is not offered for kind 'r1+r2' (fastgp.r1_r2_penalty takes D's "
                    "logits inside one call); use kind r1, or output logit")
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
        self.probability = cfg["output"] == "probability"

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
        if self.kind == "r1+r2":
            # One D forward (on cat(real, fake), unless D has batch norm in training mode) serves
            # the main loss, R1 and R2.
            out = penalty.r1_r2_penalty(D, real, fake, gamma=2 * self.weight)
            main = d_loss_fn(out.real_logits, out.fake_logits)
            gp = out.penalty
        elif self.kind == "r1":
            # One D forward serves the main loss and R1 (the shared-forward pattern).
            real = real.detach().requires_grad_(True)
            real_logits = D(real)
            main = d_loss_fn(real_logits, D(fake))
            gp = penalty.r1_penalty(real_logits.sigmoid() if self.probability else real_logits, real, self.weight)
        else:
            main = d_loss_fn(D(real), D(fake))
            # The main loss stays on the logits (the same objective as BCE on a sigmoid output).
            D_pen = (lambda x: D(x).sigmoid()) if self.probability else D  # noqa: E731
            if self.path == "latent":
                G, E, z = latent
                gp = penalty.latent_path_penalty(D_pen, G, E, real, z, kind=self.kind, weight=self.weight,
                                                 generator=generator)
            else:
                gp = penalty.gradient_penalty(D_pen, real, fake, kind=self.kind, weight=self.weight, generator=generator)
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
        self.adaptive: ada.AdaptiveAugment | None = None  # set by regularizers.ada: apply with its p
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
        if self.adaptive is not None and self.enabled:
            # ADA: each sample (each copy, each DiffAugment word) augmented with probability p.
            fn = self.policy if self.kind == "diffaugment" else self._translate
            return ada.random_apply(x, self.adaptive.p, fn, generator=self.generator)
        if self.kind == "translate":
            return self._translate(x)
        if self.kind == "diffaugment":
            return augment.DiffAugment(x, self.policy, generator=self.generator)
        return x

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        return augment.translate(x, max_shift=self.max_shift, copies=self.copies, padding=self.padding,
                                 generator=self.generator)


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
    GANs", arXiv:1909.12638, 2019): pixel-wise combinations of pairs of different reals
    (``fastgp.combine.pixelwise``) are extra negatives, and D minimizes
    E_real f1 + ½[E_fake f2 + E_comb f2] (``fastgp.combine.d_loss``, the paper's Eq. 13) with the
    run's loss and its parameters: every trainer loss is separable, E f1(real) + E f2(fake), so
    none is refused.

    Which pairs (``source``): ``batch`` combines random pairs of the D step's reals (the paper's
    variant for natural images, Sec. 5.3); ``siblings`` combines sibling pairs of the rectangles
    set (``data.siblings``), two images made from one image of n_rect + 1 squares, drawn with the
    combination's own generator: their AND holds n_rect − 1 squares and their OR n_rect + 1 (the
    paper's precomputed negatives on its geometry data, Appendix F). ``and`` / ``or`` binarize at 0
    and map the result back to the data's {−1, 1}; ``and-or`` makes the first ⌈n/2⌉ combinations
    ANDs and the others ORs (the paper uses both).
    """

    MODES = ("none",) + tuple(combine.MODES) + ("and-or",)
    BINARY = ("and", "or", "and-or")
    SOURCES = ("batch", "siblings")
    OPTIONS = {
        "mode": Option("none", "combination of two reals: " + ", ".join(MODES)
                       + " (and/or/and-or: binary images only; and-or: half ANDs, half ORs)", choice(MODES)),
        "n_pairs": Option(0, "combinations per D step (0: batch_size)", at_least(0)),
        "source": Option("batch", "pairs combined: batch (random pairs of the D step's reals) or siblings (sibling "
                         "pairs of the rectangles set, data.siblings: the paper's AND/OR negatives)",
                         choice(SOURCES)),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.combine."
        mode = flat[key + "mode"]
        if mode == "none":
            if flat[key + "source"] != "batch":
                return f"{key}source: applies to a combination; set {key}mode"
            return None
        if mode in Combination.BINARY and not data.binary:
            return f"{key}mode: {mode!r} combines binary images (rectangles); data.name={data.name!r} is not binary"
        if flat[key + "source"] == "siblings" and not data.siblings:
            return f"{key}source: 'siblings' combines the sibling pairs of rectangles made with data.siblings=true"
        if flat["batch_size"] < 2 and flat[key + "source"] == "batch":
            return f"{key}mode: combinations need pairs of different reals: batch_size must be >= 2"
        if flat["loss.name"] in losses.RELATIVISTIC:
            return (f"{key}mode: the PCR loss splits a separable loss into real and fake terms; loss.name="
                    f"{flat['loss.name']!r} is relativistic (not separable)")
        return None

    def __init__(self, cfg: dict, loss: losses.GANLoss, generator: torch.Generator | None, data=None):
        self.mode, self.n_pairs, self.source = cfg["mode"], cfg["n_pairs"], cfg["source"]
        self.loss, self.generator = loss, generator  # the run's loss, parameters bound
        self.data = data  # the dataset: source siblings draws its sibling pairs

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def combinations(self, real: torch.Tensor) -> torch.Tensor:
        n = self.n_pairs or real.shape[0]
        if self.source == "siblings":
            images, pairs = self.data.sibling_pairs(n, self.generator)
            x, pairs = images.to(real.device), pairs.to(real.device)
        else:
            x, pairs = real, combine.random_pairs(real.shape[0], n, self.generator, device=real.device)
        if self.mode == "and-or":  # ANDs of the first ⌈n/2⌉ pairs, ORs of the rest (none when n = 1)
            half = (n + 1) // 2
            parts = [("and", pairs[:half]), ("or", pairs[half:])]
            out = torch.cat([combine.pixelwise(x, mode, p, threshold=0.0) for mode, p in parts if len(p)])
        else:
            out = combine.pixelwise(x, self.mode, pairs, threshold=0.0)
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
    2019): the realistic fakes of D's fake batch, by a measure of reality, are replaced by extra
    fakes that are not (``fastgp.correction.replace_realistic``).

    ``measure``: ``nearest`` (the paper's measure for natural images, Sec. 5.3): a fake is
    realistic when its normalized distance to the nearest training sample is below ``threshold``,
    the distance being the root-mean-square per-element distance divided by the value range of the
    training set (2 for images in [−1, 1]). ``count`` (the paper's measure on its rectangles, Sec.
    5.2 and Appendix F): a fake is realistic when it holds exactly ``data.n_rect`` 4-connected
    components of pixels > 0 (``fastgp.correction.count_components``); ``threshold`` is not read.
    """

    OPTIONS = {
        "enabled": Option(False, "replace realistic fakes in D's fake batch"),
        "measure": Option("nearest", "measure of reality: nearest (normalized distance to the training set below "
                          "threshold) or count (rectangles: exactly data.n_rect connected components)",
                          choice(correction.MEASURES)),
        "threshold": Option(0.1, "measure nearest: normalized nearest-neighbour distance below which a fake is "
                            "replaced", unit_interval),
        "pool": Option(64, "extra fakes drawn per D step as replacements (0: the batch's own other fakes)",
                       at_least(0)),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.correction."
        if flat[key + "enabled"] and not data.finite:
            return (f"{key}enabled: needs a finite training set (image data or finite-gaussian); "
                    f"data.name={data.name!r} has none")
        if flat[key + "enabled"] and flat[key + "measure"] == "count" and not data.counted:
            return (f"{key}measure: 'count' counts the objects of rectangles (data.n_rect per image); "
                    f"data.name={data.name!r} has no count")
        return None

    def __init__(self, cfg: dict, bank: torch.Tensor | None, count: int | None = None):
        self.enabled, self.threshold, self.pool = cfg["enabled"], cfg["threshold"], cfg["pool"]
        self.measure = cfg["measure"]
        self.bank, self.count = bank, count
        if self.enabled and self.measure == "nearest":
            if bank is None:
                raise ConfigError("regularizers.correction.enabled: this dataset exposes no finite training set")
            self.value_range = float(bank.max() - bank.min()) or 1.0
        if self.enabled and self.measure == "count" and count is None:
            raise ConfigError("regularizers.correction.measure: this dataset has no object count")
        self.last_mask: torch.Tensor | None = None

    @torch.no_grad()
    def correct(self, fake: torch.Tensor, pool: torch.Tensor | None) -> tuple[torch.Tensor, float]:
        """(corrected fakes, replaced fraction)."""
        if self.measure == "count":
            corrected, mask = correction.replace_realistic(fake, pool=pool, measure="count", count=self.count)
        else:
            corrected, mask = correction.replace_realistic(fake, self.bank, self.threshold, pool, self.value_range)
        self.last_mask = mask
        return corrected, float(mask.float().mean())


class ConsistencyRegularization:
    """Consistency regularization of D (``fastgp.consistency``): CR (Zhang et al., "Consistency
    Regularization for Generative Adversarial Networks", ICLR 2020) on the reals, bCR on reals and
    fakes, zCR in the latent, ICR = bCR + zCR (Zhao et al., "Improved Consistency Regularization
    for GANs", AAAI 2021).

    In the D step: ``weight`` · mean((D(x) − D(T(x)))²) over D's real inputs x (bCR/ICR: plus
    ``fake_weight`` · the same over its fake inputs), reusing the logits of D's loss; T is applied
    to D's inputs, i.e. after ``regularizers.augment`` (with augment none these are the reals and
    fakes themselves, the papers' setting). zCR/ICR: the fakes G(z) of the D step are paired with
    G(z + Δz), Δz ~ N(0, sigma²I), which goes through ``regularizers.augment`` as every D input;
    D's loss gains ``d_weight`` · mean((D(G(z)) − D(G(z + Δz)))²) and G's loss
    −``g_weight`` · mean((G(z) − G(z + Δz))²) with the G step's own z. T's draws and Δz come from
    the run's own ``consistency`` generator.
    """

    MODES = ("none", "cr", "bcr", "zcr", "icr")
    OPTIONS = {
        "mode": Option("none", "none, cr (reals), bcr (reals and fakes), zcr (latent), icr (bcr + zcr)", choice(MODES)),
        "augment": Option("cr", "T of cr/bcr/icr: 'cr' (flip + reflect translation by 1/8, the papers') or DiffAugment "
                          "words of " + ", ".join(augment.POLICY_WORDS),
                          lambda v: None if v == consistency.CR_AUGMENT else _policy(v)),
        "weight": Option(10.0, "λ (cr) / λ_real (bcr, icr)", at_least(0.0)),
        "fake_weight": Option(10.0, "λ_fake (bcr, icr)", at_least(0.0)),
        "sigma": Option(0.03, "zcr, icr: σ of the latent perturbation Δz ~ N(0, σ²I)", at_least(0.0)),
        "d_weight": Option(5.0, "zcr, icr: λ_dis of D's term mean((D(G(z)) − D(G(z+Δz)))²)", at_least(0.0)),
        "g_weight": Option(0.5, "zcr, icr: λ_gen of G's term −mean((G(z) − G(z+Δz))²)", at_least(0.0)),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.consistency."
        mode = flat[key + "mode"]
        if mode in ("cr", "bcr", "icr") and not data.image:
            return f"{key}mode: {mode!r} augments images [B, C, H, W]; data.name={data.name!r} is 2-D"
        if mode in ("zcr", "icr") and flat["regularizers.correction.enabled"]:
            return (f"{key}mode: {mode!r} pairs each fake G(z) with G(z + Δz); regularizers.correction replaces "
                    "fakes, which breaks the pairs: switch one of them off")
        return None

    def __init__(self, cfg: dict, generator: torch.Generator | None = None):
        self.mode, self.augment = cfg["mode"], cfg["augment"]
        self.weight, self.fake_weight = cfg["weight"], cfg["fake_weight"]
        self.sigma, self.d_weight, self.g_weight = cfg["sigma"], cfg["d_weight"], cfg["g_weight"]
        self.generator = generator

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    @property
    def augmented(self) -> bool:
        """The CR terms (T on D's inputs) are on."""
        return self.mode in ("cr", "bcr", "icr")

    @property
    def latent(self) -> bool:
        """The zCR terms are on."""
        return self.mode in ("zcr", "icr")

    def perturbed(self, G, z: torch.Tensor) -> torch.Tensor:
        """G(z + Δz)."""
        return G(consistency.perturb_latent(z, self.sigma, generator=self.generator))

    def d_loss(self, D, real, fake, real_logits, fake_logits, fake_perturbed) -> torch.Tensor:
        """D's consistency terms from D's inputs and the logits of its loss."""
        total = real_logits.new_zeros(())
        if self.augmented:
            both = self.mode != "cr"
            total = total + consistency.consistency_penalty(
                D, real, fake if both else None, real_logits=real_logits, fake_logits=fake_logits if both else None,
                augment=self.augment, weight=self.weight, fake_weight=self.fake_weight if both else None,
                generator=self.generator,
            )
        if self.latent:
            total = total + consistency.latent_consistency(D, fake, fake_perturbed, fake_logits=fake_logits,
                                                           weight=self.d_weight)
        return total

    def g_loss(self, G, z: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """G's zCR term for the G step's z and fake = G(z)."""
        return consistency.latent_diversity(fake, self.perturbed(G, z), weight=self.g_weight)


class AdaptiveAugmentation:
    """Adaptive discriminator augmentation (Karras et al., "Training Generative Adversarial Networks
    with Limited Data", NeurIPS 2020): ``regularizers.augment`` is applied to each sample (each
    translated copy, each DiffAugment word) with probability p, and p is steered by
    ``fastgp.AdaptiveAugment`` from r_t = E[sign(D(real))] on D's (augmented) real inputs: every
    ``interval`` D steps p += sign(r_t − target) · images · interval / (kimg · 1000), clamped
    below at 0 (not above, as the original), with images = batch_size × processes (one real batch
    per D step). p starts at 0; p and the signs of an unfinished interval are checkpointed; under
    torchrun the signs are summed over the ranks. Logs ``ada_p`` and ``ada_rt`` (the last r_t).
    """

    OPTIONS = {
        "enabled": Option(False, "steer regularizers.augment's probability p with ADA's r_t heuristic"),
        "target": Option(0.6, "the r_t = E[sign(D(real))] ADA aims at", lambda v: None if -1.0 <= v <= 1.0
                         else f"must be in [-1, 1] (a mean of signs), got {v}"),
        "interval": Option(4, "D steps between updates of p", at_least(1)),
        "kimg": Option(500.0, "thousands of real images for p to move by 1", positive),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.ada.enabled"
        if flat[key] and flat["regularizers.augment.kind"] == "none":
            return f"{key}: adapts the probability of regularizers.augment; set regularizers.augment.kind"
        return None

    def __init__(self, cfg: dict, images_per_step: int):
        self.enabled = cfg["enabled"]
        self.controller = (
            ada.AdaptiveAugment(images_per_step, target=cfg["target"], interval=cfg["interval"], kimg=cfg["kimg"])
            if self.enabled
            else None
        )

    def attach(self, augmentation: Augmentation) -> None:
        if self.enabled:
            augmentation.adaptive = self.controller

    def after_d_step(self, real_logits: torch.Tensor) -> None:
        """Accumulate the signs of D's real logits of this D step; update p when due."""
        self.controller.accumulate(real_logits)
        self.controller.step()

    def metrics(self) -> dict:
        rec = {"ada_p": self.controller.p}
        if self.controller.rt is not None:
            rec["ada_rt"] = self.controller.rt
        return rec


class LeCamRegularization:
    """LeCam regularization (Tseng et al., "Regularizing Generative Adversarial Networks under
    Limited Data", CVPR 2021) with ``fastgp.LeCam``: every D step adds
    λ·[E ReLU(D(x) − α_F)² + E ReLU(α_R − D(G(z)))²] to D's loss, the anchors α being EMAs of D's
    mean outputs on reals and fakes (the authors' code; ``rectified: false`` drops the ReLUs, the
    paper's formula). The iteration is the G step counted from 0 (the authors' BigGAN ``itr``,
    google/lecam-gan third_party/run_train.py), shared by the ``n_dis`` D steps of a G step; the
    anchors are in every checkpoint.

    With the switch on, the mean outputs of D on its training reals and fakes per D step are
    logged (``d_real``, ``d_fake``, their gap ``d_gap``) with the penalty (``lecam``); weight 0
    logs them without changing training (the penalty is not computed).
    """

    OPTIONS = {
        "enabled": Option(False, "add the LeCam penalty to D's loss (and log D's mean real/fake outputs)"),
        "weight": Option(0.3, "λ (0.3: the authors' BigGAN CIFAR scripts; 0 only logs)", at_least(0.0)),
        "decay": Option(0.9, "EMA decay of the anchors (0.9: the authors' PyTorch ema_losses)", open_unit_interval),
        "start": Option(1000, "G step (from 0) from which the anchors average and after which the penalty applies",
                        at_least(0)),
        "rectified": Option(True, "the authors' ReLU on both terms (false: the paper's plain squares)"),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        return None

    def __init__(self, cfg: dict):
        self.enabled = cfg["enabled"]
        self.lecam = LeCam(cfg["weight"], cfg["decay"], cfg["start"], rectified=cfg["rectified"]) if self.enabled else None
        self.stats: dict = {}

    def wrap(self, d_loss_fn, iteration: int):
        """D's loss from (real logits, fake logits) plus the LeCam penalty at ``iteration``."""
        if not self.enabled:
            return d_loss_fn

        def loss(real_logits, fake_logits):
            reg = self.lecam(real_logits, fake_logits, iteration)
            d_real, d_fake = float(real_logits.detach().mean()), float(fake_logits.detach().mean())
            self.stats = {"d_real": d_real, "d_fake": d_fake, "d_gap": d_real - d_fake, "lecam": float(reg.detach())}
            return d_loss_fn(real_logits, fake_logits) + reg

        return loss

    def state_dict(self) -> dict | None:
        return self.lecam.state_dict() if self.enabled else None

    def load_state_dict(self, state: dict | None) -> None:
        if (state is None) != (not self.enabled):
            raise ValueError("regularizers.lecam.enabled does not match the checkpoint's LeCam state")
        if state is not None:
            self.lecam.load_state_dict(state)


class TopKTraining:
    """Top-k generator training (Sinha et al., "Top-k Training of GANs: Improving GAN Performance
    by Throwing Away Bad Samples", NeurIPS 2020): G's loss is taken over the k of its fakes that D
    scores highest only (``fastgp.top_k``, on every backend), k = max(γ^epoch, ν)·B rounded down
    (``fastgp.TopKSchedule``; B counts D's rows, so augmentation copies are ranked one by one).

    An epoch is ``steps_per_epoch`` G steps; 0 means one pass over the finite training set,
    ⌈N / batch_size⌉ G steps (as the paper's epochs over CIFAR/ImageNet). Datasets that are sampled
    afresh (the 2-D mixtures) have no epochs: set it.
    """

    OPTIONS = {
        "enabled": Option(False, "G's loss over the k highest-scored fakes of each batch"),
        "gamma": Option(0.99, "γ: k decays by this factor each epoch", unit_interval),
        "min_fraction": Option(0.5, "ν: the smallest kept fraction of the batch (the paper: 0.5 or 0.75)",
                               unit_interval),
        "steps_per_epoch": Option(0, "G steps per epoch (0: ⌈training set size / batch_size⌉; finite data only)",
                                  at_least(0)),
    }

    @staticmethod
    def check(flat: dict, data: DataFacts) -> str | None:
        key = "regularizers.top-k."
        if not flat[key + "enabled"]:
            return None
        if flat["loss.name"] in losses.RELATIVISTIC:
            return (f"{key}enabled: G's loss over its k best fakes would drop fakes from the relativistic loss "
                    f"loss.name={flat['loss.name']!r} (which compares them with reals); use another loss")
        for name in ("gamma", "min_fraction"):
            if flat[key + name] <= 0:
                return f"{key}{name}: must be in (0, 1], got {flat[key + name]}"
        if flat[key + "steps_per_epoch"] == 0 and not data.finite:
            return (f"{key}steps_per_epoch: data.name={data.name!r} has no finite training set, hence no epochs; "
                    "set the G steps per epoch")
        return None

    def __init__(self, cfg: dict, batch_size: int, bank: torch.Tensor | None):
        self.enabled = cfg["enabled"]
        self.schedule = TopKSchedule(cfg["gamma"], cfg["min_fraction"]) if self.enabled else None
        self.steps_per_epoch = cfg["steps_per_epoch"]
        if self.enabled and not self.steps_per_epoch:
            if bank is None:
                raise ConfigError("regularizers.top-k.steps_per_epoch: this dataset has no finite training set")
            self.steps_per_epoch = -(-bank.shape[0] // batch_size)

    def k(self, rows: int, step: int) -> int:
        """Fakes kept of ``rows`` at G step ``step`` (0-based)."""
        return self.schedule.k(rows, step // self.steps_per_epoch)

    def select(self, fake_logits: torch.Tensor, step: int) -> torch.Tensor:
        """The logits G's loss is taken over: the k highest (all of them when off)."""
        if not self.enabled:
            return fake_logits
        kept, _ = top_k(fake_logits.reshape(-1), self.k(fake_logits.shape[0], step))
        return kept


REGISTRY = {
    "penalty": GradientPenalty,
    "spectral-norm": SpectralNormalization,
    "augment": Augmentation,
    "fake-as-real": FakeAsRealSelection,
    "combine": Combination,
    "correction": SampleCorrection,
    "consistency": ConsistencyRegularization,
    "ada": AdaptiveAugmentation,
    "lecam": LeCamRegularization,
    "top-k": TopKTraining,
}

# Losses configurable by name: the custom "lgan" pair needs Python functions (phi, varphi).
LOSS_NAMES = tuple(n for n in losses.NAMES if n != "lgan")
