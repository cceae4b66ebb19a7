// CPU kernels of the `augment` family: batched integer translation (forward) and its adjoint
// (the backward w.r.t. the image), and their launches, called by the host functions of
// csrc/host/augment.cpp. Schemas in csrc/ops.cpp; index math in csrc/fastgp/augment.h, shared
// with the CUDA kernels.
//
// Images are viewed as [rows, P, H, W * E] raw memory (contiguous: P = C, E = 1; channels_last:
// P = 1, E = C; see ImageView). A translated output row is one source row (or padding) moved by
// dx pixels: a memcpy of the in-image span plus a fill or per-pixel copy of the border, so the
// forward runs at memory-copy speed for both layouts.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fastgp/augment.h"

namespace fastgp {
namespace {

using augment::clamp_shift;
using augment::Geometry;
using augment::source_index;

// Rows per parallel task at least this many elements in total (ATen's GRAIN_SIZE).
constexpr int64_t kGrain = 32768;

// The columns [c0, c1) of row i of output row block n that the cutout box zeroes (c0 == c1: none).
// boxes: [B*K, 4] of (top, left, height, width) in output coordinates, or nullptr.
inline void cut_columns(const int64_t* boxes, int64_t n, int64_t i, int64_t W, int64_t* c0,
                        int64_t* c1) {
  *c0 = *c1 = 0;
  if (boxes == nullptr) return;
  const int64_t* box = boxes + 4 * n;
  if (i < box[0] || i >= box[0] + box[2]) return;
  *c0 = std::min(W, std::max<int64_t>(0, box[1]));
  *c1 = std::max(*c0, std::min(W, box[1] + box[3]));
}

// out row (n = b*K + k, p, i) from x row (b, p, src(i, dy)), for every output row, then the
// cutout columns of that row multiplied by 0.
template <typename scalar_t>
void translate_kernel(const scalar_t* x, const int64_t* shifts, const int64_t* boxes,
                      scalar_t* out, const Geometry& g) {
  const int64_t L = g.W * g.E, E = g.E, W = g.W;
  const int64_t rows = g.B * g.K * g.P * g.H;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(L, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    // Rows are visited in order; the per-image values (shift, source plane, in-image column
    // span) change only when the plane (n, p) does, so the divisions happen once per task and
    // once per plane, not once per row (rows are short: 32 floats at 32x32).
    int64_t np = begin / g.H;  // n * P + p
    int64_t i = begin - np * g.H;
    int64_t n = -1, dy = 0, dx = 0, lo = 0, hi = 0;
    const scalar_t* src_plane = nullptr;
    for (int64_t r = begin; r < end; ++r, ++i) {
      if (i == g.H) {
        i = 0;
        ++np;
      }
      if (n < 0 || i == 0) {
        n = np / g.P;
        const int64_t p = np - n * g.P;
        dy = clamp_shift(shifts[2 * n], g.H);
        dx = clamp_shift(shifts[2 * n + 1], W);
        src_plane = x + ((n / g.K) * g.P + p) * g.H * L;
        // Output pixels [lo, hi) read source pixels [lo - dx, hi - dx) inside the image.
        lo = std::min(W, std::max<int64_t>(0, dx));
        hi = std::max(lo, std::min(W, W + dx));
      }
      scalar_t* dst = out + r * L;
      const int64_t sy = source_index(i, dy, g.H, g.mode);
      if (sy < 0) {
        std::fill(dst, dst + L, scalar_t(0));
        continue;
      }
      const scalar_t* src = src_plane + sy * L;
      if (hi > lo) std::memcpy(dst + lo * E, src + (lo - dx) * E, (hi - lo) * E * sizeof(scalar_t));
      // Border pixels: padding value or the reflected / replicated source pixel.
      if (g.mode == augment::kZeros) {
        std::fill(dst, dst + lo * E, scalar_t(0));
        std::fill(dst + hi * E, dst + L, scalar_t(0));
      } else {
        for (int64_t j = 0; j < lo; ++j) {
          std::memcpy(dst + j * E, src + source_index(j, dx, W, g.mode) * E, E * sizeof(scalar_t));
        }
        for (int64_t j = hi; j < W; ++j) {
          std::memcpy(dst + j * E, src + source_index(j, dx, W, g.mode) * E, E * sizeof(scalar_t));
        }
      }
      int64_t c0, c1;
      cut_columns(boxes, n, i, W, &c0, &c1);
      // Multiplied by 0, as DiffAugment's mask: a NaN/inf pixel in the box stays NaN.
      for (int64_t t = c0 * E; t < c1 * E; ++t) dst[t] = dst[t] * scalar_t(0);
    }
  });
}

// Adds grad row pixels [c0, c1) onto the accumulator row of their sources (shift dx); kCut: the
// pixels are in the cutout box, whose mask multiplies them by 0 (so a NaN/inf gradient there
// still gives NaN, as DiffAugment's grad * mask).
template <bool kCut = false, typename scalar_t, typename acc_t>
inline void scatter_row(const scalar_t* src, acc_t* dst, int64_t dx, int64_t W, int64_t E,
                        int mode, int64_t c0, int64_t c1) {
  const auto value = [](scalar_t v) {
    return kCut ? static_cast<acc_t>(v) * acc_t(0) : static_cast<acc_t>(v);
  };
  // In-image span: output pixels [lo, hi) onto source pixels [lo - dx, hi - dx); a plain loop the
  // compiler vectorizes.
  const int64_t lo = std::min(c1, std::max(c0, dx));
  const int64_t hi = std::max(lo, std::min(c1, W + dx));
  const scalar_t* s_span = src + lo * E;
  acc_t* d_span = dst + (lo - dx) * E;
  for (int64_t t = 0; t < (hi - lo) * E; ++t) d_span[t] += value(s_span[t]);
  auto border = [&](int64_t j) {
    const int64_t sx = source_index(j, dx, W, mode);
    if (sx < 0) return;
    for (int64_t e = 0; e < E; ++e) dst[sx * E + e] += value(src[j * E + e]);
  };
  for (int64_t j = c0; j < lo; ++j) border(j);
  for (int64_t j = hi; j < c1; ++j) border(j);
}

// The adjoint: grad_x plane (b, p) = sum over k and over output rows i of grad row (b*K+k, p, i)
// (minus its cutout columns) scattered onto source row src(i, dy). One task owns whole planes of
// grad_x, so the scatter has no races and runs in a fixed order (deterministic, no atomics); it
// accumulates in acc_t.
template <typename scalar_t>
void translate_backward_kernel(const scalar_t* grad, const int64_t* shifts, const int64_t* boxes,
                               scalar_t* out, const Geometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t L = g.W * g.E, E = g.E, W = g.W, plane = g.H * L;
  const int64_t planes = g.B * g.P;
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(plane * g.K, 1));
  at::parallel_for(0, planes, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(static_cast<size_t>(plane));
    for (int64_t bp = begin; bp < end; ++bp) {
      const int64_t b = bp / g.P, p = bp % g.P;
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t k = 0; k < g.K; ++k) {
        const int64_t n = b * g.K + k;
        const int64_t dy = clamp_shift(shifts[2 * n], g.H), dx = clamp_shift(shifts[2 * n + 1], W);
        for (int64_t i = 0; i < g.H; ++i) {
          const int64_t sy = source_index(i, dy, g.H, g.mode);
          if (sy < 0) continue;
          const scalar_t* src = grad + ((n * g.P + p) * g.H + i) * L;
          acc_t* dst = acc.data() + sy * L;
          int64_t c0, c1;
          cut_columns(boxes, n, i, W, &c0, &c1);
          if (c1 > c0) {  // the cut pixels pass grad * 0: 0, or NaN for a NaN/inf gradient
            scatter_row(src, dst, dx, W, E, g.mode, 0, c0);
            scatter_row<true>(src, dst, dx, W, E, g.mode, c0, c1);
            scatter_row(src, dst, dx, W, E, g.mode, c1, W);
          } else {
            scatter_row(src, dst, dx, W, E, g.mode, 0, W);
          }
        }
      }
      scalar_t* o = out + bp * plane;
      for (int64_t t = 0; t < plane; ++t) o[t] = static_cast<scalar_t>(acc[t]);
    }
  });
}

