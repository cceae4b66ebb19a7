// Host functions of the `spectral` family (spectral_power_iteration and its grouped form): one
// per op for every device. They check the group, give every weight a unit column stride, allocate
// sigma and call the launch of the tensors' device (csrc/cpu/spectral.cpp, csrc/cuda/spectral.cu).
// Schemas in csrc/ops.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "fastgp/spectral.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

// One weight matrix [h, w] per u [h] and v [w] buffer, all of one floating dtype and device, u
// and v contiguous (they are updated in place).
void check_group(const char* op, at::TensorList weights, at::TensorList us, at::TensorList vs,
                 int64_t n_iterations, double eps) {
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

// The kernels read W rows with unit column stride: a contiguous copy otherwise (read only).
std::vector<at::Tensor> as_row_major(at::TensorList weights) {
  std::vector<at::Tensor> out;
  out.reserve(weights.size());
  for (const auto& W : weights) {
    out.push_back(W.size(1) <= 1 || W.stride(1) == 1 ? W : W.contiguous());
  }
  return out;
}

at::Tensor power_iteration(const char* op, at::TensorList weights, at::TensorList us,
                           at::TensorList vs, int64_t n_iterations, double eps) {
  check_group(op, weights, us, vs, n_iterations, eps);
  if (weights.empty()) return at::empty({0}, at::TensorOptions().dtype(at::kFloat));
  const c10::OptionalDeviceGuard guard(launch_device(weights[0]));
  const std::vector<at::Tensor> W = as_row_major(weights);
  at::Tensor sigma = at::empty({static_cast<int64_t>(weights.size())},
                               weights[0].options().dtype(acc_dtype(weights[0].scalar_type())));
  FASTGP_LAUNCH(spectral::launch_spectral_power_iteration, weights[0], W, us, vs, n_iterations,
                eps, sigma);
  return sigma;
}

at::Tensor spectral_power_iteration(const at::Tensor& weight, const at::Tensor& u,
                                    const at::Tensor& v, int64_t n_iterations, double eps) {
  return power_iteration("spectral_power_iteration", {weight}, {u}, {v}, n_iterations, eps)
      .squeeze(0);
}

at::Tensor spectral_power_iteration_grouped(at::TensorList weights, at::TensorList us,
                                            at::TensorList vs, int64_t n_iterations, double eps) {
  return power_iteration("spectral_power_iteration_grouped", weights, us, vs, n_iterations, eps);
}

void register_spectral(torch::Library& m) {
  m.impl("spectral_power_iteration", &spectral_power_iteration);
  m.impl("spectral_power_iteration_grouped", &spectral_power_iteration_grouped);
}

}  // namespace

FASTGP_REGISTER_HOST_FUNCTIONS(register_spectral)

}  // namespace fastgp
