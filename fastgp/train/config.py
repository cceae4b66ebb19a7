"""The trainer's configuration: every option with its default, type, help and value check;
YAML loading, ``--set key=value`` overrides and validation before anything trains.

A config is a nested dict. Files (``configs/*.yaml``) and ``--set`` give only the keys they
change; everything else takes the default below. Each option's type is its default's type
(an int is accepted where a float is expected, never a bool for a number). Every error is a
``ConfigError`` whose message starts with the dotted key.
"""

from __future__ import annotations

import copy
import difflib
import math
import re

import yaml

from . import regularizers
from .options import ConfigError, Option, at_least, choice, open_unit_interval, positive

DATASETS_2D = ("8gaussians", "swissroll", "ring", "finite-gaussian")
DATASETS_USER = ("folder", "array")
DATASETS_IMAGE = ("rectangles", "digits", "photos") + DATASETS_USER
DATASETS = DATASETS_2D + DATASETS_IMAGE
MODELS = ("auto", "mlp", "mlp-gan", "dcgan", "resnet")
MODELS_32 = ("dcgan", "resnet")  # convolutional pairs built for 32×32 images
OPTIMIZERS = ("adam", "rmsprop", "sgd")
# Images whose pixels take only the values -1 and 1 (pixel-wise and/or combinations need them).
DATASETS_BINARY = ("rectangles",)


