"""The raw kernels of the augment family (translate, translate_backward) on every device: each fused
backend against the pure-PyTorch reference, the reference against a per-pixel loop, plus the compiled
ops' schema / fake kernels / torch.compile."""

import pytest
import torch

from fastgp import backend
from fastgp.reference import augment as ref
from helpers import DTYPES, LAYOUTS, devices, make, tolerances, translate_oracle

PADDINGS = ("zeros", "reflect", "replicate")
SHAPES = [(3, 2, 5, 7), (2, 3, 1, 1), (1, 4, 3, 2), (2, 1, 6, 4)]


def kernels(device):
    return backend.kernels("augment", device)


def random_shifts(batch, copies, height, width, padding, seed=0, device="cpu"):
    """Shifts covering both signs, zero and (except for reflect) shifts larger than the image."""
    gen = torch.Generator().manual_seed(seed)
    lim_y, lim_x = (height - 1, width - 1) if padding == "reflect" else (height + 1, width + 1)
    dy = torch.randint(-lim_y, lim_y + 1, (batch, copies), generator=gen)
    dx = torch.randint(-lim_x, lim_x + 1, (batch, copies), generator=gen)
    return torch.stack([dy, dx], dim=-1).to(device)


def random_boxes(batch, copies, height, width, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    top = torch.randint(-2, height + 1, (batch, copies), generator=gen)
    left = torch.randint(-2, width + 1, (batch, copies), generator=gen)
    size_h = torch.randint(0, height + 2, (batch, copies), generator=gen)
    size_w = torch.randint(0, width + 2, (batch, copies), generator=gen)
    return torch.stack([top, left, size_h, size_w], dim=-1).to(device)


def assert_layout(out, like):
    if like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)
    else:
        assert out.is_contiguous()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("with_boxes", [False, True], ids=["plain", "cutout"])
def test_translate_and_adjoint_match_reference(kernel_backend, device, dtype, layout, padding, with_boxes):
    for index, shape in enumerate(SHAPES):
        batch, _, height, width = shape
        copies = 3
        x = make(shape, dtype, layout, seed=index, device=device)
        shifts = random_shifts(batch, copies, height, width, padding, seed=index, device=device)
        boxes = random_boxes(batch, copies, height, width, seed=index, device=device) if with_boxes else None
        out = kernels(device).translate(x, shifts, boxes, padding)
        # A translation moves values: exact in every dtype.
        assert torch.equal(out, ref.translate(x, shifts, boxes, padding))
        assert out.dtype == dtype and out.shape == (batch * copies, *shape[1:])
        assert_layout(out, x)  # every backend keeps channels_last
        grad = make(out.shape, dtype, layout, seed=10 + index, device=device)
        grad_x = kernels(device).translate_backward(grad, shifts, boxes, padding)
        torch.testing.assert_close(grad_x, ref.translate_backward(grad, shifts, boxes, padding), **tolerances(dtype))
        assert grad_x.dtype == dtype and grad_x.shape == shape
        assert_layout(grad_x, grad)


