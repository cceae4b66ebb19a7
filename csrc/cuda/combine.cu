// CUDA kernel of the `combine` family: pixel-wise combinations of pairs of samples (gather the two
// rows and combine them in one pass); its launch is called by the host function of
// csrc/host/combine.cpp. CPU twin: csrc/cpu/combine.cpp; math: csrc/fastgp/combine.h.
// The pair indices are validated by the Python layer (fastgp/combine.py) and, before the launch,
// by the host function (a device assert would poison the CUDA context).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cstdint>

#include "fastgp/combine.h"
#include "fastgp/tensor_utils.h"
#include "launch.cuh"

namespace fastgp {
namespace {

// blockIdx.y walks pairs, x-threads walk the N elements of a row.
template <typename scalar_t, int64_t kMode>
__global__ void combine_kernel(const scalar_t* __restrict__ x, const int64_t* __restrict__ pairs,
                               int64_t P, int64_t N, double threshold,
                               scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t t = static_cast<acc_t>(threshold);
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t col_step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t p = blockIdx.y; p < P; p += gridDim.y) {
    const int64_t i = pairs[2 * p], j = pairs[2 * p + 1];
    const scalar_t* a = x + i * N;
    const scalar_t* b = x + j * N;
    scalar_t* o = out + p * N;
    for (int64_t c = col0; c < N; c += col_step) {
      o[c] = static_cast<scalar_t>(
          combine::apply<acc_t>(kMode, static_cast<acc_t>(a[c]), static_cast<acc_t>(b[c]), t));
    }
  }
}

}  // namespace

namespace combine {

void launch_pixelwise_combine_cuda(const at::Tensor& x, const at::Tensor& pairs, int64_t mode,
                                   double threshold, const at::Tensor& out) {
  const int64_t P = pairs.size(0), N = row_numel(x);
  if (N == 0) return;
  const int64_t col_blocks = std::min<int64_t>((N + kThreads - 1) / kThreads, 64);
  const dim3 grid(static_cast<unsigned int>(col_blocks),
                  static_cast<unsigned int>(std::min(P, kMaxGridY)));
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "fastgp_combine_cuda", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const int64_t* pp = pairs.const_data_ptr<int64_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    switch (mode) {
      case kMean:
        combine_kernel<scalar_t, kMean><<<grid, kThreads, 0, stream>>>(xp, pp, P, N, threshold, o);
        break;
      case kMin:
        combine_kernel<scalar_t, kMin><<<grid, kThreads, 0, stream>>>(xp, pp, P, N, threshold, o);
        break;
      case kMax:
        combine_kernel<scalar_t, kMax><<<grid, kThreads, 0, stream>>>(xp, pp, P, N, threshold, o);
        break;
      case kAnd:
        combine_kernel<scalar_t, kAnd><<<grid, kThreads, 0, stream>>>(xp, pp, P, N, threshold, o);
        break;
      default:
        combine_kernel<scalar_t, kOr><<<grid, kThreads, 0, stream>>>(xp, pp, P, N, threshold, o);
        break;
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace combine
}  // namespace fastgp
