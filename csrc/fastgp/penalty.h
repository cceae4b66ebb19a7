// Per-sample math of the `penalty` family, shared by the CPU (csrc/cpu/penalty.cpp) and CUDA
// (csrc/cuda/penalty.cu) kernels so that both compute bit-identical formulas, and the interface of
// their launches (called by the host functions of csrc/host/penalty.cpp).
//
// acc_t is the accumulation type: float for float16/bfloat16/float32, double for float64.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>

#include "fastgp/macros.h"
#include "fastgp/math.h"

namespace fastgp {
namespace penalty {

// Multiply / add that are never fused into an FMA. nvcc contracts a*b + c*d into fma() by
// default (--fmad=true), which would round differently from the eager reference
// `alpha*real + (1-alpha)*fake` (separate kernels, one rounding per operation). The host build
// uses -ffp-contract=off for the same reason.
FASTGP_HOST_DEVICE inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTGP_HOST_DEVICE inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
FASTGP_HOST_DEVICE inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FASTGP_HOST_DEVICE inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

// interpolate: a*real + (1-a)*fake, exactly the eager reference's operation order.
// one_minus_a is passed in so a row computes (1 - a) once.
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t lerp(acc_t a, acc_t one_minus_a, acc_t real, acc_t fake) {
  return add_rn(mul_rn(a, real), mul_rn(one_minus_a, fake));
}

// Options of the gradient-norm penalty head, converted once to the accumulation type.
template <typename acc_t>
struct HeadParams {
  acc_t center;
  bool zero_center;  // center == 0: the penalty is the sum of squares itself (no sqrt/square)
  bool one_sided;
};

template <typename acc_t>
inline HeadParams<acc_t> make_head_params(double center, bool one_sided) {
  return HeadParams<acc_t>{static_cast<acc_t>(center), center == 0.0, one_sided};
}

// d = norm - center, clamped at 0 when one-sided. Written as (d < 0 ? 0 : d) so that a NaN
// norm stays NaN: non-finite values must propagate, never be masked.
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t centered(acc_t norm, const HeadParams<acc_t>& p) {
  acc_t d = norm - p.center;
  if (p.one_sided && d < acc_t(0)) d = acc_t(0);
  return d;
}

// Forward head of one sample from its sum of squares s: norm = sqrt(s) and
//   penalty = s                 when center == 0 (exact and differentiable at g = 0),
//   penalty = d*d, d as above   otherwise.
template <typename acc_t>
FASTGP_HOST_DEVICE inline void head_forward(acc_t sumsq, const HeadParams<acc_t>& p,
                                            acc_t* penalty, acc_t* norm) {
  const acc_t n = sqrt_acc(sumsq);
  *norm = n;
  if (p.zero_center) {
    *penalty = sumsq;
  } else {
    const acc_t d = centered(n, p);
    *penalty = d * d;
  }
}

// Overflow/underflow-safe norm. The plain sum of squares s of a row is trusted when it is in
// [lowest_trusted_sum_squares, max finite]: a finite sum of non-negative terms never overflowed
// on the way, and above the bound the squares that underflowed to subnormals/0 weigh less than
// rounding (2^-100 leaves 2^26 elements of relative error 2^-23 each for float). A NaN s (a NaN
// in the row) is left alone: NaN propagates. Otherwise (s == inf from finite elements of ~1e19+,
// or s tiny or 0 from elements of ~1e-19 or below) the row's norm is recomputed scaled by its
// largest magnitude m: norm = m * sqrt(sum (x/m)^2), as LAPACK's nrm2. Ordinary rows never take
// that second pass.
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t lowest_trusted_sum_squares() {
  return sizeof(acc_t) == 4 ? acc_t(0x1p-100) : acc_t(0x1p-969);
}

template <typename acc_t>
FASTGP_HOST_DEVICE inline bool sum_squares_needs_rescaling(acc_t s) {
  // s > max finite is s == inf; written with a constant the device compiler knows.
  const acc_t max_finite = sizeof(acc_t) == 4 ? acc_t(0x1.fffffep127) : acc_t(0x1.fffffffffffffp1023);
  return s < lowest_trusted_sum_squares<acc_t>() || s > max_finite;
}

// The scaled norm of x[0, n) (no NaN in it: the caller only rescales a non-NaN s), two passes.
template <typename acc_t, typename scalar_t>
FASTGP_HOST_DEVICE inline acc_t scaled_norm(const scalar_t* x, int64_t n) {
  acc_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    const acc_t a = static_cast<acc_t>(x[i]) < acc_t(0) ? -static_cast<acc_t>(x[i])
                                                        : static_cast<acc_t>(x[i]);
    if (a > m) m = a;
  }
  if (m == acc_t(0) || (m - m != acc_t(0))) return m;  // all zero, or an inf
  acc_t s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const acc_t v = static_cast<acc_t>(x[i]) / m;
    s += v * v;
  }
  return m * sqrt_acc(s);
}