// Reflection is exact only for |shift| < size; checked here on the host (the shifts are tiny).
void check_reflect_range(const char* op, const at::Tensor& shifts, const Geometry& g) {
  if (g.mode != augment::kReflect) return;
  const int64_t* s = shifts.const_data_ptr<int64_t>();
  for (int64_t t = 0; t < shifts.numel(); t += 2) {
    TORCH_CHECK(augment::in_reflect_range(s[t], g.H) && augment::in_reflect_range(s[t + 1], g.W),
                "fastgp::", op, ": reflect padding needs |dy| < H and |dx| < W, got shift (", s[t],
                ", ", s[t + 1], ") for an image of size ", g.H, "x", g.W);
  }
}

}  // namespace

namespace augment {

void launch_translate_cpu(const at::Tensor& in, const at::Tensor& shifts, const at::Tensor& boxes,
                          const at::Tensor& out, const Geometry& g) {
  check_reflect_range("translate", shifts, g);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "fastgp_translate_cpu", [&] {
        translate_kernel<scalar_t>(in.const_data_ptr<scalar_t>(), shifts.const_data_ptr<int64_t>(),
                                   boxes_ptr(boxes), out.mutable_data_ptr<scalar_t>(), g);
      });
}

void launch_translate_backward_cpu(const at::Tensor& grad, const at::Tensor& shifts,
                                   const at::Tensor& boxes, const at::Tensor& out,
                                   const Geometry& g) {
  check_reflect_range("translate_backward", shifts, g);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_translate_backward_cpu", [&] {
        translate_backward_kernel<scalar_t>(grad.const_data_ptr<scalar_t>(),
                                            shifts.const_data_ptr<int64_t>(), boxes_ptr(boxes),
                                            out.mutable_data_ptr<scalar_t>(), g);
      });
}

}  // namespace augment
}  // namespace fastgp
