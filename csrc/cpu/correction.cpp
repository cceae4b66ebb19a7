// CPU kernel of the `correction` family: the distance of each sample to its nearest row of a bank,
// visiting the bank in chunks. The dot products of a chunk come from the BLAS (at::mm); the fused
// part is the bank rows' squared norms, the clamped distance and the running minimum with its
// index, so no [B, N] distance matrix is ever allocated (memory O(B * chunk)).
// Schema in csrc/ops.cpp, math in csrc/fastgp/correction.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "fastgp/correction.h"
#include "fastgp/rows.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

// Eight independent partial sums: without -ffast-math the compiler may not reorder one running
// sum, so a single accumulator runs at one add per cycle; eight lanes let it vectorize.
template <typename acc_t>
acc_t row_sum_squares(const acc_t* x, int64_t D) {
  acc_t lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= D; i += 8) {
    for (int l = 0; l < 8; ++l) lane[l] += x[i + l] * x[i + l];
  }
  acc_t s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  for (; i < D; ++i) s += x[i] * x[i];
  return s;
}

// Squared norms of `rows` rows of D elements.
template <typename acc_t>
void sum_squares_rows(const acc_t* x, int64_t rows, int64_t D, acc_t* out) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(D, 1));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) out[r] = row_sum_squares(x + r * D, D);
  });
}

// Folds one chunk (columns j0 .. j0 + c - 1 of the bank) into the running minima. Serial on
// purpose: it is B * c compare-and-selects (microseconds), and every parallel region costs a
// barrier, which on a loaded machine (a thread descheduled) can cost more than the work; the
// chunk loop already alternates BLAS threads and the norm pass.
template <typename acc_t>
void update_minima(const acc_t* dot, const acc_t* sa, const acc_t* sb, int64_t B, int64_t c,
                   int64_t j0, acc_t* best, int64_t* best_j) {
  for (int64_t b = 0; b < B; ++b) {
    acc_t m = best[b];
    int64_t mj = best_j[b];
    const acc_t* row = dot + b * c;
    for (int64_t j = 0; j < c; ++j) {
      const acc_t d = correction::clamped_distance(sa[b], sb[j], row[j]);
      if (correction::improves(d, m, mj)) {
        m = d;
        mj = j0 + j;
      }
    }
    best[b] = m;
    best_j[b] = mj;
  }
}

std::tuple<at::Tensor, at::Tensor> nearest_distance_cpu(const at::Tensor& samples,
                                                        const at::Tensor& bank, int64_t chunk) {
  constexpr const char* op = "nearest_distance";
  check_nearest_args(op, samples, bank, chunk);
  const int64_t B = samples.size(0), N = bank.size(0), D = row_numel(samples);
  const at::ScalarType acc = acc_dtype(samples.scalar_type());
  // Rows as [rows, D] in acc precision (a view for contiguous float32/float64 input; the matrix
  // product needs one element order for both operands).
  const at::Tensor a = samples.reshape({B, D}).to(acc).contiguous();
  at::Tensor best = at::empty({B}, samples.options().dtype(acc));
  at::Tensor best_j = at::empty({B}, samples.options().dtype(at::kLong));
  std::fill_n(best_j.mutable_data_ptr<int64_t>(), B, int64_t{-1});
  if (B == 0) return {best, best_j};

  AT_DISPATCH_FLOATING_TYPES(acc, "fastgp_nearest_distance_cpu", [&] {
    using acc_t = scalar_t;
    std::vector<acc_t> sa(static_cast<size_t>(B));
    sum_squares_rows(a.const_data_ptr<acc_t>(), B, D, sa.data());
    std::fill_n(best.mutable_data_ptr<acc_t>(), B, std::numeric_limits<acc_t>::infinity());
    const int64_t c_max = std::min(chunk, N);
    std::vector<acc_t> sb(static_cast<size_t>(c_max));
    for (int64_t j0 = 0; j0 < N; j0 += c_max) {
      const int64_t c = std::min(c_max, N - j0);
      // Only this chunk is reshaped / converted / copied, whatever the bank's layout or dtype.
      const at::Tensor kc = bank.narrow(0, j0, c).reshape({c, D}).to(acc).contiguous();
      const at::Tensor dot = at::mm(a, kc.t());  // [B, c], the BLAS
      sum_squares_rows(kc.const_data_ptr<acc_t>(), c, D, sb.data());
      update_minima(dot.const_data_ptr<acc_t>(), sa.data(), sb.data(), B, c, j0,
                    best.mutable_data_ptr<acc_t>(), best_j.mutable_data_ptr<int64_t>());
    }
  });
  return {best, best_j};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CPU, m) { m.impl("nearest_distance", &nearest_distance_cpu); }

}  // namespace fastgp
