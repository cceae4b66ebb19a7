"""The trainer's image data and models: digits and its cached classifier, user folders and arrays,
every bad data input, the MLP GAN and the ResNet pair.

The digits classifier is trained once per test session at 28×28 (a few seconds); everything else
runs a handful of steps on tiny data.
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from fastgp.train import cli, config, digits, models, train
from fastgp.train.plots import tile
from fastgp.train.userdata import load_array, load_folder

PNG = b"\x89PNG\r\n\x1a\n"
QUICK = ["steps=4", "batch_size=16", "log.every=2", "log.diag_every=2", "log.eval_samples=64", "checkpoint.every=4",
         "log.progress=false", "log.plots=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def run_cli(sets, out, capsys):
    code = cli.main(["--out", str(out)] + [a for s in sets for a in ("--set", s)])
    return code, capsys.readouterr().err


def uint8_images(n, c, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


# ----------------------------------------------------------------------------------------------
# digits: the data and the cached classifier
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [28, 32])
def test_digits_shape_and_range(resolution):
    images, labels = digits.load_digits(resolution)
    assert images.shape == (1797, 1, resolution, resolution) and images.dtype == torch.float32
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    assert images.min() == -1 and images.max() == 1  # white background and full ink both reached
    native, _ = digits.load_digits(8)
    bunch = digits.require_sklearn().load_digits()
    assert torch.equal(native[:, 0], torch.as_tensor(bunch.images, dtype=torch.float32) / 8 - 1)
    # Upsampling keeps the picture: shrunk back (area average) it is a blurred 8×8 original.
    back = nn.functional.adaptive_avg_pool2d(images, 8).flatten()
    assert torch.corrcoef(torch.stack([back, native.flatten()]))[0, 1] > 0.95


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The 28×28 classifier trained into a fresh cache directory: (cache dir, classifier)."""
    cache = tmp_path_factory.mktemp("digits-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTGP_CACHE_DIR", str(cache))
        rng_before = torch.get_rng_state()
        clf = digits.classifier(28)
        assert torch.equal(torch.get_rng_state(), rng_before), "training the classifier moved the global RNG"
    return cache, clf


def test_classifier_is_accurate_on_held_out_digits(trained):
    cache, clf = trained
    images, labels = digits.load_digits(28)
    train_idx, held_idx = digits._split(images.shape[0])
    assert len(held_idx) == 359 and not set(train_idx.tolist()) & set(held_idx.tolist())
    accuracy = float((clf.probabilities(images[held_idx]).argmax(1) == labels[held_idx]).float().mean())
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(clf.accuracy)
    assert os.path.isfile(cache / f"digits-classifier-r28-v{digits.VERSION}.pt")
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]  # the atomic write left no temporary


def _same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values()))


def test_cached_classifier_is_reused(trained, monkeypatch):
    cache, clf = trained
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(cache))
    path = digits.cache_path(28)
    mtime = os.stat(path).st_mtime_ns

    def no_training(resolution):
        raise AssertionError("retrained although the cache holds the classifier")

    monkeypatch.setattr(digits, "_train_classifier", no_training)
    rng_before = torch.get_rng_state()
    again = digits.classifier(28)
    assert torch.equal(torch.get_rng_state(), rng_before), "loading the cached classifier moved the global RNG"
    assert _same_weights(again, clf) and again.accuracy == clf.accuracy
    assert os.stat(path).st_mtime_ns == mtime


