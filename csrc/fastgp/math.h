// Scalar math in the accumulation type shared by every family's CPU and CUDA kernels.
#pragma once

#include <cmath>

#include "fastgp/macros.h"

namespace fastgp {

// IEEE square root in acc precision, spelled per compiler: overloads keep float as float on
// both sides (an unqualified call could silently promote float to double on the host).
FASTGP_HOST_DEVICE inline float sqrt_acc(float x) {
#if defined(__CUDA_ARCH__)
  return ::sqrtf(x);
#else
  return std::sqrt(x);
#endif
}
FASTGP_HOST_DEVICE inline double sqrt_acc(double x) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// max that keeps a NaN in `a` (as torch's clamp_min does).
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t max_acc(acc_t a, acc_t b) { return a < b ? b : a; }

}  // namespace fastgp
