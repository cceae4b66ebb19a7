"""The ``photos`` dataset (tiles of scikit-learn's sample photographs) and the nearest-image
metrics every user / photo image set reports (``dif``, the paper's DIF, and ``nn_coverage``)."""

import sys

import numpy as np
import pytest
import torch

from fastgp.train import config, photos
from fastgp.train.data import build
from fastgp.train.images import ImageData, NN_SAMPLES
from fastgp.train.loop import train
from test_train_regularizers import BASE

pytest.importorskip("sklearn")
pytest.importorskip("PIL")
pytestmark = pytest.mark.usefixtures("one_thread")


def photos_data(resolution=32, subset=0):
    return build({"name": "photos", "resolution": resolution, "subset": subset}, seed=0)


def test_tiles_are_the_photographs_cut_on_a_grid():
    from sklearn.datasets import load_sample_images

    raw = load_sample_images().images
    tiles = photos.tiles()
    assert tiles.shape == (48, 3, 96, 96) and tiles.dtype == torch.uint8
    # Tile 0 of each photograph: its grid is centred (427×640 -> 4×6 tiles of 96, offsets 21 and 32).
    for k, photo in enumerate(raw):
        assert np.array_equal(tiles[24 * k].permute(1, 2, 0).numpy(), photo[21:117, 32:128])
        assert np.array_equal(tiles[24 * k + 23].permute(1, 2, 0).numpy(), photo[309:405, 512:608])


def test_images_are_rgb_in_range_and_distinct():
    data = photos_data()
    assert data.images.shape == (48, 3, 32, 32)
    assert data.images.min() >= -1 and data.images.max() <= 1
    # Each tile resized from 96 px, mapped as x/127.5 − 1.
    from fastgp.train.userdata import fit_square

    expect = fit_square(photos.tiles().float() / 127.5 - 1, 32)
    torch.testing.assert_close(data.images, expect)
    # No tile is a near-copy of another: every leave-one-out normalized distance is well above 0.
    flat = data.images.flatten(1)
    d = torch.cdist(flat, flat) / flat.shape[1] ** 0.5 / 2
    d.fill_diagonal_(float("inf"))
    assert d.min() > 0.02


def test_subset_is_fixed_across_seeds_and_checked():
    a = build({"name": "photos", "resolution": 16, "subset": 32}, seed=0)
    b = build({"name": "photos", "resolution": 16, "subset": 32}, seed=7)
    assert a.images.shape == (32, 3, 16, 16)
    assert torch.equal(a.images, b.images)
    full = photos_data(16)
    # The subset's images are tiles of the full set, each once.
    match = (a.images.flatten(1)[:, None] == full.images.flatten(1)[None]).all(-1)
    assert torch.equal(match.sum(1), torch.ones(32, dtype=torch.long))
    assert match.any(0).sum() == 32
    with pytest.raises(config.ConfigError, match="data.subset: the photos have 48 tiles, got 49"):
        photos_data(16, subset=49)


def test_missing_scikit_learn_or_pillow_names_the_extra(monkeypatch):
    for module in ("sklearn", "PIL"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # makes `import <module>` raise ImportError
            if module == "sklearn":
                m.setitem(sys.modules, "sklearn.datasets", None)
            with pytest.raises(ImportError, match=r"pip install 'fastgp\[photos\]'"):
                photos.tiles()
            with pytest.raises(config.ConfigError, match=r"^data.name: .*photos dataset.*fastgp\[photos\]"):
                config.resolve(sets=["data.name=photos", "data.resolution=32"])


def test_dif_and_coverage_by_hand():
    bank = torch.rand(5, 3, 4, 4) * 2 - 1
    data = ImageData(bank)
    # Every training image once: distance 0, full coverage; one image repeated: coverage 1/5.
    m = data.metrics(bank)
    assert m["dif"] < 1e-3 and m["nn_coverage"] == 1.0
    assert data.metrics(bank[2:3].repeat(7, 1, 1, 1))["nn_coverage"] == pytest.approx(0.2)
    # dif = mean over samples of sqrt(min_j ‖x − b_j‖² / D) / 2, D = 48.
    fake = torch.rand(9, 3, 4, 4) * 2 - 1
    nearest = torch.cdist(fake.flatten(1).double(), bank.flatten(1).double()).min(1)
    expect = float((nearest.values / 48**0.5 / 2).mean())
    m = data.metrics(fake)
    assert m["dif"] == pytest.approx(expect, rel=1e-5)
    assert m["nn_coverage"] == pytest.approx(len(set(nearest.indices.tolist())) / 5)
    # Only the first NN_SAMPLES samples count (as nn_dist): a far-away tail changes nothing.
    far = torch.cat([bank.repeat(NN_SAMPLES // 5 + 1, 1, 1, 1)[:NN_SAMPLES], torch.full((10, 3, 4, 4), 1.0)])
    assert data.metrics(far)["dif"] < 1e-3


def test_a_diverged_generator_gives_finite_metrics():
    data = ImageData(torch.zeros(3, 1, 4, 4))
    fake = torch.full((4, 1, 4, 4), float("nan"))
    m = data.metrics(fake)
    assert all(np.isfinite(v) for v in m.values()), m


def test_trainer_runs_photos_with_nearest_sample_correction(tmp_path):
    sets = ["data.name=photos", "data.subset=8", "data.resolution=32", "model.channels=8", "noise.dim=8", "steps=3",
            "log.every=1", "batch_size=2", "regularizers.penalty.kind=none", "regularizers.correction.enabled=true",
            "regularizers.correction.threshold=1.0", "regularizers.correction.pool=4"]
    cfg = config.resolve(sets=BASE + sets)
    last = train(cfg, str(tmp_path / "r")).last
    for key in ("dif", "nn_coverage", "nn_dist", "ema_dif", "ema_nn_coverage"):
        assert np.isfinite(last[key]), key
    assert 0 < last["dif"] < 1 and 0 < last["nn_coverage"] <= 1
    # Threshold 1: every fake is realistic, and no pool fake is less realistic: nothing replaced.
    assert last["sc_replaced"] == 0.0

