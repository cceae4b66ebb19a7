// CPU kernels of the `correction` family: the squared norms of rows and the running minimum of the
// clamped distances with its index, the fused part of nearest_distance, whose host function
// (csrc/host/correction.cpp) visits the bank in chunks and calls these launches per chunk.
// Schema in csrc/ops.cpp, math in csrc/fastgp/correction.h.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>

#include "fastgp/correction.h"

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

}  // namespace

namespace correction {

void launch_row_sum_squares_cpu(const at::Tensor& x, const at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgp_row_sum_squares_cpu", [&] {
    sum_squares_rows(x.const_data_ptr<scalar_t>(), x.size(0), x.size(1),
                     out.mutable_data_ptr<scalar_t>());
  });
}

void launch_update_minima_cpu(const at::Tensor& dot, const at::Tensor& sa, const at::Tensor& sb,
                              int64_t j0, const at::Tensor& best, const at::Tensor& best_j) {
  AT_DISPATCH_FLOATING_TYPES(dot.scalar_type(), "fastgp_update_minima_cpu", [&] {
    update_minima(dot.const_data_ptr<scalar_t>(), sa.const_data_ptr<scalar_t>(),
                  sb.const_data_ptr<scalar_t>(), dot.size(0), dot.size(1), j0,
                  best.mutable_data_ptr<scalar_t>(), best_j.mutable_data_ptr<int64_t>());
  });
}

}  // namespace correction
}  // namespace fastgp
