// CPU kernels of the `spectral` family: fused power iterations of spectral normalization, for
// one matrix and for a group of matrices of different shapes in one parallel loop. Schemas live
// in csrc/ops.cpp; the finishing math (csrc/fastgp/spectral.h) is shared with the CUDA kernels.
//
// Both ops run the same engine: a list of matrices is cut into work items (matrix, chunk of
// rows); one at::parallel_for covers every item of every matrix (the multi-tensor pattern), each
// item reads its rows of W once and writes its own partial sums; a short serial step per matrix
// adds the partials in item order and normalizes. The split depends only on the shapes, so
// results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fastgp/spectral.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

// Elements of W per work item: large enough to amortize a task, small enough that a
// discriminator's layers give both cores work.
constexpr int64_t kItemElems = spectral::kItemElems;
constexpr int64_t kMaxItems = 16;

// Independent accumulators of a dot product, combined by a fixed tree: gcc vectorizes the loop
// without -ffast-math and the order of additions is the same on every run.
template <typename acc_t>
inline acc_t dot(const acc_t* __restrict__ a, const acc_t* __restrict__ b, int64_t n) {
  constexpr int kLanes = 64 / sizeof(acc_t);
  acc_t acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int j = 0; j < width; ++j) acc[j] += acc[j + width];
  }
  return acc[0];
}

// The two row loops of a pass, compiled twice by gcc (target_clones: AVX2+FMA-free AVX2 code and
// baseline code, picked once at load time by the CPU). The fixed-lane dot above keeps the same
// order of additions in both copies, so the results are identical on every x86-64 CPU.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTGP_ROW_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FASTGP_ROW_CLONES
#endif

template <typename acc_t>
struct RowOps;

// dot4: the four dot products of rows x[0..3] with b, each with exactly the lanes and tree of
// dot() (so a row's p does not depend on how rows are grouped), sharing the loads of b.
// axpy4: y += a0·x0 + a1·x1 + a2·x2 + a3·x3 added in that order (the rounding of four axpy
// calls in a row), with one load and store of y instead of four.
template <typename acc_t>
inline void dot4(const acc_t* const* x, const acc_t* __restrict__ b, int64_t n, acc_t* out) {
  constexpr int kLanes = 64 / sizeof(acc_t);
  acc_t acc[4][kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int r = 0; r < 4; ++r) {
      for (int j = 0; j < kLanes; ++j) acc[r][j] += x[r][i + j] * b[i + j];
    }
  }
  for (int r = 0; r < 4; ++r) {
    for (int64_t k = i, j = 0; k < n; ++k, ++j) acc[r][j] += x[r][k] * b[k];
    for (int width = kLanes / 2; width > 0; width /= 2) {
      for (int j = 0; j < width; ++j) acc[r][j] += acc[r][j + width];
    }
    out[r] = acc[r][0];
  }
}