# Flat schema: dotted key -> Option. Order is the order of --help and of the written config.
SCHEMA: dict[str, Option] = {
    "seed": Option(
        0, "seed of every random draw (models, data, noise, penalties); 0 to 2**32 - 1 (NumPy's seed range)",
        lambda v: None if 0 <= v < 2**32 else f"must be in [0, 2**32 - 1] = [0, {2**32 - 1}], got {v}",
    ),
    "device": Option("cpu", "torch device: cpu or cuda[:N]"),
    "threads": Option(
        1,
        "torch intra-op CPU threads during training (0: torch's default). The 2-D models are too small to "
        "gain from threads, and on a busy machine OpenMP threads spin and run ~50× slower",
        at_least(0),
    ),
    "steps": Option(6000, "generator steps", at_least(1)),
    "batch_size": Option(256, "samples per batch (real and fake)", at_least(1)),
    "data.name": Option("8gaussians", "dataset: " + ", ".join(DATASETS), choice(DATASETS)),
    "data.scale": Option(
        10.0,
        "8gaussians/ring: radius of the circle; swissroll: size; finite-gaussian: std of the Gaussian",
        positive,
    ),
    "data.std": Option(
        0.2, "std of the noise around each mode/curve; the high-quality radius is 3·std", positive
    ),
    "data.hq_radius": Option(
        0.0, "2-D data, metrics only: a sample is high quality within this distance of the data (0: 3·data.std); "
        "for data whose std is far below what a short run reaches, e.g. the paper's 8 Gaussians (std 0.014)",
        at_least(0.0),
    ),
    "data.n_points": Option(64, "finite-gaussian: size of the fixed sample", at_least(1)),
    "data.n_rect": Option(2, "rectangles: separated 8×8 squares per 32×32 image", at_least(1)),
    "data.n_images": Option(25600, "rectangles: training images, generated from the seed", at_least(1)),
    "data.siblings": Option(
        False, "rectangles: make the images in sibling pairs, each pair from one image of n_rect + 1 squares with a "
        "different square removed (the anomalous-generalization paper's Appendix F; regularizers.combine.source="
        "siblings takes their AND / OR, n_rect − 1 and n_rect + 1 squares); n_images even",
    ),
    "data.subset": Option(
        0, "digits/photos: train on a fixed random subset of N images, the same for every seed (0: all 1,797 "
        "digits / 48 photo tiles)", at_least(0)
    ),
    "data.resolution": Option(
        28, "digits/photos/folder/array: images are resized to R×R (28: the MLP GAN's 784 pixels; 32 for dcgan/resnet)",
        at_least(4),
    ),
    "data.path": Option("", "folder: a directory of .png/.jpg/.jpeg/.bmp images; array: a .npy or .npz file"),
    "data.key": Option("", "array: the array of a .npz archive (default: its only, or first, array)"),
    "data.channels": Option(1, "folder: convert images to 1 (grayscale) or 3 (RGB) channels", choice((1, 3))),
    "noise.dist": Option("normal", "latent noise: normal (std s) or uniform on [-s, s]", choice(("normal", "uniform"))),
    "noise.scale": Option(1.0, "s: the noise scale", positive),
    "noise.dim": Option(2, "latent dimension", at_least(1)),
    "model.name": Option(
        "auto",
        "mlp (2-D pair), mlp-gan (the generalization paper's MLP GAN, any image size), dcgan or resnet "
        "(32×32 images); auto: mlp for 2-D data, dcgan for 32×32 images, mlp-gan for other image sizes",
        choice(MODELS),
    ),
    "model.hidden": Option(64, "mlp: units of each hidden layer of G and D", at_least(1)),
    "model.depth": Option(
        2, "mlp: hidden layers (Linear + activation) of G and D; the zero-centred-GP paper's code uses 3 "
        "(its Appendix E lists 4 Linear layers)", at_least(1),
    ),
    "model.channels": Option(
        32, "dcgan: channels of the first D / last G convolution (then ×2, ×4); resnet: channels of every block",
        at_least(1),
    ),
    "model.g_norm": Option(
        "batch", "mlp-gan: G's normalization after each hidden Linear: batch (the paper's) or none (nothing on the "
        "path from z removes its scale)", choice(("batch", "none")),
    ),
    "model.activation": Option("relu", "hidden activation: relu or leaky-relu (slope 0.2)", choice(("relu", "leaky-relu"))),
    "loss.name": Option(
        "non-saturating", "GAN loss (fastgp.losses): " + ", ".join(regularizers.LOSS_NAMES), choice(regularizers.LOSS_NAMES)
    ),
    "loss.params": Option({}, "keyword parameters of the loss, e.g. {margin: 2.0} for hinge"),
    "optim.name": Option(
        "adam", "optimizer of G and D: adam, rmsprop or sgd (plain SGD, no momentum: beta1 and beta2 are not read; "
        "the zero-centred-GP paper's 2-D runs)", choice(OPTIMIZERS),
    ),
    "optim.lr_d": Option(3.0e-3, "discriminator learning rate (two-timescale: set it apart from lr_g)", positive),
    "optim.lr_g": Option(1.0e-3, "generator learning rate", positive),
    "optim.beta1": Option(0.5, "Adam beta1 (RMSprop: momentum; SGD: not read)", open_unit_interval),
    "optim.beta2": Option(0.9, "Adam beta2 (RMSprop: alpha; SGD: not read)", open_unit_interval),
    "optim.n_dis": Option(1, "discriminator steps per generator step", at_least(1)),
    "ema.decay": Option(0.999, "EMA of G's parameters per G step (warm-up: min(decay, (1+t)/(10+t))); 0 disables it", open_unit_interval),
    "log.every": Option(100, "steps between metrics.jsonl records (losses and 2-D metrics)", at_least(1)),
    "log.diag_every": Option(
        500,
        "steps between ‖∂D/∂x‖ and ‖∂G/∂z‖ measurements (2-D data: also the direction of ∇ₓD), taken at the last "
        "step too; 0 disables them",
        at_least(0),
    ),
    "log.eval_samples": Option(2048, "generated samples per metric evaluation", at_least(1)),
    "log.progress": Option(True, "show a tqdm progress bar"),
    "log.plots": Option(True, "write PNG pictures at the end (matplotlib, the 'train' extra)"),
    "log.tensorboard": Option(
        False, "also write TensorBoard event files into <run dir>/tensorboard/: each record's numbers under their "
        "metrics.jsonl names and the sample picture (the 'tensorboard' extra)",
    ),
    "checkpoint.every": Option(1000, "steps between checkpoints (one is always written at the end)", at_least(1)),
}
for _name, _cls in regularizers.REGISTRY.items():
    for _key, _opt in _cls.OPTIONS.items():
        SCHEMA[f"regularizers.{_name}.{_key}"] = _opt

# Free-form dict options: their content is checked by what consumes it (losses.get).
_FREE = {key for key, opt in SCHEMA.items() if isinstance(opt.default, dict)}

# Options a resumed run may change: everything else must match the checkpoint's config.
RESUMABLE = ("steps", "log.progress", "log.plots", "log.tensorboard", "log.every", "log.diag_every", "checkpoint.every")


