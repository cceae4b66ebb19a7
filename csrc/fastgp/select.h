// Math of the `select` family (Fake-As-Real top-k) shared by the CPU and CUDA kernels, and the
// interface of their launches.
//
// The order of the candidates: ascending logit, NaN after every number (as torch.sort puts it),
// equal logits (and NaN among NaN) by ascending index. -0.0 and +0.0 are equal. This is the order
// of torch.sort(logits, stable=True), so its first k entries are the selection.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>

#include "fastgp/macros.h"

namespace fastgp {
namespace select {

// Whether candidate j comes before candidate i (logits converted to the accumulation type,
// which is exact for float16/bfloat16).
template <typename acc_t>
FASTGP_HOST_DEVICE inline bool comes_before(acc_t vj, int64_t j, acc_t vi, int64_t i) {
  const bool nan_j = vj != vj;
  const bool nan_i = vi != vi;
  if (nan_j != nan_i) return nan_i;      // numbers before NaN
  if (nan_j || vj == vi) return j < i;   // ties (and NaN among NaN): lower index first
  return vj < vi;
}

// The per-device launch of far_select and far_batch (csrc/cpu/select.cpp, csrc/cuda/select.cu),
// called by the host functions of csrc/host/select.cpp with checked arguments: logits [M] (any
// stride), candidates [M, ...] and real [R, ...] (undefined for far_select) in one row format,
// 1 <= k <= M. Writes the first k candidates of the order above into indices (int64 [k]) and
// out[r] = real[r] for r < R, candidates[indices[r - R]] after.
void launch_far_gather_cpu(const at::Tensor& logits, int64_t k, const at::Tensor& real,
                           const at::Tensor& candidates, const at::Tensor& indices,
                           const at::Tensor& out);
void launch_far_gather_cuda(const at::Tensor& logits, int64_t k, const at::Tensor& real,
                            const at::Tensor& candidates, const at::Tensor& indices,
                            const at::Tensor& out);

}  // namespace select
}  // namespace fastgp
