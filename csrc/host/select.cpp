// Host functions of the `select` family (far_select, far_batch): one per op for every device.
// They check the arguments, bring the rows to one format (csrc/fastgp/rows.h), allocate the
// outputs and call the launch of the tensors' device (csrc/cpu/select.cpp, csrc/cuda/select.cu).
// Schemas in csrc/ops.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "fastgp/rows.h"
#include "fastgp/select.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

// logits [M] and candidates [M, ...] of floating dtypes on one device, 1 <= k <= M.
void check_far_args(const char* op, const at::Tensor& logits, const at::Tensor& candidates,
                    int64_t k) {
  check_float_input(op, "candidates", candidates);
  TORCH_CHECK(is_supported_float(logits.scalar_type()), "fastgp::", op,
              ": logits must be float16, bfloat16, float32 or float64, got ", logits.scalar_type());
  TORCH_CHECK(logits.dim() == 1 && logits.size(0) == candidates.size(0), "fastgp::", op,
              ": logits must have shape [M] with M = ", candidates.size(0),
              " (one logit per candidate), got ", logits.sizes());
  check_same_device(op, "logits", logits, "candidates", candidates);
  TORCH_CHECK(k >= 1 && k <= candidates.size(0), "fastgp::", op,
              ": k must be in [1, M] with M = ", candidates.size(0), " candidates, got ", k);
}

// real [R, ...]: the per-sample shape, dtype and device of candidates.
void check_far_real(const char* op, const at::Tensor& real, const at::Tensor& candidates) {
  TORCH_CHECK(real.dim() == candidates.dim() && real.sizes().slice(1) == candidates.sizes().slice(1),
              "fastgp::", op, ": real must have the per-sample shape of candidates, got ",
              real.sizes(), " and ", candidates.sizes());
  TORCH_CHECK(real.scalar_type() == candidates.scalar_type(), "fastgp::", op,
              ": real and candidates must have the same dtype, got ", real.scalar_type(), " and ",
              candidates.scalar_type());
  check_same_device(op, "real", real, "candidates", candidates);
}

// far_select (real_in null) and far_batch.
std::tuple<at::Tensor, at::Tensor> far_gather(const char* op, const at::Tensor* real_in,
                                              const at::Tensor& logits,
                                              const at::Tensor& candidates_in, int64_t k) {
  check_far_args(op, logits, candidates_in, k);
  if (real_in != nullptr) check_far_real(op, *real_in, candidates_in);
  const c10::OptionalDeviceGuard guard(launch_device(candidates_in));
  const c10::MemoryFormat fmt = rows_format(candidates_in);
  const at::Tensor candidates = candidates_in.contiguous(fmt);
  const at::Tensor real = real_in != nullptr ? real_in->contiguous(fmt) : at::Tensor();
  const int64_t R = real.defined() ? real.size(0) : 0;
  at::Tensor indices = at::empty({k}, logits.options().dtype(at::kLong));
  at::Tensor out = empty_rows(candidates, R + k, fmt);
  FASTGP_LAUNCH(select::launch_far_gather, candidates, logits, k, real, candidates, indices, out);
  return {out, indices};
}

std::tuple<at::Tensor, at::Tensor> far_select(const at::Tensor& logits,
                                              const at::Tensor& candidates, int64_t k) {
  return far_gather("far_select", nullptr, logits, candidates, k);
}

std::tuple<at::Tensor, at::Tensor> far_batch(const at::Tensor& real, const at::Tensor& logits,
                                             const at::Tensor& candidates, int64_t k) {
  return far_gather("far_batch", &real, logits, candidates, k);
}

void register_select(torch::Library& m) {
  m.impl("far_select", &far_select);
  m.impl("far_batch", &far_batch);
}

}  // namespace

FASTGP_REGISTER_HOST_FUNCTIONS(register_select)

}  // namespace fastgp