# --------------------------------------------------------------------------------------------
# Nested <-> flat
# --------------------------------------------------------------------------------------------


def defaults() -> dict:
    return unflatten({k: copy.deepcopy(o.default) for k, o in SCHEMA.items()})


def unflatten(flat: dict) -> dict:
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def flatten(nested: dict, prefix: str = "") -> dict:
    """Flatten down to schema keys (free-form dict options stay whole); unknown keys kept as is."""
    flat = {}
    for key, value in nested.items():
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{key!r}: keys must be strings")
        dotted = prefix + key
        is_section = any(k.startswith(dotted + ".") for k in SCHEMA)
        if is_section and value is None:
            continue  # "regularizers:" with nothing under it: the defaults
        if isinstance(value, dict) and dotted not in _FREE and dotted not in SCHEMA:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _unknown(key: str) -> ConfigError:
    if key.startswith("regularizers."):
        name = key.split(".")[1]
        if name not in regularizers.REGISTRY:
            return ConfigError(f"regularizers.{name}: unknown regularizer; available: {', '.join(regularizers.REGISTRY)}")
    close = difflib.get_close_matches(key, SCHEMA, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}: unknown option{hint} (python -m fastgp.train --help lists them)")


# --------------------------------------------------------------------------------------------
# Loading and overrides
# --------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-3 as a string; accept exponent floats without a dot."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config: {path} is not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of options, got {type(data).__name__}")
    return data


