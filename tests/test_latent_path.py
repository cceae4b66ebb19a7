"""The latent-path penalty (Thanh-Tung et al., ICLR 2019, Appendix F, Algorithm 1): the points
X = G(α·E(x) + (1 − α)·z), the penalty at given points (gradient_penalty_at), its gradients and
its bad input."""

import pytest
import torch
from torch import nn
from torch.autograd import gradcheck

import fastgp
from fastgp.reference.penalty import gradient_penalty_reference

B, Z, X = 6, 3, 4


def nets(dtype=torch.float64):
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(Z, 8), nn.Tanh(), nn.Linear(8, X)).to(dtype)
    E = nn.Sequential(nn.Linear(X, 8), nn.Tanh(), nn.Linear(8, Z)).to(dtype)
    D = nn.Sequential(nn.Linear(X, 8), nn.Softplus(), nn.Linear(8, 1)).to(dtype)
    real = torch.randn(B, X, dtype=dtype)
    z = torch.randn(B, Z, dtype=dtype)
    return G, E, D, real, z


def by_hand(D, x, center=0.0, reduce=torch.mean):
    """The penalty as the authors' cal_gradpen writes it: grad of D at x, (‖g‖ − center)²."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return reduce((g.flatten(1).norm(dim=1) - center) ** 2)


def test_points_are_g_of_the_interpolated_codes_with_alpha_drawn_from_the_generator():
    G, E, _, real, z = nets()
    points = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(5))
    alpha = torch.rand(B, generator=torch.Generator().manual_seed(5)).to(z.dtype)[:, None]  # the draw of cal_gradpen
    with torch.no_grad():
        expected = G(alpha * E(real) + (1 - alpha) * z)
    torch.testing.assert_close(points, expected)
    assert not points.requires_grad and points.grad_fn is None  # a constant, as the authors' points


def test_given_alpha_and_its_ends():
    G, E, _, real, z = nets()
    with torch.no_grad():
        at_real, at_fake = G(E(real)), G(z)
    torch.testing.assert_close(fastgp.latent_path_points(G, E, real, z, alpha=torch.ones(B, dtype=z.dtype)), at_real)
    torch.testing.assert_close(fastgp.latent_path_points(G, E, real, z, alpha=torch.zeros(B, 1)), at_fake)
    alpha = torch.linspace(0, 1, B, dtype=z.dtype)
    with torch.no_grad():
        expected = G(alpha[:, None] * E(real) + (1 - alpha[:, None]) * z)
    torch.testing.assert_close(fastgp.latent_path_points(G, E, real, z, alpha=alpha), expected)


@pytest.mark.parametrize("kind", list(fastgp.KINDS))
def test_penalty_at_points_equals_the_penalty_by_hand(kind):
    G, E, D, real, z = nets()
    x = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(1))
    spec = fastgp.KINDS[kind]
    got = fastgp.gradient_penalty_at(D, x, kind=kind, weight=3.0)
    reduce = torch.amax if spec.reduction == "max" else torch.mean
    x_ = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x_).sum(), x_, create_graph=True)
    gap = g.flatten(1).norm(dim=1) - spec.center
    per = gap.clamp(min=0) ** 2 if spec.one_sided else gap**2
    torch.testing.assert_close(got, 3.0 * reduce(per))


def test_penalty_at_interpolates_equals_gradient_penalty():
    _, _, D, real, z = nets()
    fake = torch.randn_like(real)
    alpha = torch.rand(B, dtype=real.dtype)
    x = alpha[:, None] * real + (1 - alpha[:, None]) * fake
    torch.testing.assert_close(
        fastgp.gradient_penalty_at(D, x, kind="wgan-gp", weight=10.0),
        fastgp.gradient_penalty(D, real, fake, kind="wgan-gp", weight=10.0, alpha=alpha),
    )
    torch.testing.assert_close(
        fastgp.gradient_penalty_at(D, x, kind="wgan-gp", weight=10.0),
        gradient_penalty_reference(D, real, fake, kind="wgan-gp", weight=10.0, alpha=alpha),
    )


def test_latent_path_penalty_is_the_penalty_at_the_points_and_reaches_only_d():
    G, E, D, real, z = nets()
    got = fastgp.latent_path_penalty(D, G, E, real, z, kind="zero-gp", weight=2.0,
                                     generator=torch.Generator().manual_seed(3))
    x = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(3))
    expected = 2.0 * by_hand(D, x)
    torch.testing.assert_close(got, expected)
    got.backward()
    # ∇ₓD does not depend on D's output bias: every other parameter of D gets the penalty's gradient.
    shaping = list(D.parameters())[:-1]
    expected_grads = torch.autograd.grad(expected, shaping)
    for p, e in zip(shaping, expected_grads):
        assert p.grad is not None and p.grad.abs().sum() > 0
        torch.testing.assert_close(p.grad, e)
    # The points are constants: G and E get no gradient from the penalty (the authors' detached points).
    assert all(p.grad is None for p in (*G.parameters(), *E.parameters()))


def test_jvp_method_gives_the_same_value_and_gradients():
    G, E, D, real, z = nets()
    x = fastgp.latent_path_points(G, E, real, z, generator=torch.Generator().manual_seed(3))
    a = fastgp.gradient_penalty_at(D, x, kind="zero-gp", weight=2.0)
    shaping = list(D.parameters())[:-1]  # the output bias does not enter ∇ₓD
    grads_a = torch.autograd.grad(a, shaping)
    b = fastgp.gradient_penalty_at(D, x, kind="zero-gp", weight=2.0, method="jvp")
    grads_b = torch.autograd.grad(b, shaping)
    torch.testing.assert_close(a, b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)


def test_gradcheck_of_the_penalty_in_d_parameters():
    G, E, D, real, z = nets()
    x = fastgp.latent_path_points(G, E, real, z, alpha=torch.full((B,), 0.3, dtype=z.dtype))
    w1, b1, w2 = (p.detach().clone().requires_grad_(True) for p in list(D.parameters())[:-1])

    def penalty(w1, b1, w2):
        def D_(inp):
            return torch.nn.functional.softplus(inp @ w1.T + b1) @ w2.T
        return fastgp.gradient_penalty_at(D_, x, kind="zero-gp", weight=1.0)

    assert gradcheck(penalty, (w1, b1, w2))


def test_return_per_sample_and_images():
    torch.manual_seed(0)
    G = nn.Sequential(nn.Linear(Z, 2 * 4 * 4), nn.Unflatten(1, (2, 4, 4)))
    E = nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, Z))
    D = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Softplus(), nn.Flatten(), nn.Linear(3 * 2 * 2, 1))
    real, z = torch.randn(B, 2, 4, 4), torch.randn(B, Z)
    value, per = fastgp.latent_path_penalty(D, G, E, real, z, weight=1.0, return_per_sample=True,
                                            generator=torch.Generator().manual_seed(0))
    assert per.shape == (B,) and torch.allclose(per.mean(), value)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------


def test_bad_shapes_are_named():
    G, E, D, real, z = nets()
    with pytest.raises(ValueError, match="z must have one latent code per real sample"):
        fastgp.latent_path_points(G, E, real, z[:-1])
    with pytest.raises(ValueError, match=r"E\(real\) must have the shape of z"):
        fastgp.latent_path_points(G, E, real, torch.randn(B, Z + 1, dtype=z.dtype))
    with pytest.raises(ValueError, match="G's output must have the shape of real"):
        fastgp.latent_path_points(lambda w: G(w)[:, :2], E, real, z)
    with pytest.raises(TypeError, match=r"E\(real\) must return a tensor"):
        fastgp.latent_path_points(G, lambda x: (E(x),), real, z)
    with pytest.raises(TypeError, match=r"G\(latent\) must return a tensor"):
        fastgp.latent_path_points(lambda w: [G(w)], E, real, z)
    with pytest.raises(ValueError, match="z must have a batch dimension"):
        fastgp.latent_path_points(G, E, real, z[0])
    with pytest.raises(TypeError, match="z must have a floating dtype"):
        fastgp.latent_path_points(G, E, real, z.long())
    with pytest.raises(ValueError, match="points must have a batch dimension"):
        fastgp.gradient_penalty_at(D, real[0])


def test_bad_arguments_are_named():
    G, E, D, real, z = nets()
    with pytest.raises(TypeError, match="G must be callable"):
        fastgp.latent_path_points(None, E, real, z)
    with pytest.raises(TypeError, match="E must be callable"):
        fastgp.latent_path_points(G, 3, real, z)
    with pytest.raises(ValueError, match="pass alpha or generator, not both"):
        fastgp.latent_path_points(G, E, real, z, alpha=torch.rand(B), generator=torch.Generator())
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        fastgp.latent_path_points(G, E, real, z, alpha=torch.full((B,), 1.5))
    with pytest.raises(ValueError, match="alpha must have shape"):
        fastgp.latent_path_points(G, E, real, z, alpha=torch.rand(B + 1))
    with pytest.raises(TypeError, match="generator must be"):
        fastgp.latent_path_points(G, E, real, z, generator=5)
    with pytest.raises(ValueError, match="takes points between real and fake"):
        fastgp.latent_path_penalty(D, G, E, real, z, kind="r1")
    with pytest.raises(ValueError, match="kind must be one of"):
        fastgp.gradient_penalty_at(D, real, kind="nope")
    with pytest.raises(TypeError, match="D must be callable"):
        fastgp.gradient_penalty_at(None, real)
    with pytest.raises(ValueError, match="weight"):
        fastgp.gradient_penalty_at(D, real, weight=-1.0)
    with pytest.raises(ValueError, match="method"):
        fastgp.latent_path_penalty(D, G, E, real, z, method="nope")


# ------------------------------------------------------------------------------------------
# Trainer: regularizers.penalty.path = latent, the encoder, its checkpoint, config checks
# ------------------------------------------------------------------------------------------

from fastgp.train import checkpoint, config, models, train  # noqa: E402
from fastgp.train import regularizers as regs  # noqa: E402
from fastgp.train.options import ConfigError  # noqa: E402
from test_train import QUICK, _assert_same_state, _final_state, run_cli  # noqa: E402

LATENT = ["regularizers.penalty.path=latent"]


@pytest.mark.parametrize("sets, message", [
    (["regularizers.penalty.kind=r1"], "regularizers.penalty.path: 'latent' replaces the line between real and fake, "
                                       "so it needs a kind taken there (wgan-gp, zero-gp, lp, max-gp); kind is 'r1'"),
    (["regularizers.penalty.kind=none"], "kind is 'none'"),
    (["regularizers.penalty.kind=dragan"], "kind is 'dragan'"),
    (["data.name=rectangles", "regularizers.augment.kind=translate"],
     "regularizers.penalty.path: 'latent' is not combined with regularizers.augment"),
    (["regularizers.penalty.encoder_lr=0"], "regularizers.penalty.encoder_lr: must be > 0"),
    (["regularizers.penalty.encoder_prior=-1"], "regularizers.penalty.encoder_prior: must be >= 0"),
    (["regularizers.penalty.path=curved"], "regularizers.penalty.path: must be one of 'linear', 'latent'"),
])
def test_config_checks(sets, message):
    with pytest.raises(ConfigError) as info:
        config.resolve(sets=LATENT + sets)
    assert str(info.value).startswith("regularizers.") and message in str(info.value)


@pytest.mark.parametrize("kind", regs.GradientPenalty.BETWEEN)
def test_every_kind_between_real_and_fake_is_accepted(kind):
    assert config.resolve(sets=LATENT + [f"regularizers.penalty.kind={kind}"])["regularizers"]["penalty"]["path"] == "latent"


@pytest.mark.parametrize("sets, shape", [([], (2,)), (["data.name=rectangles", "model.channels=4"], (1, 32, 32)),
                                         (["data.name=rectangles", "model.name=resnet", "model.channels=4"], (1, 32, 32)),
                                         (["data.name=rectangles", "model.name=mlp-gan"], (1, 32, 32))])
def test_encoder_reads_what_d_reads_and_returns_latent_codes(sets, shape):
    cfg = config.resolve(sets=sets + ["noise.dim=5"])
    E = models.encoder(cfg, shape)
    assert E(torch.randn(3, *shape)).shape == (3, 5)


def test_encoder_objective_is_latent_regression_plus_moment_matching():
    torch.manual_seed(0)
    G, E = nn.Linear(2, 3), nn.Linear(3, 2)
    enc = regs.LatentPathEncoder(E, E, torch.optim.SGD(E.parameters(), lr=0.1), noise_std=2.0, prior=0.5,
                                 generator=torch.Generator())
    real, z = torch.randn(7, 3), torch.randn(7, 2) * 2
    with torch.no_grad():
        regression = (((E(G(z)) - z) / 2) ** 2).sum(1).mean() / 2
        u = E(real) / 2
        moments = (u.mean(0) ** 2 + (u.var(0, unbiased=False) - 1) ** 2).mean()
    torch.testing.assert_close(enc.loss(G, real, z), regression + 0.5 * moments)
    before = [p.detach().clone() for p in E.parameters()]
    enc.step(G, real, z)
    assert all(not torch.equal(a, b) for a, b in zip(before, E.parameters()))
    assert all(p.grad is None for p in G.parameters())  # G's samples are constants for E


def test_d_loss_takes_the_penalty_on_the_latent_path():
    G, E, D, real, z = nets(torch.float32)
    cfg = config.resolve(sets=LATENT)["regularizers"]["penalty"]
    pen = regs.GradientPenalty({**cfg, "weight": 2.0})
    fake = G(z).detach()
    loss_fn = lambda r, f: r.mean() - f.mean()  # noqa: E731
    total, main, gp = pen.d_loss(D, real.float(), fake, loss_fn, 0, torch.Generator().manual_seed(4), (G, E, z))
    expected = fastgp.latent_path_penalty(D, G, E, real.float(), z, weight=2.0, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(gp, expected)
    torch.testing.assert_close(total, main + expected)


def test_latent_run_trains_the_encoder_and_logs_its_loss(tmp_path):
    cfg = config.resolve(sets=QUICK + LATENT)
    run = train(cfg, str(tmp_path / "r"))
    assert run.encoder is not None and "enc_loss" in run.last and "penalty" in run.last
    saved = checkpoint.load(str(tmp_path / "r"))
    assert set(saved["regularizers"]["encoder"]) == {"model", "optimizer"}
    assert "encoder" in saved["rng"]["generators"]
    linear = train(config.resolve(sets=QUICK), str(tmp_path / "linear"))
    assert linear.encoder is None and "enc_loss" not in linear.last


@pytest.mark.parametrize("variant", [[], ["optim.n_dis=2", "regularizers.penalty.interval=2", "noise.dist=uniform",
                                          "regularizers.penalty.kind=wgan-gp"]], ids=["zero-gp", "lazy-wgan-gp"])
def test_resume_gives_exactly_the_uninterrupted_run_with_the_encoder(variant, tmp_path, capsys):
    sets = [a for s in QUICK + LATENT + variant for a in ("--set", s)]
    assert run_cli(["--out", str(tmp_path / "whole"), *sets, "--set", "steps=9"])[0] == 0
    assert run_cli(["--out", str(tmp_path / "part"), *sets])[0] == 0  # 6 steps
    code, err = run_cli(["--resume", str(tmp_path / "part"), "--set", "steps=9"], capsys)
    assert code == 0, err
    a, b = _final_state(tmp_path / "whole"), _final_state(tmp_path / "part")
    _assert_same_state(a, b)
    ea, eb = a["regularizers"]["encoder"], b["regularizers"]["encoder"]
    for key, value in ea["model"].items():
        assert torch.equal(value, eb["model"][key]), key
    for idx, state in ea["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(eb["optimizer"]["state"][idx][key])), (idx, key)


def test_resume_refuses_a_checkpoint_without_the_encoder(tmp_path, capsys):
    from fastgp.train.loop import Run

    assert run_cli(["--out", str(tmp_path / "r"), *[a for s in QUICK + LATENT for a in ("--set", s)]])[0] == 0
    payload = checkpoint.load(str(tmp_path / "r"))
    del payload["regularizers"]["encoder"]
    run = Run(config.resolve(sets=QUICK + LATENT), str(tmp_path / "r"))
    with pytest.raises(checkpoint.CheckpointError, match="the checkpoint has none"):
        run.restore(payload)


# ------------------------------------------------------------------------------------------
# The repro experiment's line measurement (Figure 9-style) and its reports
# ------------------------------------------------------------------------------------------


def _eight_gaussians():
    from fastgp.train import data as datasets

    cfg = config.resolve(sets=[])
    return datasets.build(cfg["data"], 0), cfg


def test_lines_of_a_generator_that_jumps_between_two_modes():
    from fastgp.repro import latent_path

    data, cfg = _eight_gaussians()
    # Every code lands exactly on mode 0 (z₁ < 0) or mode 4 (z₁ >= 0): lines jump once and never leave a mode.
    G = lambda z: torch.where(z[:, :1] < 0, data.ref[0], data.ref[4])  # noqa: E731
    found = latent_path.lines(G, data, cfg)
    assert found["line_off"] == 0.0 and found["line_switches"] == 1.0
    assert set(found["mode"].unique().tolist()) == {0, 4}


def test_lines_of_a_generator_that_draws_the_straight_segment_between_modes():
    from fastgp.repro import latent_path

    data, cfg = _eight_gaussians()
    # G(z) on the segment from mode 0 to mode 4 through the centre: the middle of every line is off the modes.
    G = lambda z: data.ref[0] * torch.tanh(z[:, :1])  # noqa: E731
    found = latent_path.lines(G, data, cfg)
    assert found["line_off"] > 0.5
    assert latent_path.lines(lambda z: data.ref[0].expand(z.shape[0], 2), data, cfg) is None  # one mode: no pair


def test_quick_repro_writes_the_line_picture_and_metrics(tmp_path, capsys):
    from fastgp.repro.__main__ import main

    out = tmp_path / "lp"
    assert main(["latent-path", "--quick", "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    import json

    results = json.loads((out / "results.json").read_text())
    assert results["figure"] == "latent-path-lines.png"
    assert (out / "latent-path-lines.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "latent-path-lines.png" in (out / "table.md").read_text()
    for s in results["settings"]:
        assert {"line_off", "line_switches"} <= set(s["runs"][0]["final"])