#define FASTGP_ROW_OPS(T)                                                                  \
  FASTGP_ROW_CLONES T row_dot_##T(const T* a, const T* b, int64_t n) { return dot(a, b, n); } \
  FASTGP_ROW_CLONES void row_axpy_##T(T* __restrict__ y, T a, const T* __restrict__ x,        \
                                      int64_t n) {                                         \
    for (int64_t j = 0; j < n; ++j) y[j] += a * x[j];                                      \
  }                                                                                        \
  FASTGP_ROW_CLONES void row_dot4_##T(const T* const* x, const T* b, int64_t n, T* out) {   \
    dot4(x, b, n, out);                                                                    \
  }                                                                                        \
  FASTGP_ROW_CLONES void row_axpy4_##T(T* __restrict__ y, const T* a, const T* const* x,    \
                                       int64_t n) {                                        \
    const T a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];                                    \
    const T* __restrict__ x0 = x[0];                                                       \
    const T* __restrict__ x1 = x[1];                                                       \
    const T* __restrict__ x2 = x[2];                                                       \
    const T* __restrict__ x3 = x[3];                                                       \
    for (int64_t j = 0; j < n; ++j) {                                                      \
      y[j] = (((y[j] + a0 * x0[j]) + a1 * x1[j]) + a2 * x2[j]) + a3 * x3[j];               \
    }                                                                                      \
  }                                                                                        \
  template <>                                                                              \
  struct RowOps<T> {                                                                       \
    static T dot(const T* a, const T* b, int64_t n) { return row_dot_##T(a, b, n); }       \
    static void axpy(T* y, T a, const T* x, int64_t n) { row_axpy_##T(y, a, x, n); }       \
    static void dot4(const T* const* x, const T* b, int64_t n, T* out) {                   \
      row_dot4_##T(x, b, n, out);                                                          \
    }                                                                                      \
    static void axpy4(T* y, const T* a, const T* const* x, int64_t n) {                    \
      row_axpy4_##T(y, a, x, n);                                                           \
    }                                                                                      \
  };

FASTGP_ROW_OPS(float)
FASTGP_ROW_OPS(double)
#undef FASTGP_ROW_OPS

template <typename scalar_t, typename acc_t>
struct Matrix {
  const scalar_t* W;
  int64_t h, w, ld;       // rows, columns, row stride (column stride is 1)
  scalar_t* u_out;        // [h]
  scalar_t* v_out;        // [w]
  std::vector<acc_t> u, v, p;  // iteration state in acc precision
  int64_t first_item, rows_per_item, num_items;
};

template <typename scalar_t, typename acc_t>
void power_iteration_kernel(std::vector<Matrix<scalar_t, acc_t>>& mats, int64_t n_iterations,
                            acc_t eps, acc_t* sigma_out) {
  // Work items.
  int64_t items = 0;
  int64_t max_w = 0;
  for (auto& m : mats) {
    // About kItemElems per item, but at most kMaxItems items per matrix: every item writes a
    // partial Wᵀp of w values that the finish step adds up, so more items than cores need only
    // cost traffic. Depends on the shape only (deterministic for any thread count).
    const int64_t wanted = (m.h * m.w + kItemElems - 1) / kItemElems;
    const int64_t n_items = std::max<int64_t>(1, std::min(wanted, kMaxItems));
    m.rows_per_item = std::max<int64_t>(1, (m.h + n_items - 1) / n_items);
    m.num_items = (m.h + m.rows_per_item - 1) / m.rows_per_item;
    m.first_item = items;
    items += m.num_items;
    max_w = std::max(max_w, m.w);
  }
  std::vector<int64_t> item_matrix(static_cast<size_t>(items));
  std::vector<int64_t> partial_offset(static_cast<size_t>(items) + 1, 0);
  std::vector<int64_t> item_elems(static_cast<size_t>(items) + 1, 0);  // prefix sums of item sizes
  for (size_t g = 0; g < mats.size(); ++g) {
    for (int64_t c = 0; c < mats[g].num_items; ++c) {
      const int64_t it = mats[g].first_item + c;
      item_matrix[it] = static_cast<int64_t>(g);
      partial_offset[it + 1] = partial_offset[it] + mats[g].w;
      const int64_t rows = std::min(mats[g].rows_per_item, mats[g].h - c * mats[g].rows_per_item);
      item_elems[it + 1] = item_elems[it] + rows * std::max<int64_t>(mats[g].w, 1);
    }
  }
  // Runs f(item) for every item, the threads' shares balanced by elements of W rather than by
  // item count (a group mixes items of very different sizes): thread ranges split
  // [0, total elements) and each item runs in the range that holds its first element.
  auto for_items = [&](const auto& f) {
    at::parallel_for(0, item_elems[items], kItemElems, [&](int64_t begin, int64_t end) {
      auto it = static_cast<int64_t>(
          std::lower_bound(item_elems.begin(), item_elems.end() - 1, begin) - item_elems.begin());
      for (; it < items && item_elems[it] < end; ++it) f(it);
    });
  };
  // Item k's partial Wᵀp over its rows (iterations) or its partial σ (no iteration).
  std::vector<acc_t> partial(static_cast<size_t>(std::max<int64_t>(partial_offset[items], items)));

  // Runs f(row as acc_t*, i) over rows [r0, r1) of matrix m, converting reduced precision rows
  // into a buffer once so that both uses of the row read float.
  auto for_rows = [](const Matrix<scalar_t, acc_t>& m, int64_t r0, int64_t r1,
                     std::vector<acc_t>& buf, const auto& f) {
    for (int64_t i = r0; i < r1; ++i) {
      const scalar_t* row = m.W + i * m.ld;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        f(row, i);
      } else {
        for (int64_t j = 0; j < m.w; ++j) buf[j] = static_cast<acc_t>(row[j]);
        f(buf.data(), i);
      }
    }
  };

  if (n_iterations == 0) {
    for_items([&](int64_t it) {
      std::vector<acc_t> buf(std::is_same_v<scalar_t, acc_t> ? 0 : max_w);
      {
        const auto& m = mats[item_matrix[it]];
        const int64_t r0 = (it - m.first_item) * m.rows_per_item;
        acc_t s = 0;
        for_rows(m, r0, std::min(m.h, r0 + m.rows_per_item), buf,
                 [&](const acc_t* row, int64_t i) {
                   s += m.u[i] * RowOps<acc_t>::dot(row, m.v.data(), m.w);
                 });
        partial[it] = s;
      }
    });
    for (size_t g = 0; g < mats.size(); ++g) {
      acc_t s = 0;
      for (int64_t c = 0; c < mats[g].num_items; ++c) s += partial[mats[g].first_item + c];
      sigma_out[g] = s;
    }
    return;
  }

  for (int64_t iteration = 0; iteration < n_iterations; ++iteration) {
    // One pass over every W: p_i = W_i·v and the item's partial t = Σ p_i W_i.
    for_items([&](int64_t it) {
      std::vector<acc_t> buf(std::is_same_v<scalar_t, acc_t> ? 0 : 4 * max_w);
      {
        auto& m = mats[item_matrix[it]];
        const int64_t r0 = (it - m.first_item) * m.rows_per_item;
        acc_t* t = partial.data() + partial_offset[it];
        std::fill(t, t + m.w, acc_t(0));
        const int64_t r1 = std::min(m.h, r0 + m.rows_per_item);
        // Groups of four rows (one pass over t per group), then the remaining rows one by one.
        // Reduced-precision rows are converted once into buf and read twice from there.
        auto row = [&](int64_t i, int slot) -> const acc_t* {
          const scalar_t* src = m.W + i * m.ld;
          if constexpr (std::is_same_v<scalar_t, acc_t>) {
            return src;
          } else {
            acc_t* dst = buf.data() + slot * m.w;
            for (int64_t j = 0; j < m.w; ++j) dst[j] = static_cast<acc_t>(src[j]);
            return dst;
          }
        };
        int64_t i = r0;
        for (; i + 4 <= r1; i += 4) {
          const acc_t* rows[4] = {row(i, 0), row(i + 1, 1), row(i + 2, 2), row(i + 3, 3)};
          RowOps<acc_t>::dot4(rows, m.v.data(), m.w, m.p.data() + i);
          RowOps<acc_t>::axpy4(t, m.p.data() + i, rows, m.w);
        }
        for (; i < r1; ++i) {
          const acc_t* x = row(i, 0);
          m.p[i] = RowOps<acc_t>::dot(x, m.v.data(), m.w);
          RowOps<acc_t>::axpy(t, m.p[i], x, m.w);
        }
      }
    });
    // Per matrix: t = Σ partials in item order, then the normalizations (csrc/fastgp/spectral.h).
    at::parallel_for(0, static_cast<int64_t>(mats.size()), 1, [&](int64_t begin, int64_t end) {
      for (int64_t g = begin; g < end; ++g) {
        auto& m = mats[g];
        acc_t* t = m.v.data();  // v is not needed any more this iteration: sum t into it
        std::fill(t, t + m.w, acc_t(0));
        for (int64_t c = 0; c < m.num_items; ++c) {
          const acc_t* part = partial.data() + partial_offset[m.first_item + c];
          for (int64_t j = 0; j < m.w; ++j) t[j] += part[j];
        }
        const auto f = spectral::finish<acc_t>(dot(m.p.data(), m.p.data(), m.h),
                                               dot(t, t, m.w), eps);
        for (int64_t i = 0; i < m.h; ++i) m.u[i] = m.p[i] * f.inv_du;
        for (int64_t j = 0; j < m.w; ++j) t[j] *= f.inv_dv;
        sigma_out[g] = f.sigma;
      }
    });
  }
  for (auto& m : mats) {
    for (int64_t i = 0; i < m.h; ++i) m.u_out[i] = static_cast<scalar_t>(m.u[i]);
    for (int64_t j = 0; j < m.w; ++j) m.v_out[j] = static_cast<scalar_t>(m.v[j]);
  }
}

// Matrices as the kernel wants them: unit column stride (else a contiguous copy, read only).
std::vector<at::Tensor> as_row_major(at::TensorList weights) {
  std::vector<at::Tensor> out;
  out.reserve(weights.size());
  for (const auto& W : weights) {
    out.push_back(W.size(1) <= 1 || W.stride(1) == 1 ? W : W.contiguous());
  }
  return out;
}

at::Tensor run(const char* op, at::TensorList weights, at::TensorList us, at::TensorList vs,
               int64_t n_iterations, double eps) {
  spectral::check_group(op, weights, us, vs, n_iterations, eps);
  const auto W = as_row_major(weights);
  const auto dtype = weights.empty() ? at::kFloat : weights[0].scalar_type();
  at::Tensor sigma = at::empty({static_cast<int64_t>(weights.size())},
                               at::TensorOptions().dtype(acc_dtype(dtype)));
  if (weights.empty()) return sigma;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fastgp_spectral_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<Matrix<scalar_t, acc_t>> mats(W.size());
    for (size_t g = 0; g < W.size(); ++g) {
      auto& m = mats[g];
      m.W = W[g].const_data_ptr<scalar_t>();
      m.h = W[g].size(0);
      m.w = W[g].size(1);
      m.ld = W[g].stride(0);
      m.u_out = us[g].mutable_data_ptr<scalar_t>();
      m.v_out = vs[g].mutable_data_ptr<scalar_t>();
      const scalar_t* u0 = us[g].const_data_ptr<scalar_t>();
      const scalar_t* v0 = vs[g].const_data_ptr<scalar_t>();
      m.u.assign(u0, u0 + m.h);
      m.v.assign(v0, v0 + m.w);
      m.p.assign(static_cast<size_t>(m.h), acc_t(0));
    }
    power_iteration_kernel<scalar_t, acc_t>(mats, n_iterations, static_cast<acc_t>(eps),
                                            sigma.mutable_data_ptr<acc_t>());
  });
  return sigma;
}

at::Tensor spectral_power_iteration_cpu(const at::Tensor& weight, const at::Tensor& u,
                                        const at::Tensor& v, int64_t n_iterations, double eps) {
  return run("spectral_power_iteration", {weight}, {u}, {v}, n_iterations, eps).squeeze(0);
}

at::Tensor spectral_power_iteration_grouped_cpu(at::TensorList weights, at::TensorList us,
                                                at::TensorList vs, int64_t n_iterations,
                                                double eps) {
  return run("spectral_power_iteration_grouped", weights, us, vs, n_iterations, eps);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CPU, m) {
  m.impl("spectral_power_iteration", &spectral_power_iteration_cpu);
  m.impl("spectral_power_iteration_grouped", &spectral_power_iteration_grouped_cpu);
}

}  // namespace fastgp
