// Index math of the `augment` family (integer translation), shared by the CPU and CUDA kernels.
//
// A translation by (dy, dx) reads out[i, j] = x[src(i, dy, H), src(j, dx, W)], where src maps an
// output coordinate to the source coordinate it copies (or -1: the zero padding). Each axis is
// independent, so everything here is 1-D.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "fastgp/macros.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace augment {

// Padding modes, in the order of the `padding` strings of the schema.
enum Padding : int { kZeros = 0, kReflect = 1, kReplicate = 2 };

// The source coordinate of output coordinate i under shift d on an axis of n > 0 entries:
// p = i - d inside the image; outside it -1 (zeros), p reflected about the edge without repeating
// it (reflect, as torch's "reflect" pad), or the nearest edge (replicate). Reflection is single,
// exact for |d| < n (the public API requires it); the final clamp only keeps larger shifts from
// ever addressing memory outside the image.
FASTGP_HOST_DEVICE inline int64_t source_index(int64_t i, int64_t d, int64_t n, int mode) {
  int64_t p = i - d;
  if (p >= 0 && p < n) return p;
  if (mode == kZeros) return -1;
  if (mode == kReflect && n > 1) p = p < 0 ? -p : 2 * (n - 1) - p;
  return p < 0 ? 0 : (p > n - 1 ? n - 1 : p);
}

// The output coordinates whose source is y (the preimage of y under source_index), as at most
// three closed intervals [lo[t], hi[t]] of [0, n), written in increasing order; returns their
// number. Used by the gather form of the adjoint (grad_x[y] = sum of grad_out over the preimage).
// zeros: {y + d}; replicate: one interval (the edges collect every output coordinate clamped
// onto them); reflect: y + d, and the mirror images -y + d (y > 0) and 2(n-1) - y + d (y < n-1).
// Exact for the shifts source_index handles exactly (|d| < n for reflect).
FASTGP_HOST_DEVICE inline int preimages(int64_t y, int64_t d, int64_t n, int mode, int64_t lo[3],
                                        int64_t hi[3]) {
  int count = 0;
  if (mode == kReplicate) {
    int64_t a = y == 0 ? 0 : y + d;
    int64_t b = y == n - 1 ? n - 1 : y + d;
    a = a < 0 ? 0 : a;
    b = b > n - 1 ? n - 1 : b;
    if (a <= b) {
      lo[0] = a;
      hi[0] = b;
      count = 1;
    }
    return count;
  }
  // Candidates in increasing order: -y + d < y + d < 2(n-1) - y + d.
  int64_t cand[3];
  int nc = 0;
  if (mode == kReflect && y > 0 && n > 1) cand[nc++] = -y + d;
  cand[nc++] = y + d;
  if (mode == kReflect && y < n - 1 && n > 1) cand[nc++] = 2 * (n - 1) - y + d;
  for (int t = 0; t < nc; ++t) {
    if (cand[t] >= 0 && cand[t] < n) {
      lo[count] = cand[t];
      hi[count] = cand[t];
      ++count;
    }
  }
  return count;
}

// ---------------------------------------------------------------------------------------------
// Host side, shared by the CPU and CUDA entry points: argument checks and the memory view.

inline int parse_padding(const char* op, const std::string& padding) {
  if (padding == "zeros") return kZeros;
  if (padding == "reflect") return kReflect;
  if (padding == "replicate") return kReplicate;
  TORCH_CHECK(false, "fastgp::", op, ": padding must be 'zeros', 'reflect' or 'replicate', got '",
              padding, "'");
  return kZeros;
}

// An image tensor [rows, C, H, W] viewed as raw memory [rows, P, H, W * E]: P = C planes of
// single values (contiguous NCHW, E = 1) or one plane of C-value pixels (channels_last, P = 1,
// E = C). A translation then moves whole pixels of E values inside rows of W * E values, the
// same code for both layouts. Any other layout is copied to contiguous first.
struct ImageView {
  at::Tensor t;  // the tensor to read (x itself, or a contiguous copy)
  bool channels_last;
  int64_t P, H, W, E;
};

// channels_last only when the tensor is not also plainly contiguous (C == 1 or H == W == 1 make
// both true); the fake kernels in fastgp/augment.py follow the same rule.
inline bool is_channels_last_only(const at::Tensor& t) {
  return !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast);
}

inline ImageView image_view(const at::Tensor& t) {
  const bool cl = is_channels_last_only(t);
  const at::Tensor v = cl ? t : t.contiguous();
  const int64_t C = t.size(1), H = t.size(2), W = t.size(3);
  return {v, cl, cl ? 1 : C, H, W, cl ? C : 1};
}

// An uninitialized [rows, C, H, W] tensor in the layout of `view`.
inline at::Tensor empty_image(const ImageView& view, int64_t rows, int64_t C) {
  return at::empty({rows, C, view.H, view.W},
                   view.t.options().memory_format(view.channels_last
                                                      ? at::MemoryFormat::ChannelsLast
                                                      : at::MemoryFormat::Contiguous));
}

inline void check_image(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_supported_float(t.scalar_type()), "fastgp::", op, ": ", name,
              " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() == 4, "fastgp::", op, ": ", name, " must have shape [B, C, H, W], got ",
              t.sizes());
}

// shifts: int64 [B, K, 2] holding (dy, dx), K >= 1, on the device of the image.
inline void check_shifts(const char* op, const at::Tensor& shifts, int64_t B,
                         const at::Tensor& image) {
  TORCH_CHECK(shifts.scalar_type() == at::kLong, "fastgp::", op,
              ": shifts must be an int64 tensor, got ", shifts.scalar_type());
  TORCH_CHECK(shifts.dim() == 3 && shifts.size(0) == B && shifts.size(1) >= 1 &&
                  shifts.size(2) == 2,
              "fastgp::", op, ": shifts must have shape [", B, ", K, 2] with K >= 1, got ",
              shifts.sizes());
  check_same_device(op, "shifts", shifts, "the image", image);
}

// translate_backward's grad [B*K, C, H, W] and shifts [B, K, 2]: checks both and returns (B, K),
// shared by the CPU and CUDA entry points.
inline std::pair<int64_t, int64_t> check_backward_args(const char* op, const at::Tensor& grad,
                                                       const at::Tensor& shifts) {
  check_image(op, "grad", grad);
  TORCH_CHECK(shifts.dim() == 3 && shifts.size(1) >= 1, "fastgp::", op,
              ": shifts must have shape [B, K, 2] with K >= 1, got ", shifts.sizes());
  const int64_t B = shifts.size(0), K = shifts.size(1);
  check_shifts(op, shifts, B, grad);
  TORCH_CHECK(grad.size(0) == B * K, "fastgp::", op, ": grad must have B * K = ", B * K,
              " rows (shifts is ", shifts.sizes(), "), got ", grad.size(0));
  return {B, K};
}

// boxes (optional): int64 [B, K, 4] of (top, left, height, width), one cutout rectangle per output
// image in output coordinates (clipped to the image; height or width 0: no cutout). Returns a
// contiguous copy, or an undefined tensor when absent.
inline at::Tensor check_boxes(const char* op, const std::optional<at::Tensor>& boxes,
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

inline const int64_t* boxes_ptr(const at::Tensor& boxes) {
  return boxes.defined() ? boxes.const_data_ptr<int64_t>() : nullptr;
}

}  // namespace augment
}  // namespace fastgp