@pytest.mark.slow  # trains the digits classifier again
def test_corrupt_cache_is_retrained_with_a_warning(trained, tmp_path, monkeypatch):
    cache, clf = trained
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(tmp_path))
    path = digits.cache_path(28)
    data = open(cache / os.path.basename(path), "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])  # a torn file
    with pytest.warns(UserWarning, match="is unusable .*retraining it"):
        fresh = digits.classifier(28)
    assert _same_weights(fresh, clf)  # the same seed retrains the same network
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file is complete: no warning, no retraining
        monkeypatch.setattr(digits, "_train_classifier", None)
        assert _same_weights(digits.classifier(28), clf)


@pytest.mark.parametrize("content", [
    {"version": digits.VERSION + 1, "resolution": 28, "state": {}, "accuracy": 1.0},  # another fastgp's cache
    {"version": digits.VERSION, "resolution": 32, "state": {}, "accuracy": 1.0},  # misnamed
    {"version": digits.VERSION, "resolution": 28, "state": {"0.weight": torch.zeros(2)}, "accuracy": 1.0},
    [1, 2, 3],
])
def test_foreign_cache_file_is_retrained(content, trained, tmp_path, monkeypatch):
    _, clf = trained
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(tmp_path))
    torch.save(content, digits.cache_path(28))
    calls = []
    monkeypatch.setattr(digits, "_train_classifier", lambda r: calls.append(r) or clf)
    with pytest.warns(UserWarning, match="unusable"):
        assert digits.classifier(28) is clf
    assert calls == [28]
    payload = torch.load(digits.cache_path(28), weights_only=True)
    assert payload["version"] == digits.VERSION and payload["resolution"] == 28


def test_unwritable_cache_warns_and_still_measures(trained, tmp_path, monkeypatch):
    _, clf = trained
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(digits, "_train_classifier", lambda r: clf)
    with pytest.warns(UserWarning, match="cannot cache the digits classifier .*FASTGP_CACHE_DIR"):
        assert digits.classifier(28) is clf


def test_default_cache_dir_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTGP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert digits.cache_path(32) == str(tmp_path / ".cache" / "fastgp" / f"digits-classifier-r32-v{digits.VERSION}.pt")


def test_digits_metrics_real_vs_one_repeated_digit(trained, monkeypatch):
    cache, _ = trained
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(cache))
    data = digits.Digits(28)
    real = data.metrics(data.images[:1000])
    assert real["classes"] == 10 and real["kl"] < 0.05 and real["confidence"] > 0.9
    assert real["nn_dist"] < 0.05  # training images are their own nearest neighbours (cdist rounds)
    one = data.metrics(data.images[data.labels == 3][:1].repeat(200, 1, 1, 1))
    assert one["classes"] == 1
    assert one["kl"] == pytest.approx(math.log(10))
    assert one["confidence"] > 0.9
    # Outlier exposure: shapeless images get low confidence, far below the digits'.
    noise = torch.rand(500, 1, 28, 28, generator=torch.Generator().manual_seed(5)) * 2 - 1
    assert data.metrics(noise)["confidence"] < 0.5


