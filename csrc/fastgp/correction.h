// Math of the `correction` family (nearest-neighbour distance) shared by the CPU and CUDA kernels,
// and the interface of their launches.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "fastgp/macros.h"

namespace fastgp {
namespace correction {

// Squared distance from the expansion |a|^2 + |b|^2 - 2 a.b, clamped at 0 (rounding can make it
// slightly negative for near-identical rows). NaN stays NaN (NaN < 0 is false).
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t clamped_distance(acc_t sa, acc_t sb, acc_t dot) {
  const acc_t d = sa + sb - acc_t(2) * dot;
  return d < acc_t(0) ? acc_t(0) : d;
}

// Whether candidate (d, j) replaces the running minimum (best, best_j), visiting j in ascending
// order: a strictly smaller distance (ties keep the lower index), or the first NaN, which then
// stays (NaN propagates, as in torch.min). best_j < 0 means nothing seen yet.
template <typename acc_t>
FASTGP_HOST_DEVICE inline bool improves(acc_t d, acc_t best, int64_t best_j) {
  if (best_j < 0) return true;
  if (best != best) return false;
  return d != d || d < best;
}

// The same order for merging two partial minima (d, j) and (best, best_j) in any visiting order
// (the CUDA warp reduction): NaN first, then the smaller distance, then the lower index.
template <typename acc_t>
FASTGP_HOST_DEVICE inline bool better(acc_t d, int64_t j, acc_t best, int64_t best_j) {
  if (j < 0) return false;
  if (best_j < 0) return true;
  const bool nan_d = d != d, nan_b = best != best;
  if (nan_d != nan_b) return nan_d;
  if (nan_d || d == best) return j < best_j;
  return d < best;
}

// The per-device launches of nearest_distance (csrc/cpu/correction.cpp, csrc/cuda/correction.cu),
// called per bank chunk by the host function of csrc/host/correction.cpp; every tensor is
// contiguous in the accumulation dtype (float32 or float64), best_j int64.
// out[r] = |x_r|^2 for the rows of x [rows, D]; out [rows].
void launch_row_sum_squares_cpu(const at::Tensor& x, const at::Tensor& out);
void launch_row_sum_squares_cuda(const at::Tensor& x, const at::Tensor& out);
// Folds the chunk of bank rows j0 .. j0 + c - 1 into the running minima (best, best_j) [B]:
// dot [B, c] = samples . chunk^T, sa [B] and sb [c] the squared norms.
void launch_update_minima_cpu(const at::Tensor& dot, const at::Tensor& sa, const at::Tensor& sb,
                              int64_t j0, const at::Tensor& best, const at::Tensor& best_j);
void launch_update_minima_cuda(const at::Tensor& dot, const at::Tensor& sa, const at::Tensor& sb,
                               int64_t j0, const at::Tensor& best, const at::Tensor& best_j);

}  // namespace correction
}  // namespace fastgp