@pytest.mark.parametrize("dtype", (torch.float64, torch.bfloat16), ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("padding", PADDINGS)
def test_translate_matches_per_pixel_loop(backend_name, device, dtype, layout, padding):
    shape = (2, 2, 5, 4)
    x = make(shape, dtype, layout, seed=3, device=device)
    shifts = random_shifts(2, 3, 5, 4, padding, seed=4, device=device)
    boxes = random_boxes(2, 3, 5, 4, seed=5, device=device)
    for b in (None, boxes):
        out = kernels(device).translate(x, shifts, b, padding)
        assert torch.equal(out.double().cpu(), translate_oracle(x, shifts.cpu(), None if b is None else b.cpu(), padding))


@pytest.mark.parametrize("padding", PADDINGS)
def test_adjoint_identity(backend_name, device, padding):
    """<translate(x), g> == <x, translate_backward(g)>: the backward is the exact adjoint."""
    x = make((3, 2, 6, 5), torch.float64, seed=1, device=device)
    shifts = random_shifts(3, 4, 6, 5, padding, seed=2, device=device)
    boxes = random_boxes(3, 4, 6, 5, seed=3, device=device)
    for b in (None, boxes):
        out = kernels(device).translate(x, shifts, b, padding)
        grad = make(out.shape, torch.float64, seed=4, device=device)
        lhs = (out * grad).sum()
        rhs = (x * kernels(device).translate_backward(grad, shifts, b, padding)).sum()
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


def test_zeros_adjoint_is_negated_translate_summed(backend_name, device):
    """For zeros padding the backward equals the translation by -shifts, summed over the copies."""
    batch, copies = 2, 5
    grad = make((batch * copies, 3, 7, 6), torch.float64, seed=5, device=device)
    shifts = random_shifts(batch, copies, 7, 6, "zeros", seed=6, device=device)
    per_copy = kernels(device).translate(grad, -shifts.reshape(batch * copies, 1, 2), None, "zeros")
    expected = per_copy.reshape(batch, copies, 3, 7, 6).sum(dim=1)
    got = kernels(device).translate_backward(grad, shifts, None, "zeros")
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_backward_is_deterministic(backend_name, device):
    grad = make((64, 3, 16, 16), torch.float32, seed=7, device=device)
    shifts = random_shifts(4, 16, 16, 16, "replicate", seed=8, device=device)
    first = kernels(device).translate_backward(grad, shifts, None, "replicate")
    for _ in range(3):
        assert torch.equal(kernels(device).translate_backward(grad, shifts, None, "replicate"), first)


def test_known_values():
    """A positive dx moves content right, a positive dy moves it down; each padding by hand."""
    x = torch.arange(1.0, 5.0).view(1, 1, 1, 4)  # one row: 1 2 3 4
    shifts = torch.tensor([[[0, 2], [0, -1]]])
    with backend.use_backend("extension"):
        out = backend.kernels("augment", "cpu").translate
        assert out(x, shifts, None, "zeros").flatten().tolist() == [0, 0, 1, 2, 2, 3, 4, 0]
        assert out(x, shifts, None, "reflect").flatten().tolist() == [3, 2, 1, 2, 2, 3, 4, 3]
        assert out(x, shifts, None, "replicate").flatten().tolist() == [1, 1, 1, 2, 2, 3, 4, 4]
        col = x.view(1, 1, 4, 1)
        down = out(col, torch.tensor([[[1, 0]]]), None, "zeros").flatten().tolist()
        assert down == [0, 1, 2, 3]
        boxed = out(x, torch.tensor([[[0, 0]]]), torch.tensor([[[0, 1, 1, 2]]]), "zeros").flatten().tolist()
        assert boxed == [1, 0, 0, 4]


# Shifts far outside the image, up to the int64 limits: under zeros and replicate padding they give
# the image of a shift of ±size (all padding, or the edge row / column repeated).
EXTREME_SHIFTS = (2**63 - 1, -(2**63), 2**31, -(2**31), 2**40, -(2**40))


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_extreme_shifts_equal_shifts_of_the_image_size(backend_name, device, padding):
    batch, height, width = len(EXTREME_SHIFTS), 5, 4
    x = make((batch, 2, height, width), torch.float64, seed=21, device=device)
    big = torch.tensor(EXTREME_SHIFTS, device=device)
    # Copy 0 moves along y only, copy 1 along x only, copy 2 along both.
    shifts = torch.stack([torch.stack([big, torch.zeros_like(big)], -1),
                          torch.stack([torch.zeros_like(big), big], -1),
                          torch.stack([big, big.flip(0)], -1)], dim=1)  # fmt: skip
    clamped = torch.stack([shifts[..., 0].clamp(-height, height), shifts[..., 1].clamp(-width, width)], dim=-1)
    out = kernels(device).translate(x, shifts, None, padding)
    assert torch.equal(out, kernels(device).translate(x, clamped, None, padding))
    assert torch.equal(out, ref.translate(x, clamped, None, padding))
    grad = make(out.shape, torch.float64, seed=22, device=device)
    expected = ref.translate_backward(grad, clamped, None, padding)
    torch.testing.assert_close(kernels(device).translate_backward(grad, shifts, None, padding), expected, rtol=0, atol=1e-12)
    # By hand: content moved down by a huge shift shows the top row everywhere (replicate), moved up
    # the bottom row; left / right likewise.
    rows = out.view(batch, 3, 2, height, width)[:, 0]
    cols = out.view(batch, 3, 2, height, width)[:, 1]
    for b, d in enumerate(EXTREME_SHIFTS):
        if padding == "zeros":
            assert not rows[b].any() and not cols[b].any()
            continue
        edge_row = x[b, :, 0:1, :] if d > 0 else x[b, :, height - 1 : height, :]
        edge_col = x[b, :, :, 0:1] if d > 0 else x[b, :, :, width - 1 : width]
        assert torch.equal(rows[b], edge_row.expand(-1, height, -1))
        assert torch.equal(cols[b], edge_col.expand(-1, -1, width))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("shape", [(2, 3, 0, 5), (2, 3, 4, 0), (2, 3, 0, 0), (0, 3, 4, 4)])
def test_image_without_pixels_gives_empty_output(backend_name, device, padding, shape):
    """No pixel to read or write: the empty output for any shift and padding (reflect included)."""
    x = torch.zeros(shape, device=device)
    shifts = torch.tensor([[[1, -2], [0, 3]]], device=device).expand(shape[0], -1, -1)
    out = kernels(device).translate(x, shifts, None, padding)
    assert out.shape == (2 * shape[0], *shape[1:])
    grad_x = kernels(device).translate_backward(torch.zeros(out.shape, device=device), shifts, None, padding)
    assert grad_x.shape == shape


@pytest.mark.parametrize(
    "args,error,match",
    [
        ((torch.zeros(2, 3, 4), torch.zeros(2, 1, 2, dtype=torch.long), None, "zeros"), RuntimeError, "x must have shape"),
        ((torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2), None, "zeros"), RuntimeError, "shifts must be an int64"),
        ((torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 2, dtype=torch.long), None, "zeros"), RuntimeError, "shifts must have shape"),
        ((torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, dtype=torch.long), None, "wrap"), RuntimeError, "padding must be"),
        ((torch.zeros(2, 1, 4, 4), torch.full((2, 1, 2), 4, dtype=torch.long), None, "reflect"), RuntimeError, "reflect padding needs"),
        # abs(-2**63) overflows to -2**63 < H: the range check must not use it.
        ((torch.zeros(2, 1, 4, 4), torch.full((2, 1, 2), -(2**63), dtype=torch.long), None, "reflect"), RuntimeError, "reflect padding needs"),
        ((torch.zeros(2, 1, 4, 4), torch.full((2, 1, 2), -4, dtype=torch.long), None, "reflect"), RuntimeError, "reflect padding needs"),
        ((torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, dtype=torch.long), torch.zeros(2, 1, 3, dtype=torch.long), "zeros"), RuntimeError, "boxes must have shape"),
        ((torch.zeros(2, 1, 4, 4, dtype=torch.int32), torch.zeros(2, 1, 2, dtype=torch.long), None, "zeros"), RuntimeError, "x must be float16"),
    ],
)
def test_extension_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        torch.ops.fastgp.translate(*args)


