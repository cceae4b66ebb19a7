// Host functions of the `penalty` family (interpolate, interpolate_random, the gradient-norm
// penalty head forward and backward): one per op for every device. Each checks its arguments,
// chooses the layout (csrc/fastgp/tensor_utils.h), allocates the outputs and calls the launch of
// the tensors' device (csrc/cpu/penalty.cpp, csrc/cuda/penalty.cu). Schemas in csrc/ops.cpp; the
// autograd of the head ops in csrc/autograd/penalty.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "fastgp/penalty.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

// real and fake: one floating dtype, shape and device.
void check_real_fake(const char* op, const at::Tensor& real, const at::Tensor& fake) {
  check_float_input(op, "real", real);
  TORCH_CHECK(fake.sizes() == real.sizes(), "fastgp::", op,
              ": real and fake must have the same shape, got ", real.sizes(), " and ",
              fake.sizes());
  TORCH_CHECK(fake.scalar_type() == real.scalar_type(), "fastgp::", op,
              ": real and fake must have the same dtype, got ", real.scalar_type(), " and ",
              fake.scalar_type());
  check_same_device(op, "fake", fake, "real", real);
}

// The seed of interpolate_random: one int64 on the input's device (the CUDA kernel reads it
// from device memory, so drawing a new seed on the GPU never syncs with the host).
void check_seed(const char* op, const at::Tensor& seed, const at::Tensor& real) {
  TORCH_CHECK(seed.scalar_type() == at::kLong, "fastgp::", op,
              ": seed must be an int64 tensor, got ", seed.scalar_type());
  TORCH_CHECK(seed.numel() == 1, "fastgp::", op,
              ": seed must have exactly one element, got shape ", seed.sizes());
  check_same_device(op, "seed", seed, "real", real);
}

at::Tensor interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  check_real_fake("interpolate", real, fake);
  check_row_vector("interpolate", "alpha", alpha, num_rows(real), real.scalar_type(), real);
  const c10::OptionalDeviceGuard guard(launch_device(real));
  PairLayout t = prepare_pair(real, fake);
  if (t.out.numel() == 0) return t.out;
  FASTGP_LAUNCH(penalty::launch_interpolate, real, t.a, t.b, alpha.contiguous(), t.out);
  return t.out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_random(const at::Tensor& real,
                                                      const at::Tensor& fake,
                                                      const at::Tensor& seed) {
  constexpr const char* op = "interpolate_random";
  check_real_fake(op, real, fake);
  check_seed(op, seed, real);
  const int64_t B = num_rows(real);
  TORCH_CHECK(B <= (int64_t{1} << 31), "fastgp::", op, ": batch size ", B,
              " exceeds 2^31, the range of the 32-bit Philox counter shared with Triton");
  const c10::OptionalDeviceGuard guard(launch_device(real));
  PairLayout t = prepare_pair(real, fake);
  at::Tensor alpha = at::empty({B}, real.options());
  if (B == 0) return {t.out, alpha};
  // alpha is drawn even when a sample has no elements (N == 0): the launch writes it first.
  FASTGP_LAUNCH(penalty::launch_interpolate_random, real, t.a, t.b, seed.contiguous(), alpha,
                t.out);
  return {t.out, alpha};
}

std::tuple<at::Tensor, at::Tensor> grad_norm_penalty_forward(const at::Tensor& grad,
                                                             double center, bool one_sided) {
  check_float_input("grad_norm_penalty_forward", "grad", grad);
  const c10::OptionalDeviceGuard guard(launch_device(grad));
  const int64_t B = num_rows(grad);
  const at::Tensor g = is_sample_major_dense(grad) ? grad : grad.contiguous();
  const auto acc_options = grad.options().dtype(acc_dtype(grad.scalar_type()));
  at::Tensor penalty = at::empty({B}, acc_options);
  at::Tensor norm = at::empty({B}, acc_options);
  if (B == 0) return {penalty, norm};
  FASTGP_LAUNCH(penalty::launch_grad_norm_penalty_forward, grad, g, center, one_sided, penalty,
                norm);
  return {penalty, norm};
}

at::Tensor grad_norm_penalty_backward(const at::Tensor& grad_penalty, const at::Tensor& grad,
                                      const at::Tensor& norm, double center, bool one_sided) {
  constexpr const char* op = "grad_norm_penalty_backward";
  check_float_input(op, "grad", grad);
  const int64_t B = num_rows(grad);
  const at::ScalarType acc = acc_dtype(grad.scalar_type());
  check_row_vector(op, "grad_penalty", grad_penalty, B, acc, grad);
  check_row_vector(op, "norm", norm, B, acc, grad);
  const c10::OptionalDeviceGuard guard(launch_device(grad));
  PairLayout t = prepare_single(grad);
  if (t.out.numel() == 0) return t.out;
  // grad_penalty is often an expanded scalar (the backward of .mean()): make it [B] memory.
  FASTGP_LAUNCH(penalty::launch_grad_norm_penalty_backward, grad, grad_penalty.contiguous(), t.a,
                norm.contiguous(), center, one_sided, t.out);
  return t.out;
}

void register_penalty(torch::Library& m) {
  m.impl("interpolate", &interpolate);
  m.impl("interpolate_random", &interpolate_random);
  m.impl("grad_norm_penalty_forward", &grad_norm_penalty_forward);
  m.impl("grad_norm_penalty_backward", &grad_norm_penalty_backward);
}

}  // namespace

FASTGP_REGISTER_HOST_FUNCTIONS(register_penalty)

}  // namespace fastgp
