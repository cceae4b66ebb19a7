// CPU kernels of the `penalty` family: interpolation between real and fake samples and the
// fused gradient-norm penalty head (forward and backward), and their launches, called by the host
// functions of csrc/host/penalty.cpp. Schemas live in csrc/ops.cpp; the per-sample math in
// csrc/fastgp/penalty.h is shared with the CUDA kernels.
//
// Every kernel runs over raw memory viewed as B rows of N elements (see the layout rule in
// csrc/fastgp/tensor_utils.h). Loops live in template functions, not in the AT_DISPATCH lambdas,
// because at::parallel_for expands to `#pragma omp parallel`, which cannot appear in a lambda.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

// The AVX2 copy of the span loops needs GCC target pragmas (clang spells them differently) and
// x86 intrinsics; elsewhere only the baseline copy is built.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTGP_HAVE_AVX2_COPY 1
#include <immintrin.h>
#else
#define FASTGP_HAVE_AVX2_COPY 0
#endif

#include "fastgp/penalty.h"
#include "fastgp/philox.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

using penalty::HeadParams;

// Below this many elements a parallel region costs more than it saves: stay on one thread
// (the same value as ATen's at::internal::GRAIN_SIZE).
constexpr int64_t kGrain = 32768;

// Rows longer than this are reduced as independent chunks of kChunk elements whose partial
// sums are added in chunk order. The split depends only on N, so the result is the same for
// any thread count, and a few long rows (small B, large images) still keep every core busy.
constexpr int64_t kChunk = 16384;

// ---------------------------------------------------------------------------------------------
// Inner loops over one contiguous span (csrc/cpu/penalty_span.h), compiled twice: baseline
// x86-64 code, and AVX2 + F16C code used when the CPU has them. Only the functions of
// penalty_span.h get the AVX2 target; everything they call from other headers is inlined into
// them but stays baseline code when emitted on its own, so no AVX2 instruction can leak into
// code that runs on an older CPU.

namespace base {
#include "cpu/penalty_span.h"
}  // namespace base

#if FASTGP_HAVE_AVX2_COPY
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#define FASTGP_SPAN_F16C 1
namespace avx2 {
#include "cpu/penalty_span.h"
}  // namespace avx2
#undef FASTGP_SPAN_F16C
#pragma GCC pop_options
#endif

// Whether to run the AVX2 copy: decided once. ATEN_CPU_CAPABILITY=default (torch's own switch to
// disable its vectorized kernels) selects the baseline copy here too.
bool use_avx2() {
#if FASTGP_HAVE_AVX2_COPY
  static const bool value = [] {
    const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
    if (cap != nullptr && std::strcmp(cap, "default") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  return value;
#else
  return false;
#endif
}

// The span functions for one dtype, from the copy this CPU runs.
template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
struct SpanFns {
  acc_t (*sum_squares)(const scalar_t*, int64_t);
  void (*lerp)(scalar_t*, const scalar_t*, const scalar_t*, acc_t, int64_t);
  void (*scale)(scalar_t*, const scalar_t*, acc_t, int64_t);

  static SpanFns get() {
#if FASTGP_HAVE_AVX2_COPY
    if (use_avx2()) {
      return {&avx2::sum_squares<scalar_t, acc_t>, &avx2::lerp_span<scalar_t, acc_t>,
              &avx2::scale_span<scalar_t, acc_t>};
    }
#endif
    return {&base::sum_squares<scalar_t, acc_t>, &base::lerp_span<scalar_t, acc_t>,
            &base::scale_span<scalar_t, acc_t>};
  }
};

// Runs f(row, col, len) over the B*N elements split into equal parallel ranges; a range may
// start or end inside a row, so rows of any length parallelize (B = 1 uses both cores too).
template <typename F>
void parallel_row_segments(int64_t B, int64_t N, const F& f) {
  if (B == 0 || N == 0) return;
  at::parallel_for(0, B * N, kGrain, [&](int64_t begin, int64_t end) {
    int64_t row = begin / N;
    int64_t col = begin - row * N;
    while (begin < end) {
      const int64_t len = std::min(N - col, end - begin);
      f(row, col, len);
      begin += len;
      ++row;
      col = 0;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Kernels on raw [B, N] memory.

template <typename scalar_t>
void interpolate_kernel(const scalar_t* real, const scalar_t* fake, const scalar_t* alpha,
                        scalar_t* out, int64_t B, int64_t N) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto fns = SpanFns<scalar_t>::get();
  parallel_row_segments(B, N, [&](int64_t row, int64_t col, int64_t len) {
    const int64_t off = row * N + col;
    fns.lerp(out + off, real + off, fake + off, static_cast<acc_t>(alpha[row]), len);
  });
}

// alpha[b] = (scalar_t) tl.rand(seed, b): one Philox evaluation per sample.
template <typename scalar_t>
void fill_alpha_kernel(uint64_t seed, scalar_t* alpha, int64_t B) {
  at::parallel_for(0, B, /*grain_size=*/4096, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      alpha[b] = static_cast<scalar_t>(philox::uniform(seed, static_cast<uint32_t>(b)));
    }
  });
}

template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
void grad_norm_forward_kernel(const scalar_t* grad, int64_t B, int64_t N,
                              const HeadParams<acc_t>& params, acc_t* penalty_out,
                              acc_t* norm_out) {
  const auto fns = SpanFns<scalar_t>::get();
  const int64_t chunks = std::max<int64_t>(1, (N + kChunk - 1) / kChunk);
  if (chunks == 1) {
    // Whole rows per task; several short rows per task so a task is worth a thread.
    const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1));
    at::parallel_for(0, B, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const acc_t s = fns.sum_squares(grad + b * N, N);
        penalty::head_forward_row(s, grad + b * N, N, params, penalty_out + b, norm_out + b);
      }
    });
    return;
  }
  // Long rows: one task per (row, chunk), then each row adds its partials in order.
  std::vector<acc_t> partial(static_cast<size_t>(B * chunks));
  at::parallel_for(0, B * chunks, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / chunks;
      const int64_t start = (t - b * chunks) * kChunk;
      const int64_t len = std::min(kChunk, N - start);
      partial[t] = fns.sum_squares(grad + b * N + start, len);
    }
  });
  for (int64_t b = 0; b < B; ++b) {
    acc_t s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[b * chunks + c];
    penalty::head_forward_row(s, grad + b * N, N, params, penalty_out + b, norm_out + b);
  }
}

