// Math of the `spectral` family (power-iteration spectral normalization) shared by the CPU and
// CUDA kernels.
//
// One power iteration on W [h, w] with the stored unit vectors u [h], v [w], exactly as
// torch.nn.utils.parametrizations.spectral_norm orders it (u first, then v):
//     u' = normalize(W v),  v' = normalize(Wᵀ u'),  normalize(x) = x / max(‖x‖, eps).
// The kernels read W ONCE per iteration: with p = W v (row i's dot p_i = W_i·v, computed while
// row i is in cache) they also accumulate t = Wᵀ p = Σ_i p_i W_i, and since Wᵀ u' = t / max(‖p‖,
// eps) the second product needs no second pass. The estimate that torch then computes with a
// third pass, σ = u'ᵀ W v', is (Wᵀ u')·v' = ‖Wᵀu'‖² / max(‖Wᵀu'‖, eps): no pass either.
// With zero iterations (eval mode) σ = Σ_i u_i (W_i·v): one pass.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>

#include "fastgp/macros.h"
#include "fastgp/math.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace spectral {

// The scalars that finish one iteration from the reductions of its pass over W.
template <typename acc_t>
struct Finish {
  acc_t inv_du;  // 1 / max(‖p‖, eps): u' = p * inv_du, Wᵀu' = t * inv_du
  acc_t inv_dv;  // 1 / max(‖Wᵀu'‖, eps) / max(‖p‖, eps): v' = t * inv_dv
  acc_t sigma;   // u'ᵀ W v' = ‖Wᵀu'‖² / max(‖Wᵀu'‖, eps)
};

// p_sq = ‖p‖², t_sq = ‖t‖² (t = Wᵀ p, before the division by max(‖p‖, eps)).
template <typename acc_t>
FASTGP_HOST_DEVICE inline Finish<acc_t> finish(acc_t p_sq, acc_t t_sq, acc_t eps) {
  const acc_t du = max_acc(sqrt_acc(p_sq), eps);
  const acc_t wtu = sqrt_acc(t_sq) / du;  // ‖Wᵀu'‖
  const acc_t dv = max_acc(wtu, eps);
  Finish<acc_t> f;
  f.inv_du = acc_t(1) / du;
  f.inv_dv = acc_t(1) / (dv * du);
  f.sigma = wtu * wtu / dv;
  return f;
}

// Elements of W per work item (a chunk of whole rows, at least one): large enough to amortize a
// task or a CUDA block, small enough that a discriminator's small layers give every core work.
constexpr int64_t kItemElems = 16384;

// Host-side checks of both ops: one weight matrix [h, w] per u [h] and v [w] buffer, all of one
// floating dtype and device, u and v contiguous (they are updated in place).
inline void check_group(const char* op, at::TensorList weights, at::TensorList us,
                        at::TensorList vs, int64_t n_iterations, double eps) {
  TORCH_CHECK(us.size() == weights.size() && vs.size() == weights.size(), "fastgp::", op,
              ": weights, us and vs must have the same length, got ", weights.size(), ", ",
              us.size(), " and ", vs.size());
  TORCH_CHECK(n_iterations >= 0, "fastgp::", op, ": n_iterations must be >= 0, got ",
              n_iterations);
  TORCH_CHECK(eps > 0 && std::isfinite(eps), "fastgp::", op,
              ": eps must be a positive finite number, got ", eps);
  for (size_t g = 0; g < weights.size(); ++g) {
    const at::Tensor& W = weights[g];
    const at::Tensor& u = us[g];
    const at::Tensor& v = vs[g];
    TORCH_CHECK(is_supported_float(W.scalar_type()), "fastgp::", op, ": weight ", g,
                " must be float16, bfloat16, float32 or float64, got ", W.scalar_type());
    TORCH_CHECK(W.scalar_type() == weights[0].scalar_type(), "fastgp::", op,
                ": all weights must have one dtype, got ", weights[0].scalar_type(), " and ",
                W.scalar_type());
    TORCH_CHECK(W.dim() == 2, "fastgp::", op, ": weight ", g,
                " must be a matrix [h, w], got shape ", W.sizes());
    TORCH_CHECK(u.dim() == 1 && u.size(0) == W.size(0), "fastgp::", op, ": u ", g,
                " must have shape [", W.size(0), "], got ", u.sizes());
    TORCH_CHECK(v.dim() == 1 && v.size(0) == W.size(1), "fastgp::", op, ": v ", g,
                " must have shape [", W.size(1), "], got ", v.sizes());
    TORCH_CHECK(u.scalar_type() == W.scalar_type() && v.scalar_type() == W.scalar_type(),
                "fastgp::", op, ": u and v must have the dtype of their weight (",
                W.scalar_type(), "), got ", u.scalar_type(), " and ", v.scalar_type());
    TORCH_CHECK(u.is_contiguous() && v.is_contiguous(), "fastgp::", op,
                ": u and v must be contiguous (they are updated in place)");
    check_same_device(op, "u", u, "weight", W);
    check_same_device(op, "v", v, "weight", W);
    check_same_device(op, "weight", W, "the first weight", weights[0]);
  }
}

}  // namespace spectral
}  // namespace fastgp
