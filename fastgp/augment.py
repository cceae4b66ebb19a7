"""Batched random translation of images (DiffAugment's ``rand_translation``, K copies per sample in
one kernel) and a drop-in for DiffAugment's policy function.

Conventions (docs/design.md): ``out[b·K + k, c, i, j] = x[b, c, i − dy, j − dx]`` inside the image and the
padding value outside it — zeros, or for ``reflect`` / ``replicate`` the pixel at the source index
reflected about the edge (edge not repeated, as ``F.pad(mode="reflect")``) / clamped onto it. A
positive dx moves content right, a positive dy moves it down. Shifts are integers drawn uniformly
from [−s, s] per sample and per copy, with s = int(size · ratio + 0.5) computed separately for H
(dy) and W (dx), as DiffAugment does.

Seed for seed with DiffAugment (mit-han-lab/data-efficient-gans, ``DiffAugment_pytorch.py``): its
``rand_translation`` draws ``tx`` [B] over the height, then ``ty`` [B] over the width, and returns
``out[i, j] = x[i + tx, j + ty]``. The random path here makes the same ``torch.randint`` calls in
the same order, once per random copy, and maps the draws to dy = −tx, dx = −ty, so a seeded
``translate`` (K = 1) or ``DiffAugment`` returns the original's image bit for bit. Shifts given or
returned (``shifts=``, ``return_shifts``) are always in the convention above.

Copies: ``order="sample-major"`` (default) puts copy k of sample b in row b·K + k;
``order="copy-major"`` puts it in row k·B + b, the row order of
``torch.cat([rand_translation(x) for _ in range(K)])`` — with the same generator state,
``translate(x, copies=K, order="copy-major")`` returns exactly that tensor, and
``DiffAugment(x, policy, copies=K, order="copy-major")`` returns exactly
``torch.cat([DiffAugment(x, policy) for _ in range(K)])`` of the original.

Gradient orders: ``translate`` is linear in x and differentiable to any order, in reverse and in
forward mode (its jvp translates the tangent, itself differentiable). Its backward is the
adjoint op ``translate_backward`` (for zeros padding: the translation by the negated shifts summed
over the copies; for reflect / replicate a gather over every output pixel that read a source
pixel), deterministic without atomics, and the backward of that adjoint is ``translate`` again.
"""

from __future__ import annotations

import torch

from . import _checks, backend
from ._layout import image_memory_format
from .reference.augment import PADDINGS

FAMILY = "augment"
POLICY_WORDS = ("color", "translation", "cutout")
ORDERS = ("sample-major", "copy-major")


# --------------------------------------------------------------------------------------------
# Fake (meta) implementations of the compiled ops
# --------------------------------------------------------------------------------------------


def _empty_image(like: torch.Tensor, rows: int) -> torch.Tensor:
    """The output the kernels allocate: channels_last when ``like`` is only channels_last, else contiguous."""
    fmt = image_memory_format(like)
    return torch.empty((rows, *like.shape[1:]), dtype=like.dtype, device=like.device, memory_format=fmt)


def _register_fake_kernels() -> None:
    if not backend._load_extension():
        return

    @torch.library.register_fake("fastgp::translate")
    def _(x, shifts, boxes, padding):
        return _empty_image(x, x.shape[0] * shifts.shape[1])

    @torch.library.register_fake("fastgp::translate_backward")
    def _(grad, shifts, boxes, padding):
        return _empty_image(grad, shifts.shape[0])


_register_fake_kernels()


# --------------------------------------------------------------------------------------------
# Autograd: translate and its adjoint are each other's backward (any order, exact)
# --------------------------------------------------------------------------------------------


