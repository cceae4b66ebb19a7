// Host function of the `correction` family (nearest_distance) for every device: it checks the
// arguments, allocates the outputs and visits the bank in chunks, each chunk's dot products from
// the BLAS (at::mm: MKL/OpenBLAS or cuBLAS), its squared norms and the running minima from the
// launches of the tensors' device (csrc/cpu/correction.cpp, csrc/cuda/correction.cu). No [B, N]
// distance matrix is ever allocated (memory O(B * chunk)). Schema in csrc/ops.cpp.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>

#include "fastgp/correction.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

void check_nearest_args(const char* op, const at::Tensor& samples, const at::Tensor& bank,
                        int64_t chunk) {
  check_float_input(op, "samples", samples);
  check_float_input(op, "bank", bank);
  TORCH_CHECK(bank.size(0) >= 1, "fastgp::", op, ": bank is empty (shape ", bank.sizes(), ")");
  TORCH_CHECK(row_numel(samples) == row_numel(bank), "fastgp::", op,
              ": samples and bank must have the same number of features per row, got ",
              row_numel(samples), " and ", row_numel(bank));
  TORCH_CHECK(samples.scalar_type() == bank.scalar_type(), "fastgp::", op,
              ": samples and bank must have the same dtype, got ", samples.scalar_type(), " and ",
              bank.scalar_type());
  check_same_device(op, "bank", bank, "samples", samples);
  TORCH_CHECK(chunk >= 1, "fastgp::", op, ": chunk must be >= 1, got ", chunk);
}

std::tuple<at::Tensor, at::Tensor> nearest_distance(const at::Tensor& samples,
                                                    const at::Tensor& bank, int64_t chunk) {
  check_nearest_args("nearest_distance", samples, bank, chunk);
  const c10::OptionalDeviceGuard guard(launch_device(samples));
  const int64_t B = samples.size(0), N = bank.size(0), D = row_numel(samples);
  const at::ScalarType acc = acc_dtype(samples.scalar_type());
  const auto acc_options = samples.options().dtype(acc);
  at::Tensor best = at::full({B}, std::numeric_limits<double>::infinity(), acc_options);
  at::Tensor best_j = at::full({B}, -1, samples.options().dtype(at::kLong));
  if (B == 0) return {best, best_j};
  // Rows as [rows, D] in acc precision (a view for contiguous float32/float64 input; the matrix
  // product needs one element order for both operands).
  const at::Tensor a = samples.reshape({B, D}).to(acc).contiguous();
  at::Tensor sa = at::empty({B}, acc_options);
  FASTGP_LAUNCH(correction::launch_row_sum_squares, a, a, sa);
  const int64_t c_max = std::min(chunk, N);
  at::Tensor sb = at::empty({c_max}, acc_options);
  for (int64_t j0 = 0; j0 < N; j0 += c_max) {
    const int64_t c = std::min(c_max, N - j0);
    // Only this chunk is reshaped / converted / copied, whatever the bank's layout or dtype.
    const at::Tensor kc = bank.narrow(0, j0, c).reshape({c, D}).to(acc).contiguous();
    const at::Tensor dot = at::mm(a, kc.t());  // [B, c]
    const at::Tensor sb_c = sb.narrow(0, 0, c);
    FASTGP_LAUNCH(correction::launch_row_sum_squares, a, kc, sb_c);
    FASTGP_LAUNCH(correction::launch_update_minima, a, dot, sa, sb_c, j0, best, best_j);
  }
  return {best, best_j};
}

void register_correction(torch::Library& m) { m.impl("nearest_distance", &nearest_distance); }

}  // namespace

FASTGP_REGISTER_HOST_FUNCTIONS(register_correction)

}  // namespace fastgp
