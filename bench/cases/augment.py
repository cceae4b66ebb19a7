"""Benchmark cases of the augment family (float32, on the CPU or a CUDA GPU).

  translate-fwd      K random translations of every image, forward only: fastgp.augment.translate
                     vs DiffAugment's rand_translation called once per copy (pad + int64 index grids
                     + gather), as users write it today (target ≥ 3× on the CPU;
                     on a GPU ≥ 5× and at most 1.5× the copy roofline, a plain copy of the
                     output's bytes)
  translate-fwd-bwd  the same, forward + ``out.backward(grad)`` (target ≥ 5×)
  policy             DiffAugment(x, "color,translation,cutout") forward + backward: fastgp's drop-in
                     (translation and cutout fused in one pass) vs DiffAugment's policy function

Shapes from the issue: [64, 3, 32, 32] with 16 copies and [256, 3, 64, 64] with 1 copy; ratio 0.125
(shifts up to 4 and 8 pixels), zero padding.
"""

from __future__ import annotations

import torch

from bench.harness import Case, Setup, Unsupported
from fastgp.reference import augment as ref

FLOAT_BYTES = 4


def _fastgp_augment():
    try:
        import fastgp.augment as augment
    except Exception as error:  # pragma: no cover - reported in the table
        return Unsupported(f"import fastgp.augment failed ({type(error).__name__}: {error})", "unavailable")
    return augment


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def reference_translations(x: torch.Tensor, copies: int) -> torch.Tensor:
    """K translated copies the way DiffAugment users write it: rand_translation once per copy."""
    return torch.cat([ref.rand_translation(x, 0.125) for _ in range(copies)])


def _translate_case(shape, copies: int, backward: bool, large: bool = False) -> Case:
    def setup(device: torch.device) -> Setup:
        x = torch.randn(shape, device=device, requires_grad=backward)
        out_shape = (shape[0] * copies, *shape[1:])
        grad = torch.randn(out_shape, device=device)
        augment = _fastgp_augment()

        def run(fn):
            if not backward:
                return lambda: fn(x)

            def call():
                x.grad = None
                fn(x).backward(grad)

            return call

        compiled = torch.compile(lambda t: reference_translations(t, copies), dynamic=False)
        contenders = {
            "fastgp": augment if isinstance(augment, Unsupported) else run(lambda t: augment.translate(t, copies=copies)),
            "reference": run(lambda t: reference_translations(t, copies)),
            "compile": run(compiled),
        }
        out_bytes = _numel(out_shape) * FLOAT_BYTES
        in_bytes = _numel(shape) * FLOAT_BYTES
        if backward:
            # read x, write out; read grad (out-sized), write x.grad
            copy_bytes, note = 2 * (out_bytes + in_bytes), "copy-roofline moves 2·(output + input) bytes (fwd + bwd)"
        else:
            copy_bytes, note = 2 * out_bytes, "copy-roofline is a plain copy of the output's bytes (read + write)"
        return Setup(contenders, copy_bytes=copy_bytes, notes=[note])

    name = "translate-fwd-bwd" if backward else "translate-fwd"
    description = (
        f"{copies} random translation(s) per image (ratio 0.125, zeros), "
        + ("forward + backward" if backward else "forward only")
    )
    return Case(
        name,
        f"{'×'.join(map(str, shape))}, K={copies}",
        setup,
        description,
        target=("reference", 5.0 if backward else 3.0),
        cuda_target=("reference", 5.0),
        max_copy_ratio={} if backward else {"cuda": 1.5},
        large=large,
    )


def _policy_case(shape) -> Case:
    def setup(device: torch.device) -> Setup:
        x = torch.randn(shape, device=device, requires_grad=True)
        grad = torch.randn(shape, device=device)
        augment = _fastgp_augment()

        def run(fn):
            def call():
                x.grad = None
                fn(x).backward(grad)

            return call

        policy = "color,translation,cutout"
        compiled = torch.compile(lambda t: ref.diff_augment(t, policy), dynamic=False)
        contenders = {
            "fastgp": augment if isinstance(augment, Unsupported) else run(lambda t: augment.DiffAugment(t, policy)),
            "reference": run(lambda t: ref.diff_augment(t, policy)),
            "compile": run(compiled),
        }
        nbytes = _numel(shape) * FLOAT_BYTES
        return Setup(contenders, copy_bytes=4 * nbytes, notes=["copy-roofline moves 4× the batch's bytes (fwd + bwd)"])

    return Case(
        "policy",
        "×".join(map(str, shape)),
        setup,
        'DiffAugment(x, "color,translation,cutout") forward + backward',
    )


def cases() -> list[Case]:
    return [
        _translate_case((64, 3, 32, 32), 16, backward=False),
        _translate_case((256, 3, 64, 64), 1, backward=False, large=True),
        _translate_case((64, 3, 32, 32), 16, backward=True),
        _translate_case((256, 3, 64, 64), 1, backward=True, large=True),
        _policy_case((64, 3, 32, 32)),
    ]