class _Translate(torch.autograd.Function):
    """out = cutout(translate(x)): linear in x; its backward is the adjoint op."""

    @staticmethod
    def forward(ctx, x, shifts, boxes, padding):
        ctx.save_for_backward(shifts, boxes)
        ctx.save_for_forward(shifts, boxes)
        ctx.padding = padding
        return backend.kernels(FAMILY, x.device).translate(x, shifts, boxes, padding)

    @staticmethod
    def backward(ctx, grad_out):
        shifts, boxes = ctx.saved_tensors
        return _TranslateBackward.apply(grad_out, shifts, boxes, ctx.padding), None, None, None

    @staticmethod
    def jvp(ctx, x_tangent, _shifts_tangent, _boxes_tangent, _padding_tangent):
        # Linear in x: the tangent is translated like x (forward-mode AD, e.g. the exact gradient
        # penalties of method="jvp"). Through .apply, so it stays differentiable in reverse mode.
        shifts, boxes = ctx.saved_tensors
        return _Translate.apply(x_tangent, shifts, boxes, ctx.padding)


class _TranslateBackward(torch.autograd.Function):
    """The adjoint of _Translate; its own backward is _Translate again (the adjoint of the adjoint)."""

    @staticmethod
    def forward(ctx, grad_out, shifts, boxes, padding):
        ctx.save_for_backward(shifts, boxes)
        ctx.save_for_forward(shifts, boxes)
        ctx.padding = padding
        return backend.kernels(FAMILY, grad_out.device).translate_backward(grad_out, shifts, boxes, padding)

    @staticmethod
    def backward(ctx, grad_grad_x):
        shifts, boxes = ctx.saved_tensors
        return _Translate.apply(grad_grad_x, shifts, boxes, ctx.padding), None, None, None

    @staticmethod
    def jvp(ctx, grad_tangent, _shifts_tangent, _boxes_tangent, _padding_tangent):
        shifts, boxes = ctx.saved_tensors
        return _TranslateBackward.apply(grad_tangent, shifts, boxes, ctx.padding)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_image(x, name: str = "x") -> torch.Tensor:
    _checks.floating(x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape [B, C, H, W] (rank 4), got shape {list(x.shape)}")
    return x


def _max_shifts(x: torch.Tensor, ratio, max_shift, padding: str = "zeros") -> tuple[int, int]:
    """(s_y, s_x): from max_shift (an int or a (dy, dx) pair) when given, else int(size·ratio + 0.5)."""
    height, width = x.shape[2], x.shape[3]
    if max_shift is None:
        ratio = _checks.real_number(ratio, "ratio")
        if not 0 <= ratio < 1:
            raise ValueError(f"ratio must lie in [0, 1), got {ratio}")
        limits = int(height * ratio + 0.5), int(width * ratio + 0.5)
        if padding == "reflect" and height > 0 and width > 0 and (limits[0] >= height or limits[1] >= width):
            # Reflect padding reflects once: it needs s < size, i.e. int(size·ratio + 0.5) <= size − 1,
            # which holds exactly for ratio < 1 − 0.5 / size.
            size = min(height, width)
            raise ValueError(
                f"padding='reflect' needs shifts smaller than the image (H = {height}, W = {width}), but "
                f"ratio={ratio} gives a largest shift of {limits[0]} x {limits[1]} pixels; with reflect "
                f"padding ratio must be < {1 - 0.5 / size:g} for this image (or give max_shift <= {size - 1})"
            )
        return limits
    pair = tuple(max_shift) if isinstance(max_shift, (tuple, list)) else (max_shift, max_shift)
    if len(pair) != 2:
        raise ValueError(f"max_shift must be an int or a (dy, dx) pair, got {max_shift!r}")
    s_y = _checks.integer(pair[0], "max_shift")
    s_x = _checks.integer(pair[1], "max_shift")
    if s_y < 0 or s_x < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift!r}")
    if s_y >= height or s_x >= width:
        raise ValueError(
            f"max_shift must be smaller than the image size (H = {height}, W = {width}), got {max_shift!r}"
        )
    return s_y, s_x


