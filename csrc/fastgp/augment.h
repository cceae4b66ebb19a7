// Index math of the `augment` family (integer translation), shared by the CPU and CUDA kernels,
// and the interface of its per-device launches.
//
// A translation by (dy, dx) reads out[i, j] = x[src(i, dy, H), src(j, dx, W)], where src maps an
// output coordinate to the source coordinate it copies (or -1: the zero padding). Each axis is
// independent, so everything here is 1-D.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>

#include "fastgp/macros.h"

namespace fastgp {
namespace augment {

// Padding modes, in the order of the `padding` strings of the schema.
enum Padding : int { kZeros = 0, kReflect = 1, kReplicate = 2 };

// A shift clamped into [-n, n]. Under zeros and replicate padding every |d| >= n gives the same
// image as d = ±n (the whole axis reads padding, or the one edge), and in [-n, n] the index
// arithmetic below cannot overflow (a shift of -2^63 would wrap i - d around to a negative index,
// the wrong edge). Kernels clamp every shift they load.
FASTGP_HOST_DEVICE inline int64_t clamp_shift(int64_t d, int64_t n) {
  return d < -n ? -n : (d > n ? n : d);
}

// Reflect padding reflects once, which is exact for |d| < n: the range the public API admits
// (fastgp/augment.py). The CPU launches check it while they read the shifts, the host functions
// before a CUDA launch (check_reflect_range_on_device in csrc/host/augment.cpp).
FASTGP_HOST_DEVICE inline bool in_reflect_range(int64_t d, int64_t n) { return d > -n && d < n; }

// The source coordinate of output coordinate i under shift d (|d| <= n, see clamp_shift) on an
// axis of n > 0 entries: p = i - d inside the image; outside it -1 (zeros), p reflected about the
// edge without repeating it (reflect, as torch's "reflect" pad), or the nearest edge (replicate).
// The final clamp keeps a reflect shift outside in_reflect_range from ever addressing memory
// outside the image.
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
// Exact for the shifts source_index handles exactly (|d| <= n; |d| < n for reflect).
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
// Host side: the memory view the host functions (csrc/host/augment.cpp) choose, and the per-device
// launches they call.

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

// What a translate launch needs besides the tensors: B samples, K copies, the view's P, H, W, E
// and the padding mode.
struct Geometry {
  int64_t B, K, P, H, W, E;
  int mode;
};

// The launches. Their arguments are checked by the host functions: `in` the image (translate) or
// the gradient (translate_backward) in the ImageView layout of `out`, shifts int64 [B, K, 2]
// contiguous, boxes int64 [B, K, 4] contiguous or undefined, `out` allocated and not empty. With
// reflect padding the CPU launch checks |dy| < H and |dx| < W (the only check that reads data;
// for a CUDA launch the host function has checked it).
void launch_translate_cpu(const at::Tensor& in, const at::Tensor& shifts, const at::Tensor& boxes,
                          const at::Tensor& out, const Geometry& g);
void launch_translate_cuda(const at::Tensor& in, const at::Tensor& shifts, const at::Tensor& boxes,
                           const at::Tensor& out, const Geometry& g);
void launch_translate_backward_cpu(const at::Tensor& grad, const at::Tensor& shifts,
                                   const at::Tensor& boxes, const at::Tensor& out,
                                   const Geometry& g);
void launch_translate_backward_cuda(const at::Tensor& grad, const at::Tensor& shifts,
                                    const at::Tensor& boxes, const at::Tensor& out,
                                    const Geometry& g);

inline const int64_t* boxes_ptr(const at::Tensor& boxes) {
  return boxes.defined() ? boxes.const_data_ptr<int64_t>() : nullptr;
}

}  // namespace augment
}  // namespace fastgp