template <typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
void grad_norm_backward_kernel(const acc_t* grad_penalty, const scalar_t* grad,
                               const acc_t* norm, int64_t B, int64_t N,
                               const HeadParams<acc_t>& params, scalar_t* grad_in) {
  const auto fns = SpanFns<scalar_t>::get();
  parallel_row_segments(B, N, [&](int64_t row, int64_t col, int64_t len) {
    // Recomputed per segment (a division): cheaper than a separate pass over B.
    const acc_t scale = penalty::head_backward_scale(grad_penalty[row], norm[row], params);
    const int64_t off = row * N + col;
    fns.scale(grad_in + off, grad + off, scale, len);
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launches: dtype dispatch onto the kernels above.

namespace penalty {

void launch_interpolate_cpu(const at::Tensor& real, const at::Tensor& fake,
                            const at::Tensor& alpha, const at::Tensor& out) {
  const int64_t B = num_rows(real), N = row_numel(real);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, real.scalar_type(), "fastgp_interpolate_cpu", [&] {
        interpolate_kernel<scalar_t>(real.const_data_ptr<scalar_t>(),
                                     fake.const_data_ptr<scalar_t>(),
                                     alpha.const_data_ptr<scalar_t>(),
                                     out.mutable_data_ptr<scalar_t>(), B, N);
      });
}

void launch_interpolate_random_cpu(const at::Tensor& real, const at::Tensor& fake,
                                   const at::Tensor& seed, const at::Tensor& alpha,
                                   const at::Tensor& out) {
  const uint64_t s = static_cast<uint64_t>(*seed.const_data_ptr<int64_t>());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, real.scalar_type(), "fastgp_interpolate_random_cpu", [&] {
        fill_alpha_kernel<scalar_t>(s, alpha.mutable_data_ptr<scalar_t>(), num_rows(real));
      });
  // Uses the rounded alpha just written, so out is exactly consistent with the returned alpha.
  launch_interpolate_cpu(real, fake, alpha, out);
}

void launch_grad_norm_penalty_forward_cpu(const at::Tensor& grad, double center, bool one_sided,
                                          const at::Tensor& penalty, const at::Tensor& norm) {
  const int64_t B = num_rows(grad), N = row_numel(grad);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        grad_norm_forward_kernel<scalar_t>(
            grad.const_data_ptr<scalar_t>(), B, N, make_head_params<acc_t>(center, one_sided),
            penalty.mutable_data_ptr<acc_t>(), norm.mutable_data_ptr<acc_t>());
      });
}

void launch_grad_norm_penalty_backward_cpu(const at::Tensor& grad_penalty, const at::Tensor& grad,
                                           const at::Tensor& norm, double center, bool one_sided,
                                           const at::Tensor& grad_in) {
  const int64_t B = num_rows(grad), N = row_numel(grad);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        grad_norm_backward_kernel<scalar_t>(
            grad_penalty.const_data_ptr<acc_t>(), grad.const_data_ptr<scalar_t>(),
            norm.const_data_ptr<acc_t>(), B, N, make_head_params<acc_t>(center, one_sided),
            grad_in.mutable_data_ptr<scalar_t>());
      });
}

}  // namespace penalty
}  // namespace fastgp
