// Host functions of the `augment` family (translate, translate_backward): one per op for every
// device. Each checks its arguments, chooses the memory view (csrc/fastgp/augment.h), allocates
// the output and calls the launch of the tensors' device (csrc/cpu/augment.cpp,
// csrc/cuda/augment.cu). Schemas in csrc/ops.cpp.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <string>

#include "fastgp/augment.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

using augment::Geometry;
using augment::ImageView;

int parse_padding(const char* op, c10::string_view padding) {
  if (padding == "zeros") return augment::kZeros;
  if (padding == "reflect") return augment::kReflect;
  if (padding == "replicate") return augment::kReplicate;
  TORCH_CHECK(false, "fastgp::", op, ": padding must be 'zeros', 'reflect' or 'replicate', got '",
              std::string(padding), "'");
  return augment::kZeros;
}

void check_image(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_supported_float(t.scalar_type()), "fastgp::", op, ": ", name,
              " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 4, "fastgp::", op, ": ", name, " must have shape [B, C, H, W], got ",
              t.sizes());
}

// shifts: int64 [B, K, 2] holding (dy, dx), K >= 1, on the device of the image. Returns it
// contiguous.
at::Tensor check_shifts(const char* op, const at::Tensor& shifts, int64_t B,
                        const at::Tensor& image) {
  TORCH_CHECK(shifts.scalar_type() == at::kLong, "fastgp::", op,
              ": shifts must be an int64 tensor, got ", shifts.scalar_type());
  TORCH_CHECK(shifts.dim() == 3 && shifts.size(0) == B && shifts.size(1) >= 1 &&
                  shifts.size(2) == 2,
              "fastgp::", op, ": shifts must have shape [", B, ", K, 2] with K >= 1, got ",
              shifts.sizes());
  check_same_device(op, "shifts", shifts, "the image", image);
  return shifts.contiguous();
}

// boxes (optional): int64 [B, K, 4] of (top, left, height, width), one cutout rectangle per output
// image in output coordinates (clipped to the image; height or width 0: no cutout). Returns a
// contiguous copy, or an undefined tensor when absent.
at::Tensor check_boxes(const char* op, const std::optional<at::Tensor>& boxes,
                       const at::Tensor& shifts, const at::Tensor& image) {
  if (!boxes.has_value() || !boxes->defined()) return at::Tensor();
  const at::Tensor& b = *boxes;
  TORCH_CHECK(b.scalar_type() == at::kLong, "fastgp::", op, ": boxes must be an int64 tensor, got ",
              b.scalar_type());
  TORCH_CHECK(b.dim() == 3 && b.size(0) == shifts.size(0) && b.size(1) == shifts.size(1) &&
                  b.size(2) == 4,
              "fastgp::", op, ": boxes must have shape [", shifts.size(0), ", ", shifts.size(1),
              ", 4] (top, left, height, width per output image), got ", b.sizes());
  check_same_device(op, "boxes", b, "the image", image);
  return b.contiguous();
}

// Reflect padding is exact only for |dy| < H and |dx| < W (augment::in_reflect_range). The CPU
// launches check while they read the shifts; for a GPU this reduction and its host sync check
// before any launch, so that a bad call is one clear error (a failed CUDA_KERNEL_ASSERT would
// poison the whole CUDA context). The public layer (fastgp/augment.py) has checked user input
// already: this guards the raw op. Out-of-range shifts would stay memory-safe in the kernels
// (source_index clamps), but inexact.
void check_reflect_range_on_device(const char* op, const at::Tensor& shifts, const Geometry& g) {
  if (g.mode != augment::kReflect || shifts.is_cpu()) return;
  const at::Tensor dy = shifts.select(2, 0);
  const at::Tensor dx = shifts.select(2, 1);
  const at::Tensor outside = dy.le(-g.H).logical_or_(dy.ge(g.H)).logical_or_(dx.le(-g.W)).logical_or_(dx.ge(g.W));
  TORCH_CHECK(!outside.any().item<bool>(), "fastgp::", op,
              ": reflect padding needs |dy| < H and |dx| < W, got a shift outside for an image of size ",
              g.H, "x", g.W);
}

at::Tensor translate(const at::Tensor& x, const at::Tensor& shifts_in,
                     const std::optional<at::Tensor>& boxes_in, c10::string_view padding) {
  constexpr const char* op = "translate";
  check_image(op, "x", x);
  const int mode = parse_padding(op, padding);
  const int64_t B = x.size(0);
  const at::Tensor shifts = check_shifts(op, shifts_in, B, x);
  const at::Tensor boxes = check_boxes(op, boxes_in, shifts, x);
  const c10::OptionalDeviceGuard guard(launch_device(x));
  const ImageView v = augment::image_view(x);
  const int64_t K = shifts.size(1);
  at::Tensor out = augment::empty_image(v, B * K, x.size(1));
  // No pixel to write (H == 0 or W == 0 included): every shift gives the empty image.
  if (out.numel() == 0) return out;
  const Geometry g{B, K, v.P, v.H, v.W, v.E, mode};
  check_reflect_range_on_device(op, shifts, g);
  FASTGP_LAUNCH(augment::launch_translate, x, v.t, shifts, boxes, out, g);
  return out;
}

at::Tensor translate_backward(const at::Tensor& grad, const at::Tensor& shifts_in,
                              const std::optional<at::Tensor>& boxes_in,
                              c10::string_view padding) {
  constexpr const char* op = "translate_backward";
  check_image(op, "grad", grad);
  TORCH_CHECK(shifts_in.dim() == 3 && shifts_in.size(1) >= 1, "fastgp::", op,
              ": shifts must have shape [B, K, 2] with K >= 1, got ", shifts_in.sizes());
  const int64_t B = shifts_in.size(0), K = shifts_in.size(1);
  const at::Tensor shifts = check_shifts(op, shifts_in, B, grad);
  TORCH_CHECK(grad.size(0) == B * K, "fastgp::", op, ": grad must have B * K = ", B * K,
              " rows (shifts is ", shifts.sizes(), "), got ", grad.size(0));
  const int mode = parse_padding(op, padding);
  const at::Tensor boxes = check_boxes(op, boxes_in, shifts, grad);
  const c10::OptionalDeviceGuard guard(launch_device(grad));
  const ImageView v = augment::image_view(grad);
  at::Tensor out = augment::empty_image(v, B, grad.size(1));
  if (out.numel() == 0) return out;
  const Geometry g{B, K, v.P, v.H, v.W, v.E, mode};
  check_reflect_range_on_device(op, shifts, g);
  FASTGP_LAUNCH(augment::launch_translate_backward, grad, v.t, shifts, boxes, out, g);
  return out;
}

void register_augment(torch::Library& m) {
  m.impl("translate", &translate);
  m.impl("translate_backward", &translate_backward);
}

}  // namespace

FASTGP_REGISTER_HOST_FUNCTIONS(register_augment)

}  // namespace fastgp
