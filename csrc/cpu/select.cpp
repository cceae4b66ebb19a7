// CPU kernels of the `select` family: Fake-As-Real top-k selection fused with the gather of the
// selected rows (and, for far_batch, with the copy of the real rows into the same output batch).
// The launch is called by the host functions of csrc/host/select.cpp. Schemas and semantics in
// csrc/ops.cpp; the candidate order in csrc/fastgp/select.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "fastgp/select.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

// Bytes copied per parallel task at least (ATen's grain of 32768 elements, in bytes).
constexpr int64_t kGrainBytes = 32768 * 4;

// The first k candidates in the order of select::comes_before: partial_sort, O(M log k).
template <typename scalar_t>
void select_lowest(const scalar_t* logits, int64_t stride, int64_t M, int64_t k, int64_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> values(static_cast<size_t>(M));
  for (int64_t i = 0; i < M; ++i) values[i] = static_cast<acc_t>(logits[i * stride]);
  std::vector<int64_t> order(static_cast<size_t>(M));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
    return select::comes_before(values[a], a, values[b], b);
  });
  std::copy(order.begin(), order.begin() + k, out);
}

// Row r of out (R + k rows of `row_bytes`) is row r of real for r < R, else candidates row
// indices[r - R]: one memcpy per row, rows split among threads.
void gather_rows(const char* real, int64_t R, const char* candidates, const int64_t* indices,
                 int64_t k, int64_t row_bytes, char* out) {
  if (row_bytes == 0) return;
  const int64_t grain = std::max<int64_t>(1, kGrainBytes / row_bytes);
  at::parallel_for(0, R + k, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const char* src = r < R ? real + r * row_bytes : candidates + indices[r - R] * row_bytes;
      std::memcpy(out + r * row_bytes, src, static_cast<size_t>(row_bytes));
    }
  });
}

}  // namespace

namespace select {

void launch_far_gather_cpu(const at::Tensor& logits, int64_t k, const at::Tensor& real,
                           const at::Tensor& candidates, const at::Tensor& indices,
                           const at::Tensor& out) {
  const int64_t M = candidates.size(0), R = real.defined() ? real.size(0) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "fastgp_far_cpu",
                                  [&] {
                                    select_lowest<scalar_t>(logits.const_data_ptr<scalar_t>(),
                                                            logits.stride(0), M, k,
                                                            indices.mutable_data_ptr<int64_t>());
                                  });
  const int64_t row_bytes = row_numel(candidates) * static_cast<int64_t>(candidates.element_size());
  gather_rows(R > 0 ? static_cast<const char*>(real.const_data_ptr()) : nullptr, R,
              static_cast<const char*>(candidates.const_data_ptr()),
              indices.const_data_ptr<int64_t>(), k, row_bytes,
              static_cast<char*>(out.mutable_data_ptr()));
}

}  // namespace select
}  // namespace fastgp