def _check_shifts(shifts, x: torch.Tensor, copies, padding: str) -> torch.Tensor:
    _checks.tensor(shifts, "shifts")
    if shifts.dtype.is_floating_point or shifts.dtype.is_complex or shifts.dtype == torch.bool:
        raise TypeError(f"shifts must have an integer dtype, got {shifts.dtype}")
    if shifts.dim() != 3 or shifts.shape[0] != x.shape[0] or shifts.shape[2] != 2 or shifts.shape[1] < 1:
        raise ValueError(
            f"shifts must have shape [B, K, 2] with B = {x.shape[0]} and K >= 1 ((dy, dx) per sample and copy), "
            f"got {list(shifts.shape)}"
        )
    if shifts.device != x.device:
        raise ValueError(f"shifts must be on the device of x ({x.device}), got {shifts.device}")
    if copies is not None and copies != shifts.shape[1]:
        raise ValueError(f"copies ({copies}) must equal K = shifts.shape[1] ({shifts.shape[1]}) when shifts is given")
    height, width = x.shape[2], x.shape[3]
    if padding == "reflect" and height > 0 and width > 0:
        # One reflection is exact only for |shift| < size (a host sync on GPU; only for reflect). Compared
        # without abs(), which overflows for the smallest int64 (abs(-2**63) == -2**63 passes "< H").
        dy, dx = shifts[..., 0], shifts[..., 1]
        outside = (dy <= -height) | (dy >= height) | (dx <= -width) | (dx >= width)
        if bool(outside.any()):
            raise ValueError(
                f"reflect padding needs |dy| < H = {height} and |dx| < W = {width} in shifts "
                f"(|dy| <= {height - 1}, |dx| <= {width - 1})"
            )
    # An image without pixels (H == 0 or W == 0) gives the empty output for any shift and padding.
    return shifts.to(torch.int64).contiguous()


def _draw_translation(batch: int, max_shift: tuple[int, int], generator, source) -> torch.Tensor:
    """One copy's shifts [batch, 2] of (dy, dx): DiffAugment's rand_translation draws (tx over the
    height, then ty over the width, one ``torch.randint`` call each) mapped to dy = −tx, dx = −ty."""
    s_y, s_x = max_shift
    tx = torch.randint(-s_y, s_y + 1, (batch,), generator=generator, device=source)
    ty = torch.randint(-s_x, s_x + 1, (batch,), generator=generator, device=source)
    return -torch.stack([tx, ty], dim=-1)


