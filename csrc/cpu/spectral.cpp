// CPU kernels of the `spectral` family: fused power iterations of spectral normalization, for
// one matrix and for a group of matrices of different shapes in one parallel loop, and their
// launch, called by the host functions of csrc/host/spectral.cpp. Schemas live in csrc/ops.cpp;
// the finishing math (csrc/fastgp/spectral.h) is shared with the CUDA kernels.
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

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "fastgp/spectral.h"

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

// The work items of a group (chunks of whole rows of each matrix) and where each writes.
struct WorkItems {
  int64_t count = 0;
  int64_t max_w = 0;                    // the widest matrix (conversion buffers)
  std::vector<int64_t> matrix;          // the matrix of each item
  std::vector<int64_t> partial_offset;  // each item's partial Wᵀp in the partial buffer [count + 1]
  std::vector<int64_t> elems;           // prefix sums of the items' sizes in elements of W [count + 1]

  // Runs f(item) for every item, the threads' shares balanced by elements of W rather than by
  // item count (a group mixes items of very different sizes): thread ranges split
  // [0, total elements) and each item runs in the range that holds its first element.
  template <typename F>
  void for_each(const F& f) const {
    at::parallel_for(0, elems[count], kItemElems, [&](int64_t begin, int64_t end) {
      auto it = static_cast<int64_t>(std::lower_bound(elems.begin(), elems.end() - 1, begin) -
                                     elems.begin());
      for (; it < count && elems[it] < end; ++it) f(it);
    });
  }
};

// Cuts every matrix into items of about kItemElems elements, at most kMaxItems per matrix: every
// item writes a partial Wᵀp of w values that the finish step adds up, so more items than cores
// only cost traffic. Depends on the shapes only (deterministic for any thread count).
template <typename scalar_t, typename acc_t>
WorkItems plan_items(std::vector<Matrix<scalar_t, acc_t>>& mats) {
  WorkItems items;
  for (auto& m : mats) {
    const int64_t wanted = (m.h * m.w + kItemElems - 1) / kItemElems;
    const int64_t n_items = std::max<int64_t>(1, std::min(wanted, kMaxItems));
    m.rows_per_item = std::max<int64_t>(1, (m.h + n_items - 1) / n_items);
    m.num_items = (m.h + m.rows_per_item - 1) / m.rows_per_item;
    m.first_item = items.count;
    items.count += m.num_items;
    items.max_w = std::max(items.max_w, m.w);
  }
  items.matrix.resize(static_cast<size_t>(items.count));
  items.partial_offset.assign(static_cast<size_t>(items.count) + 1, 0);
  items.elems.assign(static_cast<size_t>(items.count) + 1, 0);
  for (size_t g = 0; g < mats.size(); ++g) {
    const auto& m = mats[g];
    for (int64_t c = 0; c < m.num_items; ++c) {
      const int64_t it = m.first_item + c;
      items.matrix[it] = static_cast<int64_t>(g);
      items.partial_offset[it + 1] = items.partial_offset[it] + m.w;
      const int64_t rows = std::min(m.rows_per_item, m.h - c * m.rows_per_item);
      items.elems[it + 1] = items.elems[it] + rows * std::max<int64_t>(m.w, 1);
    }
  }
  return items;
}

// Row i of m as acc_t: the row itself, or (reduced precision) its conversion into dst, so that
// both uses of the row read it converted once.
template <typename scalar_t, typename acc_t>
inline const acc_t* row_as_acc(const Matrix<scalar_t, acc_t>& m, int64_t i, acc_t* dst) {
  const scalar_t* src = m.W + i * m.ld;
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    return src;
  } else {
    for (int64_t j = 0; j < m.w; ++j) dst[j] = static_cast<acc_t>(src[j]);
    return dst;
  }
}

