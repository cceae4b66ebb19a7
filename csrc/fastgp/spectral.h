// Math of the `spectral` family (power-iteration spectral normalization) shared by the CPU and
// CUDA kernels, and the interface of their launches.
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

#include <cstdint>

#include "fastgp/macros.h"
#include "fastgp/math.h"

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

// The per-device launch of both ops (csrc/cpu/spectral.cpp, csrc/cuda/spectral.cu), called by the
// host functions of csrc/host/spectral.cpp with checked arguments: G >= 1 matrices [h, w] of one
// floating dtype with unit column stride, their u [h] and v [w] (contiguous, the dtype of W,
// updated in place), sigma [G] allocated in acc dtype.
void launch_spectral_power_iteration_cpu(at::TensorList weights, at::TensorList us,
                                         at::TensorList vs, int64_t n_iterations, double eps,
                                         const at::Tensor& sigma);
void launch_spectral_power_iteration_cuda(at::TensorList weights, at::TensorList us,
                                          at::TensorList vs, int64_t n_iterations, double eps,
                                          const at::Tensor& sigma);

}  // namespace spectral
}  // namespace fastgp