def draw_shifts(
    batch: int,
    copies: int,
    max_shift: tuple[int, int],
    include_original: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Integer shifts [batch, copies, 2] of (dy, dx), uniform in [−s_y, s_y] × [−s_x, s_x].

    Consumes the generator as ``copies`` calls of DiffAugment's ``rand_translation`` in a row
    (copy 0's draws first); with ``include_original`` copy 0 is the identity and draws nothing.
    """
    source = generator.device if generator is not None else torch.device(device)
    drawn = [_draw_translation(batch, max_shift, generator, source) for _ in range(int(include_original), copies)]
    if include_original:
        drawn.insert(0, torch.zeros(batch, 2, dtype=torch.int64, device=source))
    return torch.stack(drawn, dim=1).to(device)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def translate(
    x: torch.Tensor,
    *,
    ratio: float = 0.125,
    max_shift: int | tuple[int, int] | None = None,
    copies: int | None = None,
    include_original: bool = False,
    shifts: torch.Tensor | None = None,
    padding: str = "zeros",
    generator: torch.Generator | None = None,
    return_shifts: bool = False,
    order: str = "sample-major",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """K randomly translated copies of every image, in one kernel.

    Args:
        x: images [B, C, H, W], float16/bfloat16/float32/float64 (contiguous, channels_last — kept
            in the output — or any strided view).
        ratio: the largest shift as a fraction of the image size, s = int(size·ratio + 0.5) per axis
            (DiffAugment's default 0.125); ignored when ``max_shift`` is given.
        max_shift: the largest shift in pixels, an int or a (dy, dx) pair, each in [0, size).
        copies: K, the number of translated copies per sample (default 1).
        include_original: copy 0 of every sample is the identity (shift 0); the other K − 1 are random.
        shifts: int tensor [B, K, 2] of (dy, dx) on x's device, replaying a previous draw (for example
            on a paired mask); K then comes from it (``copies`` may be omitted or must equal K).
        padding: "zeros" (DiffAugment), "reflect" or "replicate". Reflect padding reflects once, so
            it needs every shift smaller than the image (|dy| < H, |dx| < W; for drawn shifts
            ratio < 1 − 0.5 / min(H, W)) and raises a ValueError before drawing otherwise. Under
            zeros and replicate padding any shift is valid (|shift| >= size: all padding, or the
            edge row / column repeated). An image with H == 0 or W == 0 gives the empty output.
        generator: a ``torch.Generator`` for the shifts (reproducible draws). The draws are
            those of K calls of DiffAugment's ``rand_translation`` (see the module docstring).
        return_shifts: also return the shifts [B, K, 2] used, (dy, dx) of copy k of sample b.
        order: ``"sample-major"`` (row b·K + k is copy k of sample b) or ``"copy-major"`` (row
            k·B + b: the order of ``torch.cat([rand_translation(x) for _ in range(K)])``).

    Returns:
        out [B·K, C, H, W] in ``order``; with ``return_shifts``, the pair (out, shifts).
    """
    _check_image(x)
    _checks.choice(padding, "padding", PADDINGS)
    _checks.generator(generator)
    _checks.choice(order, "order", ORDERS)
    if copies is not None:
        copies = _checks.integer(copies, "copies", minimum=1)
    _checks.boolean(include_original, "include_original")
    if shifts is None:
        limits = _max_shifts(x, ratio, max_shift, padding)
        shifts = draw_shifts(x.shape[0], copies or 1, limits, include_original, generator, x.device)
    else:
        if include_original or generator is not None or max_shift is not None:
            raise ValueError("shifts replays a draw: include_original, generator and max_shift cannot be given with it")
        shifts = _check_shifts(shifts, x, copies, padding)
    out = _Translate.apply(x, shifts, None, padding)
    if order == "copy-major":
        out = _transpose_rows(out, x.shape[0])
    return (out, shifts) if return_shifts else out


# --------------------------------------------------------------------------------------------
# DiffAugment drop-in
# --------------------------------------------------------------------------------------------


def _uniform(batch: int, x: torch.Tensor, generator) -> torch.Tensor:
    """One U(0, 1) per sample, [batch, 1, 1, 1], drawn in x's dtype as DiffAugment's colour
    functions draw it (float64 and float16 draws consume the generator differently from float32)."""
    source = generator.device if generator is not None else x.device
    return torch.rand(batch, 1, 1, 1, generator=generator, dtype=x.dtype, device=source).to(x.device)


class _TranslationGradLayout(torch.autograd.Function):
    """Identity whose backward passes the gradient on as a dense channels_last tensor: the layout in
    which the original's ``rand_translation`` (a gather from a permuted, channels-last copy) returns
    its input's gradient. Placed after a colour step that a translation follows: colour's backward
    sums over the channels and over the image in memory order, so with the original's layout its
    input gradient is the original's bit for bit (the values are the same in any layout)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def jvp(ctx, x_tangent):
        return x_tangent.view_as(x_tangent)  # identity in forward mode too (method="jvp" through D)


def _translates_before_next_color(steps, index: int) -> bool:
    """Whether a translation comes after step ``index`` and before the next colour step."""
    for kind, translates, _ in steps[index:]:
        if kind == "color":
            return False
        if translates:
            return True
    return False


def _color(x: torch.Tensor, brightness, saturation, contrast) -> torch.Tensor:
    x = x + (brightness - 0.5)  # brightness: + U(-0.5, 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (saturation * 2) + mean  # saturation: × U(0, 2) around the channel mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (contrast + 0.5) + mean  # contrast: × U(0.5, 1.5) around the image mean


def cutout_boxes(x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """DiffAugment's cutout squares as boxes [B, 1, 4] of (top, left, height, width).

    The square is int(size·ratio + 0.5) pixels per axis; its centre is uniform in
    [0, size + (1 − cut % 2)), drawn over the height then over the width as DiffAugment's
    ``rand_cutout`` (its ``offset_x`` runs over the height), and it is clipped at the image border
    (DiffAugment's clamped index grid zeroes exactly the clipped square, which always meets the image).
    """
    batch, _, height, width = x.shape
    cut_h, cut_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
    source = generator.device if generator is not None else x.device
    off_y = torch.randint(0, height + (1 - cut_h % 2), (batch,), generator=generator, device=source)
    off_x = torch.randint(0, width + (1 - cut_w % 2), (batch,), generator=generator, device=source)
    top, left = off_y - cut_h // 2, off_x - cut_w // 2
    boxes = torch.stack([top, left, torch.full_like(top, cut_h), torch.full_like(left, cut_w)], dim=-1)
    return boxes.view(batch, 1, 4).to(x.device)


def _policy_steps(words: list[str]) -> list[tuple[str, bool, bool]]:
    """The policy as steps: ("color", -, -) or ("shift", translate, cutout). A translation and a
    cutout right after it are one pass of the translate kernel; a cutout alone is a shift by 0."""
    steps, position = [], 0
    while position < len(words):
        if words[position] == "color":
            steps.append(("color", False, False))
            position += 1
            continue
        translate = words[position] == "translation"
        position += translate
        cutout = position < len(words) and words[position] == "cutout"
        position += cutout
        steps.append(("shift", translate, cutout))
    return steps


def _draw_policy(steps, x: torch.Tensor, generator) -> list[tuple]:
    """Every random draw of ONE call of DiffAugment's policy function on x, in its order:
    per colour step the brightness, saturation and contrast uniforms; per shift step tx, ty
    (mapped to (dy, dx)) and the cutout offsets."""
    batch = x.shape[0]
    source = generator.device if generator is not None else x.device
    draws = []
    for kind, translate, cutout in steps:
        if kind == "color":
            brightness = _uniform(batch, x, generator)
            saturation = _uniform(batch, x, generator)
            draws.append((brightness, saturation, _uniform(batch, x, generator)))
            continue
        if translate:
            shifts = _draw_translation(batch, _max_shifts(x, 0.125, None), generator, source).to(x.device)
        else:
            shifts = torch.zeros(batch, 2, dtype=torch.int64, device=x.device)
        boxes = cutout_boxes(x, 0.5, generator)[:, 0] if cutout else None
        draws.append((shifts, boxes))
    return draws


def _transpose_rows(out: torch.Tensor, outer: int) -> torch.Tensor:
    """Rows indexed (a, b) with ``outer`` values of a become rows (b, a); keeps channels_last."""
    if outer in (1, out.shape[0]):
        return out
    channels_last = not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    inner = out.shape[0] // outer
    return out.unflatten(0, (outer, inner)).transpose(0, 1).flatten(0, 1).contiguous(memory_format=fmt)


def DiffAugment(
    x: torch.Tensor,
    policy: str = "color,translation,cutout",
    channels_first: bool = True,
    *,
    copies: int = 1,
    order: str = "sample-major",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A drop-in for DiffAugment's function (Zhao et al., 2020, mit-han-lab/data-efficient-gans
    ``DiffAugment_pytorch.py``), seed for seed: with the same generator state it makes the same
    random draws in the same order and returns the same images and input gradients, bit for bit,
    for every policy, dtype and input layout (contiguous, channels_last, strided, and
    ``channels_first=False``) — color (brightness U(−0.5, 0.5), saturation ×U(0, 2), contrast
    ×U(0.5, 1.5), drawn in x's dtype), translation (ratio 0.125, zero padding) and cutout (ratio
    0.5). The colour step's means sum in memory order, so colour runs in the layout the original's
    would see: after a translation a contiguous tensor (the original's gather returns one; a
    channels_last input otherwise stays channels_last through the translate kernel), and its
    backward receives the gradient as channels_last, as the original's translation hands it back.
    Checked on the CPU against the authors' file as written (tests/test_augment_originals.py,
    which also runs on a visible CUDA device; not yet run on one).

    Translation and a cutout that follows it run as one pass of the translate kernel (the cutout
    box is zeroed while the translated image is written; the backward passes grad·0 there, so a
    NaN/inf gradient in the box gives NaN, as DiffAugment's grad·mask).
    ``channels_first=False`` takes and returns [B, H, W, C] tensors. Differentiable to any order.

    ``copies=K`` returns K augmented copies of every image [B·K, ...] whose draws are those of K
    calls of the original in a row; ``order="copy-major"`` returns exactly the original's
    ``torch.cat([DiffAugment(x, policy) for _ in range(K)])`` (the images bit for bit in every
    layout; the input gradient only to rounding: it sums the K copies' gradients in another order
    than autograd's accumulation over the K calls), ``"sample-major"`` (default) the
    same images with row b·K + k holding copy k of sample b. Unlike the original (whose default
    policy is ``''``), the default policy is ``"color,translation,cutout"``.
    """
    _checks.generator(generator)
    if not isinstance(policy, str):
        raise TypeError(f"policy must be a str, got {type(policy).__name__}")
    words = [w for w in policy.split(",")] if policy else []
    for word in words:
        if word not in POLICY_WORDS:
            raise ValueError(f"policy has an unknown word {word!r}; known words: {', '.join(POLICY_WORDS)}")
    copies = _checks.integer(copies, "copies", minimum=1)
    _checks.choice(order, "order", ORDERS)
    _check_image(x)
    if not words and copies == 1:
        return x
    if not channels_first:
        x = x.permute(0, 3, 1, 2)
    batch = x.shape[0]
    steps = _policy_steps(words)
    per_copy = [_draw_policy(steps, x, generator) for _ in range(copies)]
    # Computed in sample-major rows: the draws of copy k for sample b go to row b·K + k. The
    # first step with per-copy values expands the B images to B·K rows (the translate kernel
    # does that itself, writing K copies of each image).
    for index, (kind, translates, _) in enumerate(steps):
        draws = [copy_draws[index] for copy_draws in per_copy]
        if kind == "color":
            factors = [torch.stack(parts, dim=1).flatten(0, 1) for parts in zip(*draws)]
            if x.shape[0] == batch and copies > 1:
                # repeat_interleave returns a contiguous tensor; the original's colour runs on x's
                # own layout (channels_last stays channels_last), and its means sum in memory order.
                layout = image_memory_format(x)
                x = x.repeat_interleave(copies, dim=0).contiguous(memory_format=layout)
            x = _color(x, *factors)
            continue
        if index > 0 and steps[index - 1][0] == "color" and _translates_before_next_color(steps, index):
            x = _TranslationGradLayout.apply(x)
        shifts = torch.stack([d[0] for d in draws], dim=1)  # [B, K, 2]
        boxes = None if draws[0][1] is None else torch.stack([d[1] for d in draws], dim=1)  # [B, K, 4]
        if x.shape[0] != batch or copies == 1:
            shifts = shifts.reshape(-1, 1, 2)
            boxes = None if boxes is None else boxes.reshape(-1, 1, 4)
        x = _Translate.apply(x, shifts, boxes, "zeros")
        if translates and any(later == "color" for later, _, _ in steps[index + 1:]):
            # The original's rand_translation returns a contiguous tensor whatever the input's layout
            # (its gather ends in .contiguous()), and colour's channel and image means sum in memory
            # order: a channels_last translate output would round differently. One copy, only here.
            x = x.contiguous()
    if x.shape[0] == batch and copies > 1:  # an empty policy
        x = x.repeat_interleave(copies, dim=0)
    if order == "copy-major":
        x = _transpose_rows(x, batch)
    if not channels_first:
        x = x.permute(0, 2, 3, 1)
    return x.contiguous()
