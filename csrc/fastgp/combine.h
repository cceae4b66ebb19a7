// Math of the `combine` family (pixel-wise combinations of two samples) shared by the CPU and
// CUDA kernels. Values are combined in the accumulation type and rounded once on store.
#pragma once

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

}  // namespace combine
}  // namespace fastgp