def test_class_metrics_count_a_quarter_of_the_fair_share():
    # 400 samples: the fair share is 40, a class needs >= 10. Class 0: 10 (counts), class 1: 9 (not).
    labels = torch.cat([torch.zeros(10), torch.ones(9), torch.full((381,), 2)]).long()
    probs = nn.functional.one_hot(labels, 10).double() * 0.5 + 0.05
    m = digits.class_metrics(probs)
    assert m["classes"] == 2
    share = torch.tensor([10, 9, 381]) / 400
    assert m["kl"] == pytest.approx(float((share * (share * 10).log()).sum()))
    assert m["confidence"] == pytest.approx(0.55)
    assert digits.class_metrics(nn.functional.one_hot(torch.arange(400) % 10, 10).float())["kl"] == 0.0


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn` raise ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'fastgp\[digits\]'"):
        digits.load_digits(28)
    with pytest.raises(config.ConfigError, match=r"^data.name: .*scikit-learn.*pip install 'fastgp\[digits\]'"):
        config.resolve(sets=["data.name=digits"])


# ----------------------------------------------------------------------------------------------
# User data: folders and arrays
# ----------------------------------------------------------------------------------------------


def _save_images(folder, images, ext):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for i, img in enumerate(images):  # [C, H, W] uint8
        hwc = img.transpose(1, 2, 0)
        Image.fromarray(hwc[..., 0] if hwc.shape[-1] == 1 else hwc).save(os.path.join(folder, f"{i:03d}{ext}"))


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_round_trip(channels, tmp_path):
    images = uint8_images(5, channels, 12, 12)
    _save_images(tmp_path / "a", images[:3], ".png")
    _save_images(tmp_path / "a" / "sub", images[3:], ".BMP")  # subfolders and upper-case extensions count
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    loaded = load_folder(str(tmp_path / "a"), channels, 12)
    # Sorted paths: a/000.png, a/001.png, a/002.png, a/sub/000.BMP, a/sub/001.BMP.
    assert torch.equal(loaded, torch.from_numpy(images).float() / 127.5 - 1)


def test_folder_converts_channels_and_fits_the_resolution(tmp_path):
    from PIL import Image

    rgb = uint8_images(1, 3, 20, 30)[0].transpose(1, 2, 0)  # a 30×20 (W×H) colour picture
    Image.fromarray(rgb).save(tmp_path / "wide.png")
    Image.fromarray(rgb).save(tmp_path / "wide.jpg", quality=95)
    gray = load_folder(str(tmp_path), 1, 20)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))[:, 5:25]  # centre crop of the L image
    assert gray.shape == (2, 1, 20, 20)
    assert torch.equal(gray[1, 0], torch.from_numpy(expected.copy()).float() / 127.5 - 1)  # .png after .jpg
    assert (gray[0] - gray[1]).abs().mean() < 0.1  # the jpg is the same picture up to compression
    small = load_folder(str(tmp_path), 3, 8)
    assert small.shape == (2, 3, 8, 8) and small.min() >= -1 and small.max() <= 1


# [N, H, W] arrays are single-channel by definition.
@pytest.mark.parametrize("layout, channels", [("NCHW", 1), ("NCHW", 3), ("NHWC", 1), ("NHWC", 3), ("NHW", 1)])
def test_uint8_array_round_trip(layout, channels, tmp_path):
    images = uint8_images(6, channels, 10, 10)
    stored = {"NCHW": images, "NHWC": images.transpose(0, 2, 3, 1), "NHW": images[:, 0]}[layout]
    np.save(tmp_path / "x.npy", stored)
    expected = torch.from_numpy(images).float() / 127.5 - 1
    assert torch.equal(load_array(str(tmp_path / "x.npy"), "", 10), expected)


def test_uint8_bounds_map_to_the_tanh_range(tmp_path):
    np.save(tmp_path / "x.npy", np.array([[[[0, 255], [128, 127]]]], np.uint8))
    values = load_array(str(tmp_path / "x.npy"), "", 2).flatten().tolist()
    assert values[:2] == [-1.0, 1.0] and values[2:] == pytest.approx([1 / 255, -1 / 255], abs=1e-7)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_float_npz_round_trip_with_and_without_key(layout, tmp_path):
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    images[0, 0, 0, 0], images[0, 0, 0, 1] = -1.0, 1.0  # the bounds themselves are allowed
    stored = images.numpy() if layout == "NCHW" else images.permute(0, 2, 3, 1).numpy()
    np.savez(tmp_path / "d.npz", first=stored.astype(np.float64), second=np.zeros((2, 1, 4, 4), np.float32))
    assert torch.allclose(load_array(str(tmp_path / "d.npz"), "", 16), images, atol=1e-7, rtol=0)  # default: first
    assert load_array(str(tmp_path / "d.npz"), "second", 8).shape == (2, 1, 8, 8)  # resized 4 -> 8
    np.savez(tmp_path / "one.npz", only=stored)
    assert torch.equal(load_array(str(tmp_path / "one.npz"), "", 16), images)


def _write_bad(tmp_path, what):
    """Creates the bad input ``what`` under tmp_path and returns its --set options."""
    from PIL import Image

    if what == "missing folder":
        return ["data.name=folder", f"data.path={tmp_path / 'nope'}"]
    if what == "folder is a file":
        (tmp_path / "f.png").write_bytes(b"x")
        return ["data.name=folder", f"data.path={tmp_path / 'f.png'}"]
    if what == "empty folder":
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "readme.txt").write_text("no images here")
        return ["data.name=folder", f"data.path={tmp_path / 'empty'}"]
    if what == "unreadable image":
        (tmp_path / "imgs").mkdir()
        Image.new("L", (8, 8)).save(tmp_path / "imgs" / "ok.png")
        (tmp_path / "imgs" / "bad.jpg").write_bytes(b"definitely not a jpeg")
        return ["data.name=folder", f"data.path={tmp_path / 'imgs'}"]
    arrays = {
        "wrong rank": np.zeros((10, 8), np.uint8),
        "no channel axis": np.zeros((10, 5, 8, 8), np.uint8),
        "ambiguous layout": np.zeros((10, 3, 4, 1), np.uint8),
        "floats out of range": np.linspace(-1.5, 2.25, 10 * 64, dtype=np.float32).reshape(10, 1, 8, 8),
        "NaN floats": np.full((10, 1, 8, 8), np.nan, np.float32),
        "int64 dtype": np.zeros((10, 1, 8, 8), np.int64),
        "no images": np.zeros((0, 1, 8, 8), np.uint8),
    }
    if what in arrays:
        np.save(tmp_path / "a.npy", arrays[what])
        return ["data.name=array", f"data.path={tmp_path / 'a.npy'}"]
    if what == "wrong key":
        np.savez(tmp_path / "a.npz", x=np.zeros((2, 1, 8, 8), np.uint8), y=np.zeros(3))
        return ["data.name=array", f"data.path={tmp_path / 'a.npz'}", "data.key=images"]
    if what == "key for a .npy":
        np.save(tmp_path / "a.npy", np.zeros((2, 1, 8, 8), np.uint8))
        return ["data.name=array", f"data.path={tmp_path / 'a.npy'}", "data.key=x"]
    if what == "corrupt npy":
        (tmp_path / "a.npy").write_bytes(b"\x93NUMPY garbage")
        return ["data.name=array", f"data.path={tmp_path / 'a.npy'}"]
    if what == "empty npz":
        np.savez(tmp_path / "a.npz")
        return ["data.name=array", f"data.path={tmp_path / 'a.npz'}"]
    if what == "missing array":
        return ["data.name=array", f"data.path={tmp_path / 'a.npy'}"]
    if what == "not an array file":
        (tmp_path / "a.csv").write_text("1,2\n")
        return ["data.name=array", f"data.path={tmp_path / 'a.csv'}"]
    raise KeyError(what)


BAD_DATA = [
    ("missing folder", r"data.path: .*nope does not exist \(data.name 'folder' needs a directory of images\)"),
    ("folder is a file", r"data.path: .*f.png is not a directory"),
    ("empty folder", r"data.path: no .png/.jpg/.jpeg/.bmp images in .*empty"),
    ("unreadable image", r"data.path: cannot read image .*bad.jpg: "),
    ("wrong rank", r"data.path: .*a.npy has shape \[10, 8\]; expected images \[N, C, H, W\]"),
    ("no channel axis", r"data.path: .*shape \[10, 5, 8, 8\] has no channel axis of size 1 or 3"),
    ("ambiguous layout", r"data.path: .*shape \[10, 3, 4, 1\] is ambiguous"),
    ("floats out of range", r"data.path: float images must lie in \[-1, 1\] .* has min -1.5 and max 2.25"),
    ("NaN floats", r"data.path: float images must lie in \[-1, 1\] .* has min nan and max nan"),
    ("int64 dtype", r"data.path: .*a.npy has dtype int64; expected uint8 \(0..255\) or float in \[-1, 1\]"),
    ("no images", r"data.path: .*a.npy holds no images"),
    ("wrong key", r"data.key: 'images' is not in .*a.npz; its arrays: x, y"),
    ("key for a .npy", r"data.key: selects an array of a .npz archive; .*a.npy is a .npy file"),
    ("corrupt npy", r"data.path: cannot read .*a.npy: "),
    ("empty npz", r"data.path: .*a.npz holds no arrays"),
    ("missing array", r"data.path: .*a.npy does not exist"),
    ("not an array file", r"data.path: .*a.csv must be a .npy or .npz file"),
]


@pytest.mark.parametrize("what, message", BAD_DATA, ids=[w for w, _ in BAD_DATA])
def test_bad_user_data_fails_before_training(what, message, tmp_path, capsys):
    import re

    out = tmp_path / "never"
    code, err = run_cli(_write_bad(tmp_path, what) + QUICK, out, capsys)
    assert code == 2
    assert re.search("fastgp-train: error: " + message, err), err
    assert not out.exists()


BAD_COMBINATIONS = [
    (["data.name=folder"], "data.path: required for data.name 'folder' (a directory of images)"),
    (["data.name=array"], "data.path: required for data.name 'array' (a .npy or .npz file)"),
    (["data.name=digits", "data.path=x.npy"], "data.path: only read for data.name 'folder' or 'array', not 'digits'"),
    (["data.name=digits", "data.key=x"], "data.key: only read for data.name 'array' (a .npz archive), not 'digits'"),
    (["data.name=folder", "data.path=.", "data.channels=2"], "data.channels: must be one of 1, 3; got 2"),
    (["data.name=digits", "data.resolution=2"], "data.resolution: must be >= 4, got 2"),
    (["data.name=digits", "model.name=resnet"],
     "model.name: 'resnet' is built for 32×32 images; data.resolution is 28 (set data.resolution=32, or use 'mlp-gan')"),
    (["data.name=folder", "data.path=.", "data.resolution=64", "model.name=dcgan"],
     "model.name: 'dcgan' is built for 32×32 images; data.resolution is 64"),
    (["data.name=digits", "model.name=mlp"], "model.name: 'mlp' is the 2-D pair; data.name='digits' needs 'mlp-gan' (or 'auto')"),
    (["data.name=digits", "data.resolution=32", "model.name=mlp"],
     "model.name: 'mlp' is the 2-D pair; data.name='digits' needs 'dcgan' (or 'auto')"),
    (["model.name=mlp-gan"], "model.name: 'mlp-gan' needs image data; data.name='8gaussians' is 2-D (use 'mlp' or 'auto')"),
    (["data.name=ring", "model.name=resnet"], "model.name: 'resnet' needs 32×32 image data; data.name='ring' is 2-D"),
    (["model.name=vgg"], "model.name: must be one of 'auto', 'mlp', 'mlp-gan', 'dcgan', 'resnet'; got 'vgg'"),
]


@pytest.mark.parametrize("sets, message", BAD_COMBINATIONS, ids=[m.split(":")[0] + str(i) for i, (_, m) in
                                                                 enumerate(BAD_COMBINATIONS)])
def test_bad_data_and_model_options_fail_at_validation(sets, message, tmp_path, capsys):
    with pytest.raises(config.ConfigError) as info:
        config.resolve(sets=sets)
    assert str(info.value).startswith(message)
    code, err = run_cli(sets, tmp_path / "never", capsys)
    assert code == 2 and f"fastgp-train: error: {message}" in err and not (tmp_path / "never").exists()


def test_auto_model_rule():
    def auto(*sets):
        return models.model_name(config.flatten(config.resolve(sets=list(sets))))

    assert auto() == "mlp"
    assert auto("data.name=rectangles") == "dcgan"
    assert auto("data.name=digits") == "mlp-gan"
    assert auto("data.name=digits", "data.resolution=32") == "dcgan"
    assert auto("data.name=array", "data.path=x.npy", "data.resolution=16") == "mlp-gan"


# ----------------------------------------------------------------------------------------------
# Models and short training runs
# ----------------------------------------------------------------------------------------------


def test_mlp_gan_has_the_papers_layer_widths():
    cfg = config.resolve(sets=["data.name=digits", "model.name=mlp-gan", "noise.dim=100"])
    G, D = models.build(cfg, (1, 28, 28))
    g_linear = [(m.in_features, m.out_features) for m in G.modules() if isinstance(m, nn.Linear)]
    d_linear = [(m.in_features, m.out_features) for m in D.modules() if isinstance(m, nn.Linear)]
    assert g_linear == [(100, 128), (128, 256), (256, 512), (512, 1024), (1024, 784)]
    assert d_linear == [(784, 512), (512, 256), (256, 1)]
    g_layers = list(G.net)
    for i, width in enumerate((128, 256, 512, 1024)):  # Linear, BatchNorm, LeakyReLU(0.2) per hidden layer
        lin, bn, act = g_layers[3 * i:3 * i + 3]
        assert isinstance(bn, nn.BatchNorm1d) and bn.num_features == width
        assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert isinstance(g_layers[-1], nn.Tanh)
    assert not [m for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert [m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)] == [0.2, 0.2]
    G.eval()
    fake = G(torch.randn(5, 100))
    assert fake.shape == (5, 1, 28, 28) and fake.abs().max() <= 1
    assert D(fake).shape == (5, 1)  # image-shaped input, flattened inside


def test_mlp_gan_without_batch_norm_keeps_the_scale_of_z():
    # With batch norm after the first Linear (training mode) the scale of z is normalized away:
    # G(10·z) = G(z) up to BN's eps, which is why L·B_z came out flat structurally in the augment
    # experiment. model.g_norm=none removes it, and then the scale of z reaches the output.
    torch.manual_seed(0)
    z = torch.randn(16, 100)
    shape = (1, 28, 28)
    with_bn = models.build(config.resolve(sets=["data.name=digits", "noise.dim=100"]), shape)[0]
    without = models.build(config.resolve(sets=["data.name=digits", "noise.dim=100", "model.g_norm=none"]), shape)[0]
    assert config.resolve(sets=["data.name=digits"])["model"]["g_norm"] == "batch"  # the default is the paper's
    assert not [m for m in without.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert [(m.in_features, m.out_features) for m in without.modules() if isinstance(m, nn.Linear)] == \
        [(100, 128), (128, 256), (256, 512), (512, 1024), (1024, 784)]
    assert [type(m) for m in without.net][:2] == [nn.Linear, nn.LeakyReLU]
    with torch.no_grad():
        assert torch.allclose(with_bn(10 * z), with_bn(z), atol=1e-3)
        assert (without(10 * z) - without(z)).abs().max() > 0.1
    with pytest.raises(config.ConfigError, match="model.g_norm: must be one of 'batch', 'none'"):
        config.resolve(sets=["data.name=digits", "model.g_norm=layer"])


def test_resnet_pair_shapes_and_per_sample_discriminator():
    cfg = config.resolve(sets=["data.name=digits", "data.resolution=32", "model.name=resnet", "model.channels=8",
                               "noise.dim=16"])
    G, D = models.build(cfg, (3, 32, 32))
    assert G(torch.randn(4, 16)).shape == (4, 3, 32, 32)
    assert not [m for m in D.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    x = torch.randn(4, 3, 32, 32)
    # No batch statistics in D: a sample's logit does not depend on the rest of the batch.
    assert torch.allclose(D(x)[:1], D(x[:1]), atol=1e-6)
    assert sum(isinstance(m, models.ResBlockUp) for m in G.modules()) == 3
    assert sum(isinstance(m, models.ResBlockDown) for m in D.modules()) == 4


@pytest.mark.slow  # a training run
def test_mlp_gan_trains_on_digits_with_every_output(trained, tmp_path, monkeypatch, capsys):
    cache, _ = trained
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(cache))
    out = tmp_path / "digits"
    code, err = run_cli(QUICK + ["data.name=digits", "noise.dim=100", "log.plots=true"], out, capsys)
    assert code == 0, err
    run_cfg = config.load_yaml(out / "config.yaml")
    assert models.model_name(config.flatten(run_cfg)) == "mlp-gan"
    last = [line for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    for key in ("classes", "kl", "confidence", "nn_dist", "ema_classes", "ema_kl", "grad_d_x", "jac_g_z"):
        assert f'"{key}"' in last, key
    for png in ("samples.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == PNG


@pytest.mark.slow  # two training runs and the classifier's
def test_run_is_the_same_with_an_empty_or_a_filled_cache(tmp_path, monkeypatch, capsys):
    # Issue 16: loading the cached classifier drew its layers' initialisation from the run's global
    # stream, so the same seed gave another d_loss once the classifier was cached. 12×12 keeps the
    # classifier's training to a second or two.
    monkeypatch.setenv("FASTGP_CACHE_DIR", str(tmp_path / "cache"))
    sets = QUICK + ["data.name=digits", "data.resolution=12", "noise.dim=16"]
    code, err = run_cli(sets, tmp_path / "empty", capsys)
    assert code == 0, err
    path = digits.cache_path(12)
    said = [line for line in err.splitlines() if "digits classifier" in line]
    assert len(said) == 1 and f"training the digits classifier at 12x12 once; it is cached in {path} (" in said[0]
    assert " s, held-out accuracy " in said[0] and os.path.isfile(path)
    code, err = run_cli(sets, tmp_path / "filled", capsys)
    assert code == 0, err
    assert "digits classifier" not in err  # loaded from the cache, silently
    records = [(tmp_path / run / "metrics.jsonl").read_text().splitlines() for run in ("empty", "filled")]
    strip = [[{k: v for k, v in json.loads(line).items() if k not in ("time_s", "run_id")} for line in run] for run in records]
    assert strip[0] == strip[1] and "d_loss" in strip[0][-1]


@pytest.mark.slow  # a training run
def test_resnet_trains_on_32x32_rgb_array(tmp_path):
    np.save(tmp_path / "rgb.npy", uint8_images(40, 3, 32, 32).transpose(0, 2, 3, 1))  # NHWC
    cfg = config.resolve(sets=QUICK + ["data.name=array", f"data.path={tmp_path / 'rgb.npy'}", "data.resolution=32",
                                       "model.name=resnet", "model.channels=8", "noise.dim=16",
                                       "regularizers.penalty.kind=r1"])
    run = train(cfg, str(tmp_path / "r"))
    assert run.data.shape == (3, 32, 32) and run.step == 4
    assert isinstance(run.G, models.ResNetGenerator) and isinstance(run.D, models.ResNetDiscriminator)
    assert run.G(run.z_eval[:3]).shape == (3, 3, 32, 32) and run.D(run.real_eval[:3]).shape == (3, 1)
    assert set(run.last) >= {"nn_dist", "ema_nn_dist", "penalty", "grad_d_x"}
    assert math.isfinite(run.last["d_loss"]) and run.last["penalty"] >= 0


def test_rgb_folder_run_writes_an_image_grid(tmp_path, capsys):
    _save_images(tmp_path / "imgs", uint8_images(12, 3, 20, 20), ".png")
    out = tmp_path / "run"
    code, err = run_cli(QUICK + ["data.name=folder", f"data.path={tmp_path / 'imgs'}", "data.channels=3",
                                 "data.resolution=16", "log.plots=true"], out, capsys)
    assert code == 0, err
    assert (out / "samples.png").read_bytes()[:8] == PNG and (out / "curves.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("channels", [1, 3])
def test_tile_places_each_image_in_its_cell(channels):
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1, 1, 1).expand(10, channels, 3, 2) / 10
    canvas = tile(x, cols=4)
    assert canvas.shape == (3 * 4, 4 * 3, channels)  # 3 rows of (3 + 1) px, 4 columns of (2 + 1) px
    for i in range(10):
        r, c = divmod(i, 4)
        assert torch.all(canvas[r * 4:r * 4 + 3, c * 3:c * 3 + 2] == i / 10)
    assert torch.all(canvas[3::4] == 0) and torch.all(canvas[:, 2::3] == 0)  # the gaps


def test_digits_config_files_name_the_papers_setting():
    here = os.path.join(os.path.dirname(__file__), os.pardir, "configs")
    mlp = config.resolve(files=[os.path.join(here, "digits-mlp-gan.yaml")])
    assert (mlp["data"]["name"], mlp["data"]["resolution"], mlp["model"]["name"], mlp["noise"]["dim"]) == \
        ("digits", 28, "mlp-gan", 100)
    conv = config.resolve(files=[os.path.join(here, "digits-dcgan.yaml")])
    assert conv["data"]["resolution"] == 32 and conv["model"]["name"] in ("dcgan", "resnet")


def test_bad_data_leaves_no_run_directory_when_called_from_python(tmp_path):
    cfg = config.resolve(sets=["data.name=folder", f"data.path={tmp_path / 'missing'}"])
    with pytest.raises(config.ConfigError, match="^data.path: "):
        train(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
