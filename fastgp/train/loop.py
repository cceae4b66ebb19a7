"""The training loop: G and D, their optimizers, the regularizers, metrics, checkpoints, pictures.

Every random draw of training comes from generators owned by the run (data, noise and
Fake-As-Real candidates on the CPU, penalties on the run's device, augmentation and combination
pairs on the CPU when those are on), saved in each checkpoint with the global torch / Python /
NumPy states, so a resumed run continues the same random stream. Evaluation and diagnostics draw
from their own fixed generator and never touch the training stream: measuring a run does not
change it (D and G are measured in eval mode, where spectral norm does not iterate).

One D step (``_d_batch``): sample reals and fakes; sample correction swaps realistic fakes;
pixel-wise combinations of the reals are made; Fake-As-Real swaps reals for the lowest-scored
candidates; then every D input goes through the augmentation (with ADA on, each sample with
probability p). Consistency regularization and ADA reuse the logits of D's loss (``_d_main_loss``).
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
import warnings

import numpy as np
import torch
from torch.nn.utils import parametrize

from .. import diagnostics, losses
from . import checkpoint, distributed, models, rundir
from . import data as datasets
from . import regularizers as regs
from .rundir import CONFIG, METRICS

__all__ = ["CONFIG", "METRICS", "Run", "train"]


class Run:
    def __init__(self, cfg: dict, out_dir: str):
        self.cfg, self.out_dir = cfg, out_dir
        seed = cfg["seed"]
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        self.dist, self.device = distributed.setup(torch.device(cfg["device"]))
        # Reads user data / trains or loads the digits classifier: a bad data.* fails here, before training.
        self.data = datasets.build(cfg["data"], seed)
        self.G, self.D = (m.to(self.device) for m in models.build(cfg, self.data.shape))
        reg_cfg = cfg["regularizers"]
        # Spectral norm wraps the models before G's EMA copy, DDP and the optimizers are made;
        # its once-per-step mode hooks the optimizers once they exist.
        self.spectral_norm = regs.SpectralNormalization(reg_cfg["spectral-norm"])
        self.spectral_norm.wrap(self.G, self.D)
        # DDP wrappers for the training forwards when distributed (see G_train / D_train).
        self._ddp = {"G": None, "D": None}
        if self.dist.enabled:
            self._ddp = {"G": distributed.wrap(self.G, self.dist, self.device), "D": distributed.wrap(self.D, self.dist, self.device)}
        # The EMA generator only ever runs in eval mode (batch norm with G's running statistics).
        self.G_ema = copy.deepcopy(self.G).requires_grad_(False).eval() if cfg["ema"]["decay"] > 0 else None
        self.opt_g, self.opt_d = self._optimizer(self.G, "lr_g"), self._optimizer(self.D, "lr_d")
        self.spectral_norm.attach(self.G, self.D, self.opt_g, self.opt_d)
        self.penalty = regs.GradientPenalty(reg_cfg["penalty"])
        self.penalty.adjust_optimizer(self.opt_d)
        self.d_loss_fn, self.g_loss_fn = losses.get(cfg["loss"]["name"], **cfg["loss"]["params"])
        self.relativistic = cfg["loss"]["name"] in losses.RELATIVISTIC  # G's loss needs real logits too
        # Each rank draws its own batches (rank 0 has the streams of a single-process run).
        stream = seed + 10007 * self.dist.rank
        self.generators = {
            "data": torch.Generator().manual_seed(stream + 1),
            "penalty": torch.Generator(self.device).manual_seed(stream + 2),
        }
        # The regularizers' own streams exist only when they are on, so switching one on leaves
        # the others' draws (and the checkpoints of runs without it) unchanged.
        aug = regs.Augmentation(reg_cfg["augment"], None, self.data.shape)
        if aug.enabled:
            aug.generator = self._own_generator("augment", seed + 4)
        self.augment = aug
        self.far = regs.FakeAsRealSelection(reg_cfg["fake-as-real"])
        comb = regs.Combination(reg_cfg["combine"], losses.get(cfg["loss"]["name"], **cfg["loss"]["params"]), None,
                                data=self.data)
        if comb.enabled:
            comb.generator = self._own_generator("combine", seed + 5)
        self.combine = comb
        cons = regs.ConsistencyRegularization(reg_cfg["consistency"])
        if cons.enabled:
            cons.generator = self._own_generator("consistency", seed + 6)
        self.consistency = cons
        # ADA steers the augmentation's probability from the signs of D's real logits.
        self.ada = regs.AdaptiveAugmentation(reg_cfg["ada"], cfg["batch_size"] * self.dist.world_size)
        self.ada.attach(self.augment)
        self._logits = self._fake_perturbed = None  # D's (real, fake) logits and G(z + Δz) of this D step
        self.encoder = self._latent_path_encoder(reg_cfg["penalty"], seed) if self.penalty.path == "latent" else None
        sc_cfg = reg_cfg["correction"]
        bank = regs.training_set(self.data) if sc_cfg["enabled"] and sc_cfg["measure"] == "nearest" else None
        self.correction = regs.SampleCorrection(sc_cfg, None if bank is None else bank.to(self.device),
                                                count=getattr(self.data, "n_rect", None))
        self.lecam = regs.LeCamRegularization(reg_cfg["lecam"])
        self.top_k = regs.TopKTraining(reg_cfg["top-k"], cfg["batch_size"], regs.training_set(self.data))
        # Fixed evaluation inputs (their own seed): comparable measurements across steps and runs.
        g_eval = torch.Generator().manual_seed(seed + 3)
        n_eval = cfg["log"]["eval_samples"]
        self.z_eval = self._noise(n_eval, g_eval)
        self.real_eval = self.data.sample(n_eval, g_eval).to(self.device)
        self.step = self.d_step = 0
        self.acc = {"d_loss": 0.0, "g_loss": 0.0, "penalty": 0.0, "n": 0, "n_penalty": 0}
        # Per-D-step statistics of the regularizers that are on, logged as means.
        self.reg_stats = [k for k, on in (("far_logit", self.far.enabled), ("sc_replaced", self.correction.enabled),
                                          ("consistency", self.consistency.enabled)) if on]
        if self.lecam.enabled:
            self.reg_stats += ["d_real", "d_fake", "d_gap", "lecam"]
        self.acc.update(dict.fromkeys(self.reg_stats, 0.0))
        if self.encoder is not None:
            self.acc["enc_loss"] = 0.0  # the encoder's loss, per G step
        self.last: dict = {}
        self.run_id = rundir.new_id()  # a resumed run's is set from its checkpoint (see rundir)
        self.started = time.perf_counter()

    # Training forwards go through G_train / D_train (DDP-wrapped when distributed); everything
    # else — evaluation, diagnostics, the EMA, checkpoints — uses the plain self.G / self.D.
    @property
    def G_train(self) -> torch.nn.Module:
        return self.G if self._ddp["G"] is None else self._ddp["G"]

    @property
    def D_train(self) -> torch.nn.Module:
        return self.D if self._ddp["D"] is None else self._ddp["D"]

    def _optimizer(self, model, lr_key, lr=None):
        o = self.cfg["optim"]
        lr = o[lr_key] if lr is None else lr
        if o["name"] == "adam":
            return torch.optim.Adam(model.parameters(), lr=lr, betas=(o["beta1"], o["beta2"]))
        if o["name"] == "sgd":
            return torch.optim.SGD(model.parameters(), lr=lr)
        return torch.optim.RMSprop(model.parameters(), lr=lr, alpha=o["beta2"], momentum=o["beta1"])

    def _latent_path_encoder(self, pen_cfg: dict, seed: int) -> regs.LatentPathEncoder:
        """E (D's architecture, noise.dim outputs), its optimizer and its own noise stream."""
        E = models.encoder(self.cfg, self.data.shape).to(self.device)
        E_train = distributed.wrap(E, self.dist, self.device) if self.dist.enabled else E
        nz = self.cfg["noise"]
        noise_std = nz["scale"] if nz["dist"] == "normal" else nz["scale"] / 3**0.5
        return regs.LatentPathEncoder(E, E_train, self._optimizer(E, None, lr=pen_cfg["encoder_lr"]), noise_std,
                                      pen_cfg["encoder_prior"], self._own_generator("encoder", seed + 17))

    def _own_generator(self, name: str, seed: int) -> torch.Generator:
        # On the CPU: fastgp's augmentation and pair draws accept a CPU generator for any device.
        self.generators[name] = torch.Generator().manual_seed(seed)
        return self.generators[name]

    def _noise(self, n: int, generator: torch.Generator) -> torch.Tensor:
        nz = self.cfg["noise"]
        if nz["dist"] == "normal":
            z = torch.randn(n, nz["dim"], generator=generator) * nz["scale"]
        else:
            z = (torch.rand(n, nz["dim"], generator=generator) * 2 - 1) * nz["scale"]
        return z.to(self.device)

    # ----------------------------------------------------------------------------------------
    # One generator step (n_dis discriminator steps first)
    # ----------------------------------------------------------------------------------------

    def train_step(self) -> None:
        B, gen = self.cfg["batch_size"], self.generators["data"]
        distributed.sync_buffers([self.G, self.D] + ([] if self.encoder is None else [self.encoder.E]), self.dist)
        self.D.requires_grad_(True)
        for _ in range(self.cfg["optim"]["n_dis"]):
            real, fake, comb = self._d_batch(B, gen)
            # LeCam's iteration is the G step counted from 0, the authors' BigGAN itr (run_train.py).
            d_loss_fn = self.lecam.wrap(self._d_main_loss(comb), self.step)
            # The latent path's (G, E, z), passed only when it is on (the linear path's call is unchanged).
            latent = {} if self.encoder is None else {"latent": (self.G_train, self.encoder.E, self._d_noise)}
            total, main, gp = self.penalty.d_loss(
                self.D_train, real, fake, d_loss_fn, self.d_step, self.generators["penalty"], **latent
            )
            if self.consistency.enabled:
                cr = self.consistency.d_loss(self.D_train, real, fake, *self._logits, self._fake_perturbed)
                total = total + cr
                self.acc["consistency"] += float(cr.detach())
            self.opt_d.zero_grad(set_to_none=True)
            total.backward()
            self.opt_d.step()
            self.d_step += 1
            if self.ada.enabled:
                self.ada.after_d_step(self._logits[0])
            self.acc["d_loss"] += float(main.detach())
            for key, value in self.lecam.stats.items():
                self.acc[key] += value
            if gp is not None:
                self.acc["penalty"] += float(gp.detach())
                self.acc["n_penalty"] += 1
        self.D.requires_grad_(False)  # G's step needs gradients through D, not of D's parameters
        # Augmentation is differentiable: G learns through it, as D sees its samples augmented.
        z = self._noise(B, gen)
        fake = self.G_train(z)
        fake_logits = self.top_k.select(self.D_train(self.augment(fake)), self.step)
        if self.relativistic:
            # G's relativistic loss compares its fakes with a fresh real batch (R3GAN's G step draws one).
            real_logits = self.D_train(self.augment(self.data.sample(B, gen).to(self.device)))
            g_loss = self.g_loss_fn(fake_logits, real_logits)
        else:
            g_loss = self.g_loss_fn(fake_logits)
        g_total = g_loss + self.consistency.g_loss(self.G_train, z, fake) if self.consistency.latent else g_loss
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()
        if self.G_ema is not None:
            # Warm-up as TensorFlow's ExponentialMovingAverage: the average forgets the random
            # initialization within the first steps instead of after ~1/(1 - decay) steps.
            decay = min(self.cfg["ema"]["decay"], (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                    p_ema.lerp_(p, 1 - decay)
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)  # batch-norm statistics follow G
        if self.encoder is not None:  # the latent path's encoder, on the last D step's reals
            self.acc["enc_loss"] += self.encoder.step(self.G_train, real, self._noise(B, self.encoder.generator))
        self.acc["g_loss"] += float(g_loss.detach())
        self.acc["n"] += 1
        self.step += 1

    def _d_batch(self, B: int, gen: torch.Generator):
        """D's inputs for one D step: (real, fake, combinations or None), after the D-input
        transform (augmentation). The regularizers that pick samples act here, in a fixed order of
        random draws: reals, fakes, correction's pool, combination pairs, FAR candidates."""
        real = self.data.sample(B, gen).to(self.device)
        comb = None
        perturbed = None
        with torch.no_grad():
            z = self._noise(B, gen)
            self._d_noise = z  # the fakes' z: the latent path runs from E(real) to it
            fake = self.G_train(z)
            if self.consistency.latent:
                perturbed = self.consistency.perturbed(self.G_train, z)  # zCR's G(z + Δz)
            if self.correction.enabled:
                pool = self.G_train(self._noise(self.correction.pool, gen)) if self.correction.pool else None
                fake, replaced = self.correction.correct(fake, pool)
                self.acc["sc_replaced"] += replaced
            if self.combine.enabled:
                comb = self.combine.combinations(real)  # of the sampled reals, before FAR
            if self.far.enabled:
                candidates = self.G_train(self._noise(self.far.n_candidates, gen))
                real, far_logit = self.far.mixed_batch(self.D_train, real, candidates)
                self.acc["far_logit"] += far_logit
        aug = self.augment
        out = aug(real), aug(fake), None if comb is None else aug(comb)
        self._fake_perturbed = None if perturbed is None else aug(perturbed)  # after the others' draws
        return out

    def _d_main_loss(self, comb):
        """D's loss from (real logits, fake logits): the run's loss, or the PCR loss with the
        combinations' logits as extra negatives."""
        if comb is None:
            loss = self.d_loss_fn
        else:
            loss = lambda real_logits, fake_logits: self.combine.d_loss(real_logits, fake_logits, self.D_train(comb))  # noqa: E731
        if not (self.consistency.enabled or self.ada.enabled):
            return loss

        def kept(real_logits, fake_logits):
            self._logits = (real_logits, fake_logits)  # reused by consistency and ADA: no second forward
            return loss(real_logits, fake_logits)

        return kept

    # ----------------------------------------------------------------------------------------
    # Measurements
    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict:
        rec = {f"{k}": v for k, v in self.data.metrics(self.G(self.z_eval)).items()}
        if self.G_ema is not None:
            rec.update({f"ema_{k}": v for k, v in self.data.metrics(self.G_ema(self.z_eval)).items()})
        return rec

    def diagnose(self) -> dict:
        n = min(256 if self.data.kind == "2d" else 64, self.z_eval.shape[0])
        # Spectral norm's σ is a custom autograd.Function that torch.func (the exact Jacobian of
        # G) cannot transform: compute each normalized weight once, outside, and reuse it.
        with parametrize.cached():
            for model in (self.D, self.G):
                for module in model.modules():
                    if parametrize.is_parametrized(module):
                        for name in module.parametrizations:
                            getattr(module, name)
            grad_d = diagnostics.jacobian_norm(self.D, self.real_eval[:n])
            jac_g = diagnostics.jacobian_norm(self.G, self.z_eval[:n])
            rec = {"grad_d_x": float(grad_d.mean()), "jac_g_z": float(jac_g.mean())}
            if self.data.kind == "2d":
                rec.update(self.gradient_direction(n))
        return rec

    def gradient_direction(self, n: int) -> dict:
        """How well D's gradient points at the data (Zhou et al.'s Lipschitz-GAN property), at
        the samples of G (not of its EMA: those are the fakes D is trained against).

        ``grad_cos``: the mean cosine between ∇ₓD(fake) and the direction from the fake to its
        nearest real evaluation sample; ``grad_cos_far``: the same over the fakes farther than
        3·data.std from every real sample, where the direction matters most (near the data the
        nearest real sample is a neighbour in a random direction). ``grad_cos_far`` is left out
        when no fake is that far. Undefined cosines (a zero gradient) are skipped.
        """
        fake = self.G(self.z_eval[:n])
        cosine, _, distance = diagnostics.gradient_direction(self.D, fake, self.real_eval, return_nearest=True)
        rec = {"grad_cos": float(cosine.nanmean())}
        far = cosine[(distance > 3 * self.data.std) & cosine.isfinite()]
        if far.numel():
            rec["grad_cos_far"] = float(far.mean())
        return rec

    def record(self) -> dict:
        a = self.acc
        rec = {rundir.ID_KEY: self.run_id, "step": self.step, "d_step": self.d_step}
        if a["n"]:
            rec["d_loss"] = a["d_loss"] / (a["n"] * self.cfg["optim"]["n_dis"])
            rec["g_loss"] = a["g_loss"] / a["n"]
        if a["n_penalty"]:
            rec["penalty"] = a["penalty"] / a["n_penalty"]
        for key in self.reg_stats:
            if a["n"]:
                rec[key] = a[key] / (a["n"] * self.cfg["optim"]["n_dis"])
        if self.encoder is not None and a["n"]:
            rec["enc_loss"] = a["enc_loss"] / a["n"]
        if self.ada.enabled:
            rec.update(self.ada.metrics())
        # Measurements in eval mode: batch norm uses its running statistics and is not updated,
        # and spectral norm does not advance its power iteration (measuring leaves training as is).
        self.G.eval()
        self.D.eval()
        try:
            rec.update(self.evaluate())
            diag_every = self.cfg["log"]["diag_every"]
            # Every diag_every steps and at the last one: a run's final record measures its final models.
            if diag_every and (self.step % diag_every == 0 or self.step == self.cfg["steps"]):
                rec.update(self.diagnose())
        finally:
            self.G.train()
            self.D.train()
        rec["time_s"] = round(time.perf_counter() - self.started, 3)
        self.acc = dict.fromkeys(self.acc, 0.0)
        self.acc["n"] = self.acc["n_penalty"] = 0
        self.last = rec
        # One os.write per record: a full disk is one clear error line, earlier records kept whole.
        checkpoint.append_line(self.out_dir, METRICS, json.dumps(rec) + "\n")
        return rec

    # ----------------------------------------------------------------------------------------
    # Checkpoints
    # ----------------------------------------------------------------------------------------

    def state(self) -> dict:
        """The checkpoint payload. Collective when distributed: every rank must call it."""
        rng_by_rank = distributed.gather(checkpoint.rng_state(self.generators), self.dist)
        return {
            rundir.ID_KEY: self.run_id,
            "world_size": self.dist.world_size,
            "step": self.step,
            "d_step": self.d_step,
            "config": self.cfg,
            "models": {
                "G": self.G.state_dict(),
                "D": self.D.state_dict(),
                "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            },
            "optimizers": {"G": self.opt_g.state_dict(), "D": self.opt_d.state_dict()},
            "regularizers": {"spectral-norm": self.spectral_norm.state_dict(), "lecam": self.lecam.state_dict(),
                             # ADA's state_dict is a collective (the signs summed over the ranks)
                             **({"ada": self.ada.controller.state_dict()} if self.ada.enabled else {}),
                             **({} if self.encoder is None else {"encoder": self.encoder.state_dict()})},
            "rng": rng_by_rank[0],
            "rng_by_rank": rng_by_rank,
            "log_acc": dict(self.acc),
        }

    def save(self) -> None:
        payload = self.state()  # every rank: it gathers the random states
        if self.dist.is_main:
            checkpoint.save(self.out_dir, payload)

    def restore(self, payload: dict) -> None:
        path = os.path.join(self.out_dir, checkpoint.NAME)
        mods = payload["models"]
        checkpoint.load_module(self.G, mods["G"], "G", path)
        checkpoint.load_module(self.D, mods["D"], "D", path)
        if (mods["G_ema"] is None) != (self.G_ema is None):
            raise checkpoint.CheckpointError(f"{path}: the EMA of G does not match ema.decay")
        if self.G_ema is not None:
            checkpoint.load_module(self.G_ema, mods["G_ema"], "G_ema", path)
        try:
            # After the models: the once-per-step σ is tied to the loaded weights.
            self.spectral_norm.load_state_dict(payload.get("regularizers", {}).get("spectral-norm", []))
            if self.ada.enabled:
                self.ada.controller.load_state_dict(payload.get("regularizers", {})["ada"])
            self.lecam.load_state_dict(payload.get("regularizers", {}).get("lecam"))
            if self.encoder is not None:
                saved = payload.get("regularizers", {}).get("encoder")
                if saved is None:
                    raise ValueError("the run has the latent path's encoder, the checkpoint has none")
                checkpoint.load_module(self.encoder.E, saved["model"], "E", path)
                self.encoder.optimizer.load_state_dict(saved["optimizer"])
                checkpoint.check_optimizer_state(self.encoder.optimizer, self.encoder.E, "E")
            self.opt_g.load_state_dict(payload["optimizers"]["G"])
            self.opt_d.load_state_dict(payload["optimizers"]["D"])
            checkpoint.check_optimizer_state(self.opt_g, self.G, "G")
            checkpoint.check_optimizer_state(self.opt_d, self.D, "D")
            world = int(payload.get("world_size", 1))
            if world != self.dist.world_size:
                raise ValueError(f"the run used {world} process(es), this launch has {self.dist.world_size}")
            rng = payload["rng_by_rank"][self.dist.rank] if "rng_by_rank" in payload else payload["rng"]
            checkpoint.set_rng_state(rng, self.generators)
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise checkpoint.CheckpointError(f"{path}: optimizer, regularizer or RNG state does not match: {e}") from None
        self.step, self.d_step = int(payload["step"]), int(payload["d_step"])
        self.acc.update(payload.get("log_acc", {}))
        self.acc["n"], self.acc["n_penalty"] = int(self.acc["n"]), int(self.acc["n_penalty"])
        if self.dist.is_main:
            checkpoint.remove_stale_temporaries(self.out_dir)


def progress_figures(run: Run, rec: dict) -> dict[str, str]:
    """The progress bar's figures from a metrics record, under the record's names as the command's
    final line shows them: the losses, then the main metric of G and, where there is one, of its
    EMA (``hq`` and ``ema_hq``: never one generator's figure under the other's name); for 2-D data
    also the modes covered, out of the data's."""
    shown = {key: f"{rec[key]:.3f}" for key in ("d_loss", "g_loss") if key in rec}
    names = [run.data.main_metric] + (["modes"] if run.data.kind == "2d" else [])
    for name in names:
        for key in (name, "ema_" + name) if run.G_ema is not None else (name,):
            value = rec[key]
            shown[key] = f"{value:.2f}" if isinstance(value, float) else str(value)
            if name == "modes":
                shown[key] += f"/{run.data.n_modes}"
    return shown


def train(cfg: dict, out_dir: str, resume: dict | None = None, *, force: bool = False) -> Run:
    """Train (or continue, given a loaded checkpoint ``resume``) for ``cfg['steps']`` G steps in
    ``out_dir``; returns the finished Run. ``cfg`` must come from ``config.resolve/validate``.

    A new run refuses an ``out_dir`` that holds another run's files, and a resumed run refuses a
    directory whose ``config.yaml`` or metrics are of another run than its checkpoint, or whose
    ``config.yaml`` was edited (:mod:`fastgp.train.rundir`); ``force`` overrides both: a new run
    deletes the other run's files first, a resumed run rewrites them as its own."""
    if cfg["log"]["plots"]:
        from . import plots

        plots._pyplot()  # a missing matplotlib fails now, not after training
    if cfg["log"]["tensorboard"]:
        from .tensorboard_log import problem

        line = problem()  # a missing tensorboard fails now, not at the first record
        if line:
            raise ImportError(f"{line} (or set log.tensorboard=false)")
    threads_before = torch.get_num_threads()
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    try:
        return _train(cfg, out_dir, resume, force)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: dict, out_dir: str, resume: dict | None, force: bool) -> Run:
    from tqdm import tqdm

    # Before anything is built or written; the checks only read, so every rank decides the same.
    if resume is None:
        replaced, plan = rundir.check_new(out_dir, force), None
    else:
        replaced, plan = [], rundir.check_resume(out_dir, resume, cfg, force)
    run = Run(cfg, out_dir)  # before creating out_dir: bad user data leaves no empty run directory
    events = None  # the TensorBoard event log (log.tensorboard), rank 0 only
    try:
        main = run.dist.is_main  # only rank 0 writes
        if main:
            try:
                os.makedirs(out_dir, exist_ok=True)
            except OSError as e:
                raise rundir.RunDirError(f"--out {out_dir} cannot be created: {e.strerror or e}") from None
        if plan is not None:
            run.restore(resume)
            run.run_id = plan.run_id
            if main:
                for line in plan.warnings:
                    warnings.warn(line, stacklevel=3)
                rundir.rewrite_metrics(out_dir, plan.records)
                rundir.clear(out_dir, plan.foreign_events)  # forced: another run's event files
        elif main:
            rundir.clear(out_dir, replaced)
        if main:
            rundir.write_config(out_dir, cfg, run.run_id)

        steps, log = cfg["steps"], cfg["log"]
        if main and log["tensorboard"]:
            from .tensorboard_log import EventLog

            events = EventLog(out_dir, run.run_id, resumed_at=None if plan is None else run.step)
        bar = tqdm(total=steps, initial=run.step, unit="step", disable=not (log["progress"] and main), dynamic_ncols=True)
        try:
            while run.step < steps:
                run.train_step()
                bar.update(1)
                if main and (run.step % log["every"] == 0 or run.step == steps):
                    rec = run.record()
                    if events is not None:
                        events.record(rec)
                    bar.set_postfix(progress_figures(run, rec))
                if run.step % cfg["checkpoint"]["every"] == 0 or run.step == steps:
                    run.save()
        finally:
            bar.close()
        if main and log["plots"]:
            from . import plots

            plots.write_all(run, events)
    finally:
        if events is not None:
            events.close()
        # The DDP wrappers go first (their reducers hold the process group), then teardown.
        run._ddp = {"G": None, "D": None}
        distributed.teardown(run.dist)
    return run
