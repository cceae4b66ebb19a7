// CPU kernel of the `combine` family: pixel-wise combinations of pairs of samples, gathering the
// two rows and combining them in one pass; its launch is called by the host function of
// csrc/host/combine.cpp. Schema in csrc/ops.cpp, math in csrc/fastgp/combine.h.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

#include "fastgp/combine.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

constexpr int64_t kGrain = 32768;

// The mode is a template parameter so the inner loop has no switch and vectorizes.
template <typename scalar_t, int64_t kMode>
void combine_kernel(const scalar_t* x, const int64_t* pairs, int64_t P, int64_t N,
                    double threshold, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t t = static_cast<acc_t>(threshold);
  const int64_t grain = std::max<int64_t>(1, kGrain / std::max<int64_t>(N, 1));
  at::parallel_for(0, P, grain, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t* a = x + pairs[2 * p] * N;
      const scalar_t* b = x + pairs[2 * p + 1] * N;
      scalar_t* o = out + p * N;
      for (int64_t i = 0; i < N; ++i) {
        o[i] = static_cast<scalar_t>(
            combine::apply<acc_t>(kMode, static_cast<acc_t>(a[i]), static_cast<acc_t>(b[i]), t));
      }
    }
  });
}

}  // namespace

namespace combine {

void launch_pixelwise_combine_cpu(const at::Tensor& x, const at::Tensor& pairs, int64_t mode,
                                  double threshold, const at::Tensor& out) {
  const int64_t B = x.size(0), P = pairs.size(0), N = row_numel(x);
  const int64_t* pp = pairs.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < 2 * P; ++i) {
    TORCH_CHECK(pp[i] >= 0 && pp[i] < B, "fastgp::pixelwise_combine: pairs must hold indices in [0, ",
                B, "), got ", pp[i]);
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastgp_combine_cpu", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op_ = out.mutable_data_ptr<scalar_t>();
    const double t = threshold;
    switch (mode) {
      case kMean: combine_kernel<scalar_t, kMean>(xp, pp, P, N, t, op_); break;
      case kMin: combine_kernel<scalar_t, kMin>(xp, pp, P, N, t, op_); break;
      case kMax: combine_kernel<scalar_t, kMax>(xp, pp, P, N, t, op_); break;
      case kAnd: combine_kernel<scalar_t, kAnd>(xp, pp, P, N, t, op_); break;
      default: combine_kernel<scalar_t, kOr>(xp, pp, P, N, t, op_); break;
    }
  });
}

}  // namespace combine
}  // namespace fastgp