# ------------------------------------------------------------------------------------------
# The compiled ops: schema, fake kernels, torch.compile
# ------------------------------------------------------------------------------------------

def opcheck_cases(device):
    cases = []
    for layout in ("contiguous", "channels_last", "strided"):
        for padding in PADDINGS:
            x = make((2, 3, 5, 4), torch.float32, layout, seed=1, device=device)
            shifts = random_shifts(2, 3, 5, 4, padding, seed=2, device=device)
            boxes = random_boxes(2, 3, 5, 4, seed=3, device=device) if padding == "zeros" else None
            grad = make((6, 3, 5, 4), torch.float32, layout, seed=4, device=device)
            cases.append(("translate", (x, shifts, boxes, padding)))
            cases.append(("translate_backward", (grad, shifts, boxes, padding)))
    # Batch dimension not outermost (a permuted view): the kernels copy to contiguous.
    permuted = make((3, 2, 4, 5), torch.float32, seed=5, device=device).permute(1, 0, 2, 3)
    cases.append(("translate", (permuted, random_shifts(2, 2, 4, 5, "zeros", seed=6, device=device), None, "zeros")))
    return cases


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("case", [f"{name}-{i}" for i, (name, _) in enumerate(opcheck_cases("cpu"))])
def test_opcheck(device, case):
    name, args = opcheck_cases(device)[int(case.rsplit("-", 1)[1])]
    torch.library.opcheck(getattr(torch.ops.fastgp, name).default, args)


def test_torch_compile_public_translate(backend_name, device):
    """The public op compiles in one graph on every backend: the dispatch (backend choice, provider
    lookup) is traceable, and the graph holds the chosen backend's op."""
    import fastgp

    x = make((4, 3, 8, 8), torch.float32, seed=1, device=device)
    shifts = random_shifts(4, 2, 8, 8, "zeros", seed=2, device=device)

    def fn(x):
        return fastgp.augment.translate(x, shifts=shifts).square().sum()

    graphs = []

    def record(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=record, fullgraph=True)
    torch.testing.assert_close(compiled(x), fn(x))
    ops = {str(node.target) for graph in graphs for node in graph.graph.nodes}
    assert any("fastgp.translate" in op for op in ops) == (backend_name == "extension"), ops
    torch.testing.assert_close(torch.compile(fn, backend="aot_eager", fullgraph=True)(x), fn(x))