// A conversion buffer of `rows` rows of the widest matrix (none for float32/float64).
template <typename scalar_t, typename acc_t>
std::vector<acc_t> row_buffer(const WorkItems& items, int64_t rows) {
  return std::vector<acc_t>(std::is_same_v<scalar_t, acc_t> ? 0 : rows * items.max_w);
}

// Zero iterations (eval mode): σ = Σ_i u_i (W_i·v). Each item sums its rows into partial[item],
// then each matrix adds its items in order.
template <typename scalar_t, typename acc_t>
void sigma_only(const std::vector<Matrix<scalar_t, acc_t>>& mats, const WorkItems& items,
                std::vector<acc_t>& partial, acc_t* sigma_out) {
  items.for_each([&](int64_t it) {
    std::vector<acc_t> buf = row_buffer<scalar_t, acc_t>(items, 1);
    const auto& m = mats[items.matrix[it]];
    const int64_t r0 = (it - m.first_item) * m.rows_per_item;
    const int64_t r1 = std::min(m.h, r0 + m.rows_per_item);
    acc_t s = 0;
    for (int64_t i = r0; i < r1; ++i) {
      s += m.u[i] * RowOps<acc_t>::dot(row_as_acc(m, i, buf.data()), m.v.data(), m.w);
    }
    partial[it] = s;
  });
  for (size_t g = 0; g < mats.size(); ++g) {
    acc_t s = 0;
    for (int64_t c = 0; c < mats[g].num_items; ++c) s += partial[mats[g].first_item + c];
    sigma_out[g] = s;
  }
}

// The pass of one iteration over the rows [r0, r1) of one item: p_i = W_i·v and the item's
// partial t = Σ p_i W_i. Groups of four rows (one pass over t per group), then the remaining rows
// one by one; buf holds four converted rows for reduced precision.
template <typename scalar_t, typename acc_t>
void item_pass(Matrix<scalar_t, acc_t>& m, int64_t r0, int64_t r1, acc_t* t, acc_t* buf) {
  std::fill(t, t + m.w, acc_t(0));
  int64_t i = r0;
  for (; i + 4 <= r1; i += 4) {
    const acc_t* rows[4] = {row_as_acc(m, i, buf), row_as_acc(m, i + 1, buf + m.w),
                            row_as_acc(m, i + 2, buf + 2 * m.w), row_as_acc(m, i + 3, buf + 3 * m.w)};
    RowOps<acc_t>::dot4(rows, m.v.data(), m.w, m.p.data() + i);
    RowOps<acc_t>::axpy4(t, m.p.data() + i, rows, m.w);
  }
  for (; i < r1; ++i) {
    const acc_t* x = row_as_acc(m, i, buf);
    m.p[i] = RowOps<acc_t>::dot(x, m.v.data(), m.w);
    RowOps<acc_t>::axpy(t, m.p[i], x, m.w);
  }
}

// One pass over every W: every item's pass, in parallel.
template <typename scalar_t, typename acc_t>
void pass_over_weights(std::vector<Matrix<scalar_t, acc_t>>& mats, const WorkItems& items,
                       std::vector<acc_t>& partial) {
  items.for_each([&](int64_t it) {
    std::vector<acc_t> buf = row_buffer<scalar_t, acc_t>(items, 4);
    auto& m = mats[items.matrix[it]];
    const int64_t r0 = (it - m.first_item) * m.rows_per_item;
    item_pass(m, r0, std::min(m.h, r0 + m.rows_per_item), partial.data() + items.partial_offset[it],
              buf.data());
  });
}

