"""The trainer's regularizer switches: each one changes what D (or G) is trained on, as it should.

Each test builds a tiny run (small batches, small models, a 256-image rectangles set) and takes a
step or two, spying on what reaches the discriminator. Resume equality with these switches on is
tested with the other resume variants in test_train.py.
"""

import copy
import itertools
import json

import pytest
import torch
from torch import nn

import fastgp
from fastgp import combine, losses
from fastgp.nn.spectral_norm import spectral_norms
from fastgp.train import cli, config
from fastgp.train.loop import Run

BASE = ["batch_size=8", "log.eval_samples=32", "log.diag_every=0", "log.progress=false", "log.plots=false"]
RECT = ["data.name=rectangles", "data.n_images=256", "model.channels=8", "noise.dim=8"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_run(tmp_path, *sets):
    return Run(config.resolve(sets=BASE + list(sets)), str(tmp_path))


def spy_d_inputs(run):
    """Record what each D step trains on: the (real, fake) batches given to the D loss, and
    ``main``, the loss it returned; ``expect`` (set by a test) recomputes it independently."""
    seen = []
    d_loss = run.penalty.d_loss

    def spy(D, real, fake, d_loss_fn, d_step, generator):
        entry = {"real": real.detach().clone(), "fake": fake.detach().clone()}
        if "expect" in run.__dict__:
            with torch.no_grad():
                entry["expected"] = run.expect(real, fake)
        total, main, gp = d_loss(D, real, fake, d_loss_fn, d_step, generator)
        entry["main"] = main.detach()
        seen.append(entry)
        return total, main, gp

    run.penalty.d_loss = spy
    return seen


def spy_calls(obj, name):
    """Record the arguments and results of obj.<name>(...)."""
    calls = []
    original = getattr(obj, name)

    def spy(*args):
        result = original(*args)
        calls.append((args, result))
        return result

    setattr(obj, name, spy)
    return calls


def shifted(x, dy, dx):
    """x translated by (dy, dx) with zero padding, written out slice by slice (the DESIGN rule)."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    out[..., max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = x[..., max(-dy, 0):H - max(dy, 0),
                                                                         max(-dx, 0):W - max(dx, 0)]
    return out


# ----------------------------------------------------------------------------------------------
# --help and bad configurations
# ----------------------------------------------------------------------------------------------

NEW = ("spectral-norm", "augment", "fake-as-real", "combine", "correction", "consistency", "ada")


def test_help_lists_every_regularizer_option(capsys):
    from fastgp.train.regularizers import REGISTRY

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in NEW:
        assert REGISTRY[name].OPTIONS, name
        for option in REGISTRY[name].OPTIONS:
            assert f"  regularizers.{name}.{option} [" in out, (name, option)


BAD = [
    (["regularizers.fake-as-real.n_far=20", "regularizers.fake-as-real.n_candidates=16", "batch_size=32"],
     "regularizers.fake-as-real.n_far: M0 = 20 must be <= n_candidates (M1 = 16)"),
    (["regularizers.fake-as-real.n_far=16"], "regularizers.fake-as-real.n_far: M0 = 16 must be <= batch_size (8)"),
    (["regularizers.fake-as-real.m0=4"], "regularizers.fake-as-real.m0: unknown option"),
    (["regularizers.fake-as-real.n_candidates=0"], "regularizers.fake-as-real.n_candidates: must be >= 1, got 0"),
    (["regularizers.augment.kind=translate"],
     "regularizers.augment.kind: 'translate' augments images [B, C, H, W]; data.name='8gaussians' is 2-D"),
    (["regularizers.augment.kind=diffaugment", "data.name=finite-gaussian"],
     "regularizers.augment.kind: 'diffaugment' augments images [B, C, H, W]; data.name='finite-gaussian' is 2-D"),
    (["regularizers.augment.kind=rotate"], "regularizers.augment.kind: must be one of 'none', 'translate', 'diffaugment'"),
    (RECT + ["regularizers.augment.kind=diffaugment", "regularizers.augment.copies=2"],
     "regularizers.augment.copies: applies to kind 'translate'"),
    (RECT + ["regularizers.augment.kind=diffaugment", "regularizers.augment.policy=color,zoom"],
     "regularizers.augment.policy: unknown DiffAugment policy word 'zoom'"),
    (RECT + ["regularizers.augment.kind=translate", "regularizers.augment.max_shift=32"],
     "regularizers.augment.max_shift: must be smaller than the image size 32×32, got 32"),
    (RECT + ["regularizers.augment.padding=wrap"], "regularizers.augment.padding: must be one of 'zeros'"),
    (["regularizers.combine.mode=and", "data.name=finite-gaussian"],
     "regularizers.combine.mode: 'and' combines binary images (rectangles); data.name='finite-gaussian' is not binary"),
    (["regularizers.combine.mode=or"],
     "regularizers.combine.mode: 'or' combines binary images (rectangles); data.name='8gaussians' is not binary"),
    (["regularizers.combine.mode=mean", "batch_size=1"], "regularizers.combine.mode: combinations need pairs"),
    (["regularizers.combine.n_pairs=-1"], "regularizers.combine.n_pairs: must be >= 0, got -1"),
    (["regularizers.correction.threshold=1.5"], "regularizers.correction.threshold: must be in [0, 1], got 1.5"),
    (["regularizers.correction.threshold=-0.1"], "regularizers.correction.threshold: must be in [0, 1], got -0.1"),
    (["regularizers.correction.pool=-1"], "regularizers.correction.pool: must be >= 0, got -1"),
    (["regularizers.correction.enabled=true"],
     "regularizers.correction.enabled: needs a finite training set (image data or finite-gaussian); "
     "data.name='8gaussians' has none"),
    (["regularizers.correction.enabled=true", "data.name=ring"], "regularizers.correction.enabled: needs a finite"),
    (["regularizers.correction.enabled=true", "data.name=swissroll"], "regularizers.correction.enabled: needs a finite"),
    (["regularizers.correction.measure=distance"], "regularizers.correction.measure: must be one of 'nearest', 'count'"),
    (["data.name=finite-gaussian", "regularizers.correction.enabled=true", "regularizers.correction.measure=count"],
     "regularizers.correction.measure: 'count' counts the objects of rectangles (data.n_rect per image); "
     "data.name='finite-gaussian' has no count"),
    (["data.siblings=true"], "data.siblings: only read for data.name 'rectangles', not '8gaussians'"),
    (RECT + ["data.siblings=true", "data.n_images=255"], "data.siblings: sibling pairs need an even data.n_images, got 255"),
    (RECT + ["data.siblings=true", "data.n_rect=5"], "data.siblings: each pair comes from an image of n_rect + 1 squares"),
    (RECT + ["regularizers.combine.mode=or", "regularizers.combine.source=siblings"],
     "regularizers.combine.source: 'siblings' combines the sibling pairs of rectangles made with data.siblings=true"),
    (RECT + ["data.siblings=true", "regularizers.combine.source=siblings"],
     "regularizers.combine.source: applies to a combination; set regularizers.combine.mode"),
    (RECT + ["regularizers.combine.source=pairs"], "regularizers.combine.source: must be one of 'batch', 'siblings'"),
    (["regularizers.combine.mode=and-or", "data.name=finite-gaussian"],
     "regularizers.combine.mode: 'and-or' combines binary images (rectangles)"),
    (["regularizers.spectral-norm.once_per_step=true"],
     "regularizers.spectral-norm.once_per_step: applies to spectral-normalized networks"),
    (["regularizers.spectral-norm.n_power_iterations=0"], "regularizers.spectral-norm.n_power_iterations: must be >= 1"),
    (["regularizers.spectral-norm.d=maybe"], "regularizers.spectral-norm.d: expected a bool (true/false), got 'maybe'"),
    (["regularizers.consistency.mode=cr"],
     "regularizers.consistency.mode: 'cr' augments images [B, C, H, W]; data.name='8gaussians' is 2-D"),
    (["regularizers.consistency.mode=icr"], "regularizers.consistency.mode: 'icr' augments images"),
    (["regularizers.consistency.mode=rcr"], "regularizers.consistency.mode: must be one of 'none', 'cr', 'bcr', 'zcr'"),
    (["regularizers.consistency.mode=zcr", "data.name=finite-gaussian", "regularizers.correction.enabled=true"],
     "regularizers.consistency.mode: 'zcr' pairs each fake G(z) with G(z + Δz); regularizers.correction replaces"),
    (RECT + ["regularizers.consistency.mode=cr", "regularizers.consistency.augment=flip"],
     "regularizers.consistency.augment: unknown DiffAugment policy word 'flip'"),
    (["regularizers.consistency.weight=-1"], "regularizers.consistency.weight: must be >= 0.0, got -1.0"),
    (["regularizers.consistency.sigma=-0.1"], "regularizers.consistency.sigma: must be >= 0.0, got -0.1"),
    (RECT + ["regularizers.ada.enabled=true"],
     "regularizers.ada.enabled: adapts the probability of regularizers.augment; set regularizers.augment.kind"),
    (["regularizers.ada.target=1.5"], "regularizers.ada.target: must be in [-1, 1] (a mean of signs), got 1.5"),
    (["regularizers.ada.kimg=0"], "regularizers.ada.kimg: must be > 0, got 0"),
    (["regularizers.ada.interval=0"], "regularizers.ada.interval: must be >= 1, got 0"),
    (RECT + ["regularizers.combine.mode=mean", "loss.name=relativistic-pairing"],
     "regularizers.combine.mode: the PCR loss splits a separable loss into real and fake terms; "
     "loss.name='relativistic-pairing' is relativistic"),
    (["regularizers.top-k.enabled=true", "loss.name=relativistic-average"],
     "regularizers.top-k.enabled: G's loss over its k best fakes would drop fakes from the relativistic loss"),
    (["optim.name=sgd", "regularizers.penalty.interval=2"],
     "regularizers.penalty.interval: lazy regularization (interval 2) needs optim.name adam or rmsprop"),
    (["regularizers.penalty.kind=r1+r2", "regularizers.penalty.output=probability"],
     "regularizers.penalty.output: 'probability' is not offered for kind 'r1+r2'"),
    (["regularizers.penalty.output=sigmoid"],
     "regularizers.penalty.output: must be one of 'logit', 'probability'; got 'sigmoid'"),
]


def test_option_machinery_has_its_own_module_and_no_import_cycle():
    """config builds its schema from regularizers; neither imports the other for Option/ConfigError."""
    import ast
    from pathlib import Path

    from fastgp.train import options, regularizers

    source = Path(regularizers.__file__).read_text(encoding="utf-8")
    imported = {
        node.module
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }
    assert "config" not in imported and "options" in imported
    # The public names stay importable where users import them today.
    assert config.ConfigError is options.ConfigError and regularizers.Option is options.Option
    assert config.Option is options.Option


@pytest.mark.parametrize("sets, message", BAD, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD)])
def test_bad_regularizer_config_fails_before_training(sets, message, tmp_path, capsys):
    out = tmp_path / "never"
    code = cli.main(["--out", str(out)] + [a for s in BASE + sets for a in ("--set", s)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"fastgp-train: error: {message}" in err
    assert not out.exists()


def test_bad_regularizer_option_in_a_config_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("regularizers:\n  fake-as-real: {n_far: 16, n_candidates: 8}\n")
    assert cli.main(["--config", str(path), "--out", str(tmp_path / "never")]) == 2
    assert "regularizers.fake-as-real.n_far: M0 = 16 must be <= n_candidates (M1 = 8)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Spectral normalization
# ----------------------------------------------------------------------------------------------


def test_spectral_norm_per_forward_on_d_only(tmp_path):
    run = make_run(tmp_path, "regularizers.spectral-norm.d=true", "regularizers.spectral-norm.n_power_iterations=2")
    layers = spectral_norms(run.D)
    assert len(layers) == 3 and spectral_norms(run.G) == []  # the MLP's three Linear layers
    assert all(p.n_power_iterations == 2 and not p.once_per_step for p in layers)
    assert run.spectral_norm.steps == []
    # Per-forward mode: every training forward advances the power iteration.
    u = layers[0]._u.clone()
    run.D(torch.zeros(4, 2))
    assert not torch.equal(u, layers[0]._u)
    keys = run.state()["models"]["D"].keys()
    assert {"0.parametrizations.weight.0._u", "0.parametrizations.weight.0._v"} <= set(keys)
    run.train_step()
    assert torch.isfinite(torch.tensor(run.acc["d_loss"]))


def test_spectral_norm_once_per_step_on_d_and_g(tmp_path):
    run = make_run(tmp_path, *RECT, "regularizers.spectral-norm.d=true", "regularizers.spectral-norm.g=true",
                   "regularizers.spectral-norm.once_per_step=true")
    d_layers, g_layers = spectral_norms(run.D), spectral_norms(run.G)
    assert len(d_layers) == 4 and len(g_layers) == 4  # D: 3 convs + linear; G: linear + 3 transposed convs
    assert all(p.once_per_step for p in d_layers + g_layers)
    assert len(spectral_norms(run.G_ema)) == 4  # the EMA copy is normalized too
    # σ is fixed within a step: forwards leave u unchanged, the optimizers' steps advance it.
    u_d, u_g = d_layers[0]._u.clone(), g_layers[0]._u.clone()
    run.D(torch.zeros(2, 1, 32, 32))
    assert torch.equal(u_d, d_layers[0]._u)
    run.train_step()
    assert not torch.equal(u_d, d_layers[0]._u) and not torch.equal(u_g, g_layers[0]._u)
    sigmas = run.state()["regularizers"]["spectral-norm"]
    assert [len(s["sigmas"]) for s in sigmas] == [4, 4]


# ----------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------


def test_translate_feeds_k_shifted_copies_of_real_and_fake_in_both_steps(tmp_path):
    K, s = 3, 2
    run = make_run(tmp_path, *RECT, "regularizers.augment.kind=translate", f"regularizers.augment.copies={K}",
                   f"regularizers.augment.max_shift={s}", "regularizers.penalty.kind=r1")
    sampled = spy_calls(run.data, "sample")
    seen = spy_d_inputs(run)
    d_inputs = []
    run.D.register_forward_pre_hook(lambda module, args: d_inputs.append(args[0]))
    run.train_step()
    real = sampled[0][1]  # the batch of reals drawn for the D step
    B = real.shape[0]
    assert seen[0]["real"].shape == (B * K, 1, 32, 32) and seen[0]["fake"].shape == (B * K, 1, 32, 32)
    shifts = list(itertools.product(range(-s, s + 1), repeat=2))
    for b, k in itertools.product(range(B), range(K)):
        row = seen[0]["real"][b * K + k]  # sample-major: copy k of sample b
        assert any(torch.equal(row, shifted(real[b], dy, dx)) for dy, dx in shifts), (b, k)
    # Not all copies are the identity: the shifts are really drawn.
    assert not torch.equal(seen[0]["real"][::K], real)
    # The G step feeds D K copies of each fake too, with gradients flowing back to G.
    g_input = d_inputs[-1]
    assert g_input.shape == (B * K, 1, 32, 32) and g_input.requires_grad


def test_diffaugment_changes_d_inputs_in_both_steps(tmp_path):
    run = make_run(tmp_path, *RECT, "regularizers.augment.kind=diffaugment", "regularizers.augment.policy=color")
    sampled = spy_calls(run.data, "sample")
    seen = spy_d_inputs(run)
    d_inputs = []
    run.D.register_forward_pre_hook(lambda module, args: d_inputs.append(args[0]))
    run.train_step()
    real = sampled[0][1]
    assert seen[0]["real"].shape == real.shape and not torch.allclose(seen[0]["real"], real)
    # color: per-image brightness, saturation, contrast — the ±1 images are no longer binary
    assert not torch.isin(seen[0]["real"], torch.tensor([-1.0, 1.0])).all()
    assert d_inputs[-1].shape[0] == 8 and d_inputs[-1].requires_grad


# ----------------------------------------------------------------------------------------------
# Fake-As-Real
# ----------------------------------------------------------------------------------------------


def test_far_replaces_reals_with_the_lowest_scored_candidates(tmp_path):
    M0, M1 = 3, 24
    run = make_run(tmp_path, "data.name=finite-gaussian", "regularizers.penalty.kind=r1",
                   f"regularizers.fake-as-real.n_far={M0}", f"regularizers.fake-as-real.n_candidates={M1}")
    sampled = spy_calls(run.data, "sample")
    seen = spy_d_inputs(run)
    run.train_step()
    real, last = sampled[0][1], run.far.last
    logits, candidates, indices = last["logits"], last["candidates"], last["indices"]
    assert candidates.shape == (M1, 2) and indices.shape == (M0,)
    assert torch.equal(indices, torch.sort(logits, stable=True).indices[:M0])
    assert logits[indices].max() <= logits[~torch.isin(torch.arange(M1), indices)].min()
    # The batch D trains as real (and takes R1 on): the first B - M0 reals, then the FAR samples.
    d_real = seen[0]["real"]
    assert torch.equal(d_real[: 8 - M0], real[: 8 - M0])
    assert torch.equal(d_real[8 - M0:], candidates[indices])
    rec = run.record()
    assert rec["far_logit"] == pytest.approx(float(logits[indices].mean()))
    with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
        assert "far_logit" in json.loads(f.readline())


# ----------------------------------------------------------------------------------------------
# Pixel-wise combinations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["mean", "and"])
def test_combinations_of_different_reals_are_extra_negatives(mode, tmp_path):
    run = make_run(tmp_path, *RECT, f"regularizers.combine.mode={mode}", "regularizers.combine.n_pairs=5",
                   "regularizers.penalty.kind=none", "loss.name=least-squares", "loss.params={b: 2.0}")
    calls = spy_calls(run.combine, "combinations")
    d_loss = combine.d_loss
    # The D loss must be E_real f1 + ½[E_fake f2 + E_comb f2] with the run's loss and its
    # parameters, on the same D.
    loss = losses.get("least-squares", b=2.0)
    run.expect = lambda real, fake: d_loss(run.D(real), run.D(fake), run.D(calls[-1][1]), loss=loss)
    seen = spy_d_inputs(run)
    run.train_step()
    (real,), comb = calls[0]
    assert comb.shape == (5, 1, 32, 32)
    pairs = [(i, j) for i in range(real.shape[0]) for j in range(real.shape[0]) if i != j]
    expected = {"mean": lambda a, b: (a + b) / 2, "and": torch.minimum}[mode]  # and of ±1 images = min
    for row in comb:
        assert any(torch.equal(row, expected(real[i], real[j])) for i, j in pairs)
    if mode == "and":
        assert torch.isin(comb, torch.tensor([-1.0, 1.0])).all()
    assert seen[0]["main"] == pytest.approx(float(seen[0]["expected"]), rel=1e-6)


def test_sibling_combinations_are_the_papers_and_or_negatives(tmp_path):
    """combine.source=siblings, mode=and-or: the ANDs (1 square) and ORs (3 squares) of sibling pairs
    of the training set (the paper's Appendix F), drawn from the combination's own stream."""
    from fastgp.correction import count_components

    run = make_run(tmp_path, *RECT, "data.siblings=true", "regularizers.combine.mode=and-or",
                   "regularizers.combine.source=siblings", "regularizers.combine.n_pairs=7",
                   "regularizers.penalty.kind=none")
    calls = spy_calls(run.combine, "combinations")
    loss = losses.get("non-saturating")
    run.expect = lambda real, fake: combine.d_loss(run.D(real), run.D(fake), run.D(calls[-1][1]), loss=loss)
    seen = spy_d_inputs(run)
    run.train_step()
    comb = calls[0][1]
    assert comb.shape == (7, 1, 32, 32) and torch.isin(comb, torch.tensor([-1.0, 1.0])).all()
    assert count_components(comb).tolist() == [1] * 4 + [3] * 3
    images = run.data.images
    ands = [torch.minimum(images[2 * k], images[2 * k + 1]) for k in range(images.shape[0] // 2)]
    ors = [torch.maximum(images[2 * k], images[2 * k + 1]) for k in range(images.shape[0] // 2)]
    assert all(any(torch.equal(row, a) for a in ands) for row in comb[:4])
    assert all(any(torch.equal(row, o) for o in ors) for row in comb[4:])
    assert seen[0]["main"] == pytest.approx(float(seen[0]["expected"]), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Sample correction
# ----------------------------------------------------------------------------------------------


class Planted(nn.Module):
    """G whose first sample of every call is a training image: a fake sample correction must catch."""

    def __init__(self, G, image):
        super().__init__()
        self.G, self.image, self.outputs = G, image, []

    def forward(self, z):
        out = self.G(z)
        out = torch.cat([self.image[None].to(out.dtype), out[1:]])
        self.outputs.append(out.detach().clone())
        return out


def test_correction_replaces_a_planted_realistic_fake(tmp_path):
    run = make_run(tmp_path, *RECT, "regularizers.correction.enabled=true", "regularizers.correction.pool=4")
    assert torch.equal(run.correction.bank, run.data.images) and run.correction.value_range == 2.0
    run.G = Planted(run.G, run.data.images[17])
    seen = spy_d_inputs(run)
    run.train_step()
    fakes, pool = run.G.outputs[0], run.G.outputs[1]
    mask = run.correction.last_mask
    assert mask.tolist() == [True] + [False] * 7  # only the planted copy is within 0.1 of the bank
    # It is replaced by the first pool fake that is not realistic (the pool's row 0 is planted too).
    assert torch.equal(seen[0]["fake"][0], pool[1])
    assert torch.equal(seen[0]["fake"][1:], fakes[1:])
    assert run.record()["sc_replaced"] == pytest.approx(1 / 8)


def test_correction_count_measure_replaces_fakes_with_the_right_count(tmp_path):
    """measure=count (the paper's measure on its rectangles): a fake is realistic when it holds
    exactly data.n_rect components, whatever its distance to the training set."""
    from fastgp.correction import count_components

    run = make_run(tmp_path, *RECT, "regularizers.correction.enabled=true", "regularizers.correction.measure=count",
                   "regularizers.correction.pool=16")
    assert run.correction.measure == "count" and run.correction.count == 2 and run.correction.bank is None
    two = -torch.ones(1, 32, 32)
    two[:, 0:8, 0:8] = two[:, 20:28, 21:29] = 1  # two squares, in no training image
    run.G = Planted(run.G, two)
    seen = spy_d_inputs(run)
    run.train_step()
    fakes, pool = run.G.outputs[0], run.G.outputs[1]
    mask = run.correction.last_mask
    assert mask.tolist() == (count_components(fakes) == 2).tolist() and mask[0]
    eligible = [p for p in pool if count_components(p[None]).item() != 2]
    assert eligible  # an untrained G draws other counts
    for row, replacement in zip(mask.nonzero().flatten().tolist(), itertools.cycle(eligible)):
        assert torch.equal(seen[0]["fake"][row], replacement)
    assert torch.equal(seen[0]["fake"][~mask], fakes[~mask])
    assert run.record()["sc_replaced"] == pytest.approx(float(mask.float().mean()))


def test_correction_bank_of_finite_gaussian_is_its_sample(tmp_path):
    run = make_run(tmp_path, "data.name=finite-gaussian", "regularizers.correction.enabled=true",
                   "regularizers.correction.pool=0", "regularizers.correction.threshold=0.001")
    assert torch.equal(run.correction.bank, run.data.ref)
    # the normalized distance divides by the width of the sample's range
    assert run.correction.value_range == pytest.approx(float(run.data.ref.max() - run.data.ref.min()))
    run.G = Planted(run.G, run.data.ref[5])
    run.train_step()
    fakes = run.G.outputs[0]
    assert run.correction.last_mask.tolist() == [True] + [False] * 7
    assert run.acc["sc_replaced"] == pytest.approx(1 / 8)
    # pool 0: the replacement is the batch's own first non-realistic fake
    assert run.correction.correct(fakes, None)[0][0].tolist() == fakes[1].tolist()


# ----------------------------------------------------------------------------------------------
# Consistency regularization and ADA
# ----------------------------------------------------------------------------------------------


def _run_pair(tmp_path, *sets):
    """The runs after two steps each, that differ only in ``sets``."""
    out = []
    for i, extra in enumerate(sets):
        run = make_run(tmp_path / str(i), *RECT, "regularizers.penalty.kind=none", *extra)
        run.train_step()
        run.train_step()
        out.append(run)
    return out


def test_cr_term_is_the_formula_on_d_inputs_and_reaches_d(tmp_path):
    run = make_run(tmp_path, *RECT, "regularizers.consistency.mode=bcr", "regularizers.consistency.weight=3",
                   "regularizers.consistency.fake_weight=2", "regularizers.penalty.kind=none")
    seen = []
    original = run.consistency.d_loss

    def spy(D, real, fake, real_logits, fake_logits, perturbed):
        state = run.consistency.generator.get_state()
        with torch.no_grad():
            assert torch.equal(real_logits, D(real)) and torch.equal(fake_logits, D(fake))  # the loss's forward
            g = torch.Generator()
            g.set_state(state)
            T = lambda x: fastgp.consistency.cr_augment(x, generator=g)  # noqa: E731
            expected = 3 * ((D(real) - D(T(real))) ** 2).mean() + 2 * ((D(fake) - D(T(fake))) ** 2).mean()
        result = original(D, real, fake, real_logits, fake_logits, perturbed)
        seen.append((result.detach(), expected))
        return result

    run.consistency.d_loss = spy
    run.train_step()
    torch.testing.assert_close(seen[0][0], seen[0][1], rtol=1e-6, atol=0)
    assert run.acc["consistency"] == pytest.approx(float(seen[0][0]))
    # Its own random stream: weight 0 leaves the run as without CR; a weight changes D's update.
    none, zero, on = _run_pair(tmp_path, [], ["regularizers.consistency.mode=cr", "regularizers.consistency.weight=0"],
                               ["regularizers.consistency.mode=cr"])
    for a, b in zip(none.D.parameters(), zero.D.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(none.D.parameters(), on.D.parameters()))


def test_zcr_pairs_each_fake_with_its_perturbed_latent_in_both_steps(tmp_path):
    run = make_run(tmp_path, *RECT, "regularizers.consistency.mode=zcr", "regularizers.consistency.sigma=0.5",
                   "regularizers.penalty.kind=none")
    noises = spy_calls(run, "_noise")
    states = []
    perturb = run.consistency.perturbed

    def spy_perturbed(G, z):
        states.append(run.consistency.generator.get_state())
        return perturb(G, z)

    run.consistency.perturbed = spy_perturbed
    d_terms = spy_calls(run.consistency, "d_loss")
    g_terms = spy_calls(run.consistency, "g_loss")
    run.G.eval()  # batch norm on its running statistics: G(z) can be recomputed outside the step
    run.G.train = lambda mode=True: run.G  # and stays so
    G_before = copy.deepcopy(run.G)  # G as both of its steps' terms see it (before G's update)
    D_before = copy.deepcopy(run.D)
    run.train_step()
    z_d, z_g = noises[0][1], noises[-1][1]  # (args, result): the z of the D step and of the G step
    (_, _, fake, _, fake_logits, perturbed), d_result = d_terms[0]
    g = torch.Generator()
    g.set_state(states[0])
    with torch.no_grad():
        expected_perturbed = G_before(z_d + 0.5 * torch.randn(z_d.shape, generator=g))
        assert torch.equal(fake, G_before(z_d)) and torch.allclose(perturbed, expected_perturbed, atol=1e-6)
        assert not torch.allclose(perturbed, fake, atol=1e-3)
        assert torch.equal(fake_logits, D_before(fake))
        torch.testing.assert_close(d_result, 5.0 * ((fake_logits - D_before(perturbed)) ** 2).mean(), rtol=1e-6, atol=0)
    (G, z, fake_g), g_result = g_terms[0]
    assert z is z_g and fake_g.requires_grad and g_result.requires_grad
    g.set_state(states[1])
    with torch.no_grad():
        expected = -0.5 * ((G_before(z_g) - G_before(z_g + 0.5 * torch.randn(z_g.shape, generator=g))) ** 2).mean()
    torch.testing.assert_close(g_result.detach(), expected, rtol=1e-5, atol=0)


def test_ada_gates_the_augmentation_with_the_steered_p(tmp_path):
    K = 2
    run = make_run(tmp_path, *RECT, "regularizers.augment.kind=translate", f"regularizers.augment.copies={K}",
                   "regularizers.ada.enabled=true", "regularizers.ada.interval=2", "regularizers.ada.kimg=0.004",
                   "regularizers.penalty.kind=none", "optim.n_dis=2")
    seen = spy_d_inputs(run)
    accumulated = spy_calls(run.ada.controller, "accumulate")
    run.train_step()  # 2 D steps at p = 0, then an update by ±8 · 2 / 4
    # p = 0: every row is its sample's original, so the K copies of a sample are equal.
    for entry in seen:
        assert torch.equal(entry["real"][0::K], entry["real"][1::K])
    replica = fastgp.AdaptiveAugment(8, interval=2, kimg=0.004)
    for (logits,), _ in accumulated:
        assert logits.shape == (8 * K, 1)  # D's logits on every copy of the real batch
        replica.accumulate(logits)
        replica.step()
    assert run.ada.controller.p == replica.p and run.ada.controller.rt == replica.rt is not None
    run.ada.controller._p.fill_(1.0)  # every row augmented: the copies differ
    run.train_step()
    assert not torch.equal(seen[-1]["real"][0::K], seen[-1]["real"][1::K])
    rec = run.record()
    assert rec["ada_p"] == run.ada.controller.p and rec["ada_rt"] == run.ada.controller.rt


# ----------------------------------------------------------------------------------------------
# The R3GAN recipe: relativistic pairing loss + R1 + R2 (penalty.kind r1+r2)
# ----------------------------------------------------------------------------------------------

R3GAN = ["loss.name=relativistic-pairing", "regularizers.penalty.kind=r1+r2", "regularizers.penalty.weight=2.0"]


def test_r1_r2_kind_is_rpgan_plus_weighted_r1_and_r2(tmp_path):
    run = make_run(tmp_path, *RECT, *R3GAN)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(8, 1, 32, 32, generator=g) * 2 - 1
    fake = torch.rand(8, 1, 32, 32, generator=g) * 2 - 1
    total, main, gp = run.penalty.d_loss(run.D_train, real, fake, run.d_loss_fn, 0, run.generators["penalty"])
    # Independently: the pairing loss of two forwards, and gradient_penalty's r1 and r2 at weight λ.
    expected_main = losses.d_relativistic_pairing(run.D_train(real), run.D_train(fake))
    expected_gp = (fastgp.gradient_penalty(run.D_train, real, kind="r1", weight=2.0)
                   + fastgp.gradient_penalty(run.D_train, real, fake, kind="r2", weight=2.0))
    torch.testing.assert_close(main, expected_main, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gp, expected_gp, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(total, main + gp)


def test_relativistic_g_step_compares_fakes_with_a_fresh_real_batch(tmp_path):
    run = make_run(tmp_path, *RECT, *R3GAN)
    calls = []
    g_loss = run.g_loss_fn

    def spy(fake_logits, real_logits):
        calls.append((fake_logits.detach().clone(), real_logits.detach().clone()))
        return g_loss(fake_logits, real_logits)

    run.g_loss_fn = spy
    run.train_step()
    assert len(calls) == 1
    fake_logits, real_logits = calls[0]
    assert fake_logits.shape == real_logits.shape == (8, 1)
    assert not torch.equal(fake_logits, real_logits)
    assert torch.isfinite(torch.tensor(run.acc["g_loss"]))


def test_r3gan_config_trains_and_logs_the_penalty(tmp_path):
    short = ["steps=4", "batch_size=16", "log.every=2", "log.progress=false", "log.plots=false", "log.diag_every=0",
             "log.eval_samples=32"]
    cfg = config.resolve(files=["configs/r3gan-8gaussians.yaml"], sets=short)
    assert cfg["loss"]["name"] == "relativistic-pairing" and cfg["regularizers"]["penalty"]["kind"] == "r1+r2"
    out = tmp_path / "r"
    args = ["--config", "configs/r3gan-8gaussians.yaml", "--out", str(out)] + [a for s in short for a in ("--set", s)]
    assert cli.main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and all(r["penalty"] > 0 for r in records)


@pytest.mark.parametrize("kind", ["zero-gp", "wgan-gp", "r1"])
def test_penalty_on_probability_is_the_penalty_of_sigmoid_d(kind, tmp_path):
    """output=probability: the penalty of D's sigmoid (the zero-centred-GP paper's code, whose D
    ends in a sigmoid), the main loss still on the logits; the same draws as output=logit."""
    run = make_run(tmp_path / "p", f"regularizers.penalty.kind={kind}", "regularizers.penalty.weight=10",
                   "regularizers.penalty.output=probability", "model.hidden=16")
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(8, 2, generator=g) * 5, torch.randn(8, 2, generator=g) * 5
    total, main, gp = run.penalty.d_loss(run.D_train, real, fake, run.d_loss_fn, 0, torch.Generator().manual_seed(1))
    expected_gp = fastgp.gradient_penalty(lambda x: run.D_train(x).sigmoid(), real, fake, kind=kind, weight=10.0,
                                          generator=torch.Generator().manual_seed(1))
    logit_gp = fastgp.gradient_penalty(run.D_train, real, fake, kind=kind, weight=10.0,
                                       generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gp, expected_gp, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(main, run.d_loss_fn(run.D_train(real), run.D_train(fake)))
    torch.testing.assert_close(total, main + gp)
    if kind != "wgan-gp":  # zero-centred: the sigmoid's slope is at most 1/4, so at most 1/16 of the logit's
        assert float(gp.detach()) <= float(logit_gp.detach()) / 16 * (1 + 1e-5)
    else:  # one-centred: a different function of the gradient norm, not a rescaled one
        assert abs(float(gp.detach()) - float(logit_gp.detach())) > 1e-3