def parse_value(key: str, text: str):
    """Type ``text`` by the default of ``key`` (the --set rule)."""
    default = SCHEMA[key].default
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{key}: expected a bool (true/false), got {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an int, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    if isinstance(default, dict):
        value = yaml.load(text, Loader=_Loader)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping such as {{name: value}}, got {text!r}")
        return value
    return text


def apply_set(flat: dict, assignment: str) -> None:
    """Apply one ``key=value`` to a flat config in place."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    if key in SCHEMA:
        flat[key] = parse_value(key, text)
        return
    # A key inside a free-form dict option: loss.params.margin=2
    for free in _FREE:
        if key.startswith(free + "."):
            sub = key[len(free) + 1:]
            flat[free] = dict(flat.get(free) or {})
            flat[free][sub] = yaml.load(text, Loader=_Loader)
            return
    raise _unknown(key)


def resolve(files=(), sets=(), base: dict | None = None) -> dict:
    """Defaults (or ``base``) <- each YAML file <- each --set, validated; returns the nested config."""
    flat = flatten(base if base is not None else defaults())
    for path in files:
        for key, value in flatten(load_yaml(path)).items():
            if key not in SCHEMA:
                raise _unknown(key)
            flat[key] = value
    for assignment in sets:
        apply_set(flat, assignment)
    return validate(unflatten(flat))


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_type(key: str, value):
    default = SCHEMA[key].default
    expected = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{key}: must be finite, got {value}")
    else:
        ok = isinstance(value, expected)
    if not ok:
        names = {bool: "a bool", int: "an int", float: "a number", str: "a string", dict: "a mapping"}
        raise ConfigError(f"{key}: expected {names[expected]}, got {value!r} ({type(value).__name__})")
    return value


def validate(cfg: dict) -> dict:
    """Check every key, type and value; returns a complete nested config (defaults filled in)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    flat = flatten(defaults())
    for key, value in flatten(cfg).items():
        if key not in SCHEMA:
            raise _unknown(key)
        flat[key] = value
    for key, value in flat.items():
        value = _check_type(key, value)
        check = SCHEMA[key].check
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{key}: {problem}")
        flat[key] = value
    _check_cross(flat)
    return unflatten(flat)


def _check_cross(flat: dict) -> None:
    """Checks that involve several options or a consumer (the loss, the device)."""
    import torch

    from .. import losses

    try:
        losses.get(flat["loss.name"], **flat["loss.params"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"loss.params: {e}") from None
    _check_data(flat)
    _check_model(flat)
    image = flat["data.name"] in DATASETS_IMAGE
    if image and flat["data.n_rect"] > 5:
        # Rejection sampling of separated squares becomes impractical beyond 5 (at most 9 fit).
        raise ConfigError(f"data.n_rect: at most 5 separated 8×8 squares per 32×32 image, got {flat['data.n_rect']}")
    if flat["data.siblings"]:
        if flat["data.name"] != "rectangles":
            raise ConfigError(f"data.siblings: only read for data.name 'rectangles', not {flat['data.name']!r}")
        if flat["data.n_rect"] > 4:
            raise ConfigError(f"data.siblings: each pair comes from an image of n_rect + 1 squares, at most 5: "
                              f"data.n_rect must be <= 4, got {flat['data.n_rect']}")
        if flat["data.n_images"] % 2:
            raise ConfigError(f"data.siblings: sibling pairs need an even data.n_images, got {flat['data.n_images']}")
    facts = regularizers.DataFacts(
        name=flat["data.name"],
        image=image,
        binary=flat["data.name"] in DATASETS_BINARY,
        finite=image or flat["data.name"] == "finite-gaussian",
        counted=flat["data.name"] == "rectangles",
        siblings=flat["data.siblings"],
    )
    for cls in regularizers.REGISTRY.values():
        problem = cls.check(flat, facts)
        if problem:
            raise ConfigError(problem)
    try:
        device = torch.device(flat["device"])
    except RuntimeError as e:
        raise ConfigError(f"device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {flat['device']!r} requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: must be cpu or cuda[:N], got {flat['device']!r}")


def image_size(flat: dict) -> int | None:
    """Side of the square training images (None for 2-D data), known from the config alone."""
    name = flat["data.name"]
    if name not in DATASETS_IMAGE:
        return None
    return 32 if name == "rectangles" else flat["data.resolution"]


def model_name(flat: dict) -> str:
    """``model.name`` with ``auto`` resolved: mlp for 2-D data, dcgan for 32×32 images, mlp-gan otherwise."""
    if flat["model.name"] != "auto":
        return flat["model.name"]
    size = image_size(flat)
    if size is None:
        return "mlp"
    return "dcgan" if size == 32 else "mlp-gan"


def _check_data(flat: dict) -> None:
    name = flat["data.name"]
    if name in DATASETS_USER and not flat["data.path"]:
        what = "a directory of images" if name == "folder" else "a .npy or .npz file"
        raise ConfigError(f"data.path: required for data.name {name!r} ({what})")
    if flat["data.path"] and name not in DATASETS_USER:
        raise ConfigError(f"data.path: only read for data.name 'folder' or 'array', not {name!r}")
    if flat["data.key"] and name != "array":
        raise ConfigError(f"data.key: only read for data.name 'array' (a .npz archive), not {name!r}")
    if flat["data.subset"] and name not in ("digits", "photos"):
        raise ConfigError(f"data.subset: only read for data.name 'digits' or 'photos', not {name!r}")
    if name in ("digits", "photos"):
        if name == "digits":
            from .digits import require_sklearn as require
        else:
            from .photos import require_sample_images as require
        try:
            require()
        except ImportError as e:
            raise ConfigError(f"data.name: {e}") from None


def _check_model(flat: dict) -> None:
    model, data, size = flat["model.name"], flat["data.name"], image_size(flat)
    if model == "mlp" and size is not None:
        suggested = model_name({**flat, "model.name": "auto"})
        raise ConfigError(f"model.name: 'mlp' is the 2-D pair; data.name={data!r} needs {suggested!r} (or 'auto')")
    if model != "mlp" and model != "auto" and size is None:
        needs = "32×32 image data" if model in MODELS_32 else "image data"
        raise ConfigError(f"model.name: {model!r} needs {needs}; data.name={data!r} is 2-D (use 'mlp' or 'auto')")
    if model in MODELS_32 and size != 32:
        raise ConfigError(f"model.name: {model!r} is built for 32×32 images; data.resolution is {size} "
                          "(set data.resolution=32, or use 'mlp-gan')")


def resume_conflicts(saved: dict, new: dict) -> list[str]:
    """Keys a resumed run may not change, with both values."""
    a, b = flatten(saved), flatten(new)
    return [f"{k}: checkpoint has {a.get(k)!r}, now {b.get(k)!r}" for k in SCHEMA if k not in RESUMABLE and a.get(k) != b.get(k)]


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False)


def help_text() -> str:
    lines = ["options (--set key=value; defaults in brackets):"]
    for key, opt in SCHEMA.items():
        default = opt.default
        shown = "{}" if default == {} else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
        lines.append(f"  {key} [{shown}]\n      {opt.help}")
    return "\n".join(lines)