def test_torch_compile_follows_the_backend_choice():
    """A function compiled under one backend is re-traced when another is chosen (Dynamo guards
    on the choice), in a with block and with set_backend."""
    import fastgp

    x = make((2, 1, 4, 4), torch.float32, seed=1)
    shifts = random_shifts(2, 1, 4, 4, "zeros", seed=2)
    graphs = []

    def record(graph_module, example_inputs):
        graphs.append({str(node.target) for node in graph_module.graph.nodes})
        return graph_module.forward

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: fastgp.augment.translate(x, shifts=shifts), backend=record, fullgraph=True)
    with fastgp.use_backend("reference"):
        expected = compiled(x)
    with fastgp.use_backend("extension"):
        torch.testing.assert_close(compiled(x), expected)
    fastgp.set_backend("reference")
    try:
        torch.testing.assert_close(compiled(x), expected)
    finally:
        fastgp.set_backend(None)
    uses_extension = [any("fastgp.translate" in op for op in ops) for ops in graphs]
    assert uses_extension == [False, True, False], graphs


@pytest.mark.parametrize("padding", PADDINGS)
def test_parallel_tasks_starting_inside_an_image(padding):
    """Enough rows for several parallel tasks, with an odd plane count so that a task starts in the
    middle of an image (the CPU loop keeps per-image state across rows)."""
    x = make((3, 3, 23, 16), torch.float32, seed=11)
    shifts = random_shifts(3, 15, 23, 16, padding, seed=12)
    boxes = random_boxes(3, 15, 23, 16, seed=13)
    out = torch.ops.fastgp.translate(x, shifts, boxes, padding)
    assert torch.equal(out, ref.translate(x, shifts, boxes, padding))


@pytest.mark.parametrize("padding", PADDINGS)
def test_cutout_keeps_nan_and_inf_as_the_reference(backend_name, device, padding):
    # Issue 16: DiffAugment multiplies by a mask, so a NaN/inf pixel inside the box gives NaN
    # there (inf·0); the extension and Triton wrote 0. Both now multiply by 0.
    x = make((2, 3, 5, 6), torch.float32, seed=3, device=device)
    x[0, 1, 2, 3] = float("nan")
    x[1, 0, :, 2] = float("inf")
    x[1, 2, 4, :] = -float("inf")
    shifts = torch.tensor([[[0, 0], [1, -1]], [[0, 0], [-1, 2]]], device=device)
    boxes = torch.tensor([[[1, 2, 3, 3], [0, 0, 5, 6]], [[2, 1, 3, 4], [-1, -1, 3, 9]]], device=device)
    out = kernels(device).translate(x, shifts, boxes, padding)
    expected = ref.translate(x, shifts, boxes, padding)
    torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=True)
    inside = ref.keep_mask(boxes, 5, 6, torch.float32).expand_as(out) == 0
    assert out[inside].isnan().sum() >= 6 and not out[inside].isinf().any()  # NaN·0, inf·0 are NaN
    assert torch.equal(out[inside].nan_to_num(0.0), torch.zeros_like(out[inside]))  # finite pixels: 0


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("padding", PADDINGS)
def test_cutout_backward_keeps_nan_and_inf_gradients_as_the_reference(backend_name, device, padding, layout):
    # Issue 16: the backward of DiffAugment's x * mask is grad * mask, so a NaN/inf incoming gradient
    # inside the box gives NaN (NaN·0, inf·0) on its source pixel; the kernels used to skip box pixels.
    grad = make((4, 3, 5, 6), torch.float32, layout, seed=4, device=device)  # B = 2, K = 2
    grad[0, 1, 2, 3] = float("nan")  # in box (1, 2, 3, 3)
    grad[1, 0, 0, 0] = float("inf")  # in box (0, 0, 5, 6), copy shifted (1, -1)
    grad[2, 2, 4, 5] = -float("inf")  # in box (2, 1, 3, 4)? no: column 5 is outside: stays -inf
    grad[3, 1, 1, 4] = float("nan")  # in box (-1, -1, 3, 9)
    shifts = torch.tensor([[[0, 0], [1, -1]], [[0, 0], [-1, 2]]], device=device)
    boxes = torch.tensor([[[1, 2, 3, 3], [0, 0, 5, 6]], [[2, 1, 3, 4], [-1, -1, 3, 9]]], device=device)
    grad_x = kernels(device).translate_backward(grad, shifts, boxes, padding)
    expected = ref.translate_backward(grad, shifts, boxes, padding)
    torch.testing.assert_close(grad_x, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert grad_x.isnan().sum() >= 2 and bool(grad_x.isinf().any())  # both kinds reach the image
    # Finite gradients in the box still contribute exactly 0: the finite pixels match the mask's adjoint.
    finite = grad.nan_to_num(0.0, 0.0, 0.0)
    torch.testing.assert_close(kernels(device).translate_backward(finite, shifts, boxes, padding),
                               ref.translate_backward(finite, shifts, boxes, padding), rtol=1e-6, atol=1e-6)