// The end of an iteration, per matrix: t = Σ partials in item order, then the normalizations
// (csrc/fastgp/spectral.h): u = p / max(‖p‖, eps), v = t / ..., σ.
template <typename scalar_t, typename acc_t>
void finish_iteration(std::vector<Matrix<scalar_t, acc_t>>& mats, const WorkItems& items,
                      const std::vector<acc_t>& partial, acc_t eps, acc_t* sigma_out) {
  at::parallel_for(0, static_cast<int64_t>(mats.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      auto& m = mats[g];
      acc_t* t = m.v.data();  // v is not needed any more this iteration: sum t into it
      std::fill(t, t + m.w, acc_t(0));
      for (int64_t c = 0; c < m.num_items; ++c) {
        const acc_t* part = partial.data() + items.partial_offset[m.first_item + c];
        for (int64_t j = 0; j < m.w; ++j) t[j] += part[j];
      }
      const auto f = spectral::finish<acc_t>(dot(m.p.data(), m.p.data(), m.h), dot(t, t, m.w), eps);
      for (int64_t i = 0; i < m.h; ++i) m.u[i] = m.p[i] * f.inv_du;
      for (int64_t j = 0; j < m.w; ++j) t[j] *= f.inv_dv;
      sigma_out[g] = f.sigma;
    }
  });
}

// The final u and v written back into the buffers, in their dtype.
template <typename scalar_t, typename acc_t>
void write_back(const std::vector<Matrix<scalar_t, acc_t>>& mats) {
  for (const auto& m : mats) {
    for (int64_t i = 0; i < m.h; ++i) m.u_out[i] = static_cast<scalar_t>(m.u[i]);
    for (int64_t j = 0; j < m.w; ++j) m.v_out[j] = static_cast<scalar_t>(m.v[j]);
  }
}

template <typename scalar_t, typename acc_t>
void power_iteration_kernel(std::vector<Matrix<scalar_t, acc_t>>& mats, int64_t n_iterations,
                            acc_t eps, acc_t* sigma_out) {
  const WorkItems items = plan_items(mats);
  // Item k's partial Wᵀp over its rows (iterations) or its partial σ (no iteration).
  std::vector<acc_t> partial(
      static_cast<size_t>(std::max<int64_t>(items.partial_offset[items.count], items.count)));
  if (n_iterations == 0) {
    sigma_only(mats, items, partial, sigma_out);
    return;
  }
  for (int64_t iteration = 0; iteration < n_iterations; ++iteration) {
    pass_over_weights(mats, items, partial);
    finish_iteration(mats, items, partial, eps, sigma_out);
  }
  write_back(mats);
}

// The iteration state of each matrix, initialized from the buffers u and v.
template <typename scalar_t, typename acc_t>
std::vector<Matrix<scalar_t, acc_t>> load_matrices(at::TensorList weights, at::TensorList us,
                                                   at::TensorList vs) {
  std::vector<Matrix<scalar_t, acc_t>> mats(weights.size());
  for (size_t g = 0; g < weights.size(); ++g) {
    auto& m = mats[g];
    m.W = weights[g].const_data_ptr<scalar_t>();
    m.h = weights[g].size(0);
    m.w = weights[g].size(1);
    m.ld = weights[g].stride(0);
    m.u_out = us[g].mutable_data_ptr<scalar_t>();
    m.v_out = vs[g].mutable_data_ptr<scalar_t>();
    const scalar_t* u0 = us[g].const_data_ptr<scalar_t>();
    const scalar_t* v0 = vs[g].const_data_ptr<scalar_t>();
    m.u.assign(u0, u0 + m.h);
    m.v.assign(v0, v0 + m.w);
    m.p.assign(static_cast<size_t>(m.h), acc_t(0));
  }
  return mats;
}

}  // namespace

namespace spectral {

void launch_spectral_power_iteration_cpu(at::TensorList weights, at::TensorList us,
                                         at::TensorList vs, int64_t n_iterations, double eps,
                                         const at::Tensor& sigma) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, weights[0].scalar_type(), "fastgp_spectral_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        auto mats = load_matrices<scalar_t, acc_t>(weights, us, vs);
        power_iteration_kernel<scalar_t, acc_t>(mats, n_iterations, static_cast<acc_t>(eps),
                                                sigma.mutable_data_ptr<acc_t>());
      });
}

}  // namespace spectral
}  // namespace fastgp
