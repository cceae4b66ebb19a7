// CPU kernels of the `select` family: Fake-As-Real top-k selection fused with the gather of the
// selected rows (and, for far_batch, with the copy of the real rows into the same output batch).
// Schemas and semantics in csrc/ops.cpp; the candidate order in csrc/fastgp/select.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <tuple>
#include <vector>

#include "fastgp/rows.h"
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

// The shared body of far_select (real undefined) and far_batch.
std::tuple<at::Tensor, at::Tensor> far_gather_cpu(const char* op, const at::Tensor* real_in,
                                                  const at::Tensor& logits,
                                                  const at::Tensor& candidates_in, int64_t k) {
  check_far_args(op, logits, candidates_in, k);
  if (real_in != nullptr) check_far_real(op, *real_in, candidates_in);
  const c10::MemoryFormat fmt = rows_format(candidates_in);
  const at::Tensor candidates = candidates_in.contiguous(fmt);
  const at::Tensor real = real_in != nullptr ? real_in->contiguous(fmt) : at::Tensor();
  const int64_t M = candidates.size(0), R = real.defined() ? real.size(0) : 0;

  at::Tensor indices = at::empty({k}, logits.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "fastgp_far_cpu",
                                  [&] {
                                    select_lowest<scalar_t>(logits.const_data_ptr<scalar_t>(),
                                                            logits.stride(0), M, k,
                                                            indices.mutable_data_ptr<int64_t>());
                                  });

  at::Tensor out = empty_rows(candidates, R + k, fmt);
  const int64_t row_bytes = row_numel(candidates) * static_cast<int64_t>(candidates.element_size());
  gather_rows(R > 0 ? static_cast<const char*>(real.const_data_ptr()) : nullptr, R,
              static_cast<const char*>(candidates.const_data_ptr()),
              indices.const_data_ptr<int64_t>(), k, row_bytes,
              static_cast<char*>(out.mutable_data_ptr()));
  return {out, indices};
}

std::tuple<at::Tensor, at::Tensor> far_select_cpu(const at::Tensor& logits,
                                                  const at::Tensor& candidates, int64_t k) {
  return far_gather_cpu("far_select", nullptr, logits, candidates, k);
}

std::tuple<at::Tensor, at::Tensor> far_batch_cpu(const at::Tensor& real, const at::Tensor& logits,
                                                 const at::Tensor& candidates, int64_t k) {
  return far_gather_cpu("far_batch", &real, logits, candidates, k);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CPU, m) {
  m.impl("far_select", &far_select_cpu);
  m.impl("far_batch", &far_batch_cpu);
}

}  // namespace fastgp
