// Host function of the `combine` family (pixelwise_combine) for every device: it checks the
// arguments, brings x to its row format (csrc/fastgp/rows.h), allocates the output and calls the
// launch of the tensors' device (csrc/cpu/combine.cpp, csrc/cuda/combine.cu). Schema in
// csrc/ops.cpp.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdint>

#include "fastgp/combine.h"
#include "fastgp/rows.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

void check_pairs(const char* op, const at::Tensor& x, const at::Tensor& pairs, int64_t mode) {
  check_float_input(op, "x", x);
  TORCH_CHECK(pairs.scalar_type() == at::kLong, "fastgp::", op,
              ": pairs must be an int64 tensor, got ", pairs.scalar_type());
  TORCH_CHECK(pairs.dim() == 2 && pairs.size(1) == 2, "fastgp::", op,
              ": pairs must have shape [P, 2], got ", pairs.sizes());
  check_same_device(op, "pairs", pairs, "x", x);
  TORCH_CHECK(mode >= combine::kMean && mode <= combine::kOr, "fastgp::", op,
              ": mode must be 0 (mean), 1 (min), 2 (max), 3 (and) or 4 (or), got ", mode);
}

// The kernels read rows pairs[p, 0] and pairs[p, 1] of x: an index outside [0, B) would read
// outside x. The CPU launch checks while it reads the pairs; for a GPU this reduction and its host
// sync check before any launch, so that a bad call is one clear error (a failed
// CUDA_KERNEL_ASSERT would poison the whole CUDA context). The public layer (fastgp/combine.py)
// has checked user input already: this guards the raw op's memory safety.
void check_pair_range_on_device(const char* op, const at::Tensor& pairs, int64_t B) {
  if (pairs.is_cpu()) return;
  const at::Tensor outside = pairs.lt(0).logical_or_(pairs.ge(B));
  TORCH_CHECK(!outside.any().item<bool>(), "fastgp::", op, ": pairs must hold indices in [0, ", B,
              "), got ", pairs.masked_select(outside)[0].item<int64_t>());
}

at::Tensor pixelwise_combine(const at::Tensor& x_in, const at::Tensor& pairs_in, int64_t mode,
                             double threshold) {
  check_pairs("pixelwise_combine", x_in, pairs_in, mode);
  const c10::OptionalDeviceGuard guard(launch_device(x_in));
  const c10::MemoryFormat fmt = rows_format(x_in);
  const at::Tensor x = x_in.contiguous(fmt);
  const at::Tensor pairs = pairs_in.contiguous();
  at::Tensor out = empty_rows(x, pairs.size(0), fmt);
  if (pairs.size(0) == 0) return out;
  check_pair_range_on_device("pixelwise_combine", pairs, x.size(0));
  FASTGP_LAUNCH(combine::launch_pixelwise_combine, x, x, pairs, mode, threshold, out);
  return out;
}

void register_combine(torch::Library& m) { m.impl("pixelwise_combine", &pixelwise_combine); }

}  // namespace

FASTGP_REGISTER_HOST_FUNCTIONS(register_combine)

}  // namespace fastgp