// Forward head of one sample from its norm n and sum of squares s (penalty = s at centre 0).
template <typename acc_t>
FASTGP_HOST_DEVICE inline void head_forward_norm(acc_t sumsq, acc_t n, const HeadParams<acc_t>& p,
                                                 acc_t* penalty, acc_t* norm) {
  *norm = n;
  if (p.zero_center) {
    *penalty = sumsq;
  } else {
    const acc_t d = centered(n, p);
    *penalty = d * d;
  }
}

// head_forward for the row x[0, n) whose plain sum of squares is s: the plain head for ordinary
// rows, the scaled norm (and penalty norm^2 at centre 0, inf or 0 only where the value itself is
// out of range) where s over- or underflowed.
template <typename acc_t, typename scalar_t>
FASTGP_HOST_DEVICE inline void head_forward_row(acc_t s, const scalar_t* x, int64_t n,
                                                const HeadParams<acc_t>& p, acc_t* penalty,
                                                acc_t* norm) {
  if (!sum_squares_needs_rescaling(s)) {
    head_forward(s, p, penalty, norm);
    return;
  }
  const acc_t r = scaled_norm<acc_t>(x, n);
  head_forward_norm(r * r, r, p, penalty, norm);
}

// d penalty / d g = coef * g, with
//   coef = 2                 when center == 0 (d s / d g = 2 g),
//   coef = 2 d / norm        otherwise, and 0 where norm == 0 (as torch's vector_norm backward,
//                            which masks the 0/0). norm == 0 rather than !(norm > 0), so that
//                            a NaN norm gives a NaN coefficient instead of a silent 0.
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t head_backward_coef(acc_t norm, const HeadParams<acc_t>& p) {
  if (p.zero_center) return acc_t(2);
  if (norm == acc_t(0)) return acc_t(0);
  return acc_t(2) * centered(norm, p) / norm;
}

// Per-sample scale of the backward: grad_in = grad * (grad_penalty * coef).
template <typename acc_t>
FASTGP_HOST_DEVICE inline acc_t head_backward_scale(acc_t grad_penalty, acc_t norm,
                                                    const HeadParams<acc_t>& p) {
  return grad_penalty * head_backward_coef(norm, p);
}

// ---------------------------------------------------------------------------------------------
// The per-device launches. Arguments are checked and laid out by the host functions: inputs and
// outputs of [B, N] elements share one sample-major dense layout (csrc/fastgp/tensor_utils.h),
// per-sample vectors are contiguous [B], outputs are allocated.

// out = interpolate(real, fake, alpha); B * N > 0.
void launch_interpolate_cpu(const at::Tensor& real, const at::Tensor& fake,
                            const at::Tensor& alpha, const at::Tensor& out);
void launch_interpolate_cuda(const at::Tensor& real, const at::Tensor& fake,
                             const at::Tensor& alpha, const at::Tensor& out);

// alpha[b] = tl.rand(seed, b) in alpha's dtype, then out = interpolate(real, fake, alpha); B > 0
// (N may be 0). seed: one int64 on the device.
void launch_interpolate_random_cpu(const at::Tensor& real, const at::Tensor& fake,
                                   const at::Tensor& seed, const at::Tensor& alpha,
                                   const at::Tensor& out);
void launch_interpolate_random_cuda(const at::Tensor& real, const at::Tensor& fake,
                                    const at::Tensor& seed, const at::Tensor& alpha,
                                    const at::Tensor& out);

// (penalty [B], norm [B]) in acc dtype from grad [B, N]; B > 0.
void launch_grad_norm_penalty_forward_cpu(const at::Tensor& grad, double center, bool one_sided,
                                          const at::Tensor& penalty, const at::Tensor& norm);
void launch_grad_norm_penalty_forward_cuda(const at::Tensor& grad, double center, bool one_sided,
                                           const at::Tensor& penalty, const at::Tensor& norm);

// grad_in = grad * grad_penalty[b] * coef(norm[b]); B * N > 0.
void launch_grad_norm_penalty_backward_cpu(const at::Tensor& grad_penalty, const at::Tensor& grad,
                                           const at::Tensor& norm, double center, bool one_sided,
                                           const at::Tensor& grad_in);
void launch_grad_norm_penalty_backward_cuda(const at::Tensor& grad_penalty,
                                            const at::Tensor& grad, const at::Tensor& norm,
                                            double center, bool one_sided,
                                            const at::Tensor& grad_in);

}  // namespace penalty
}  // namespace fastgp
