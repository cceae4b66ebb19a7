// Math of the `combine` family (pixel-wise combinations of two samples) shared by the CPU and
// CUDA kernels, and the interface of their launches. Values are combined in the accumulation
// type and rounded once on store.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "fastgp/macros.h"

namespace fastgp {
namespace combine {

enum Mode : int64_t { kMean = 0, kMin = 1, kMax = 2, kAnd = 3, kOr = 4 };

// min / max propagate NaN (as torch.minimum / torch.maximum); the binary modes threshold first
// (v > threshold is false for NaN) and return 1 or 0.
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t apply(int64_t mode, acc_t a, acc_t b, acc_t threshold) {
  switch (mode) {
    case kMean:
      return (a + b) * acc_t(0.5);
    case kMin:
      return (a != a || b != b) ? a + b : (b < a ? b : a);
    case kMax:
      return (a != a || b != b) ? a + b : (b > a ? b : a);
    case kAnd:
      return (a > threshold && b > threshold) ? acc_t(1) : acc_t(0);
    default:  // kOr
      return (a > threshold || b > threshold) ? acc_t(1) : acc_t(0);
  }
}

// The per-device launch of pixelwise_combine (csrc/cpu/combine.cpp, csrc/cuda/combine.cu), called
// by the host function of csrc/host/combine.cpp with checked arguments: x [B, ...] and out
// [P, ...] in one row format, pairs int64 [P, 2] contiguous, P >= 1, mode a Mode. The pair
// indices must lie in [0, B): the only check that reads data (the CPU launch while it reads them,
// the host function with one reduction before a CUDA launch).
void launch_pixelwise_combine_cpu(const at::Tensor& x, const at::Tensor& pairs, int64_t mode,
                                  double threshold, const at::Tensor& out);
void launch_pixelwise_combine_cuda(const at::Tensor& x, const at::Tensor& pairs, int64_t mode,
                                   double threshold, const at::Tensor& out);

}  // namespace combine
}  // namespace fastgp
