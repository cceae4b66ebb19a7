// CUDA kernels of the `correction` family: the squared norms of rows and the running minimum of the
// clamped distances with its index (one warp per sample, no atomics: deterministic for a given
// device and shape), the fused part of nearest_distance, whose host function
// (csrc/host/correction.cpp) visits the bank in chunks and calls these launches per chunk. CPU
// twin: csrc/cpu/correction.cpp; math: csrc/fastgp/correction.h.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>

#include "fastgp/correction.h"
#include "launch.cuh"

namespace fastgp {
namespace {

constexpr int64_t kMaxBlocks = 65535;

unsigned int warp_blocks(int64_t rows) {
  return static_cast<unsigned int>(
      std::max<int64_t>(1, std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxBlocks)));
}

// out[r] = sum of squares of row r ([rows, D], acc_t): one warp per row.
template <typename acc_t>
__global__ void sum_squares_kernel(const acc_t* __restrict__ x, int64_t rows, int64_t D,
                                   acc_t* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t num_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t r = warp; r < rows; r += num_warps) {
    const acc_t* row = x + r * D;
    acc_t s = 0;
    for (int64_t i = lane; i < D; i += 32) s += row[i] * row[i];
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_down_sync(0xffffffffu, s, offset);
    if (lane == 0) out[r] = s;
  }
}

// Folds chunk columns j0 .. j0 + c - 1 into the running minimum of each sample: one warp per
// sample; each lane scans its columns in ascending order, then the lanes' minima are merged in the
// total order of correction::better (order-independent), then merged into the running minimum,
// whose columns all come before this chunk's.
template <typename acc_t>
__global__ void update_minima_kernel(const acc_t* __restrict__ dot, const acc_t* __restrict__ sa,
                                     const acc_t* __restrict__ sb, int64_t B, int64_t c,
                                     int64_t j0, acc_t* __restrict__ best,
                                     int64_t* __restrict__ best_j) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t num_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t b = warp; b < B; b += num_warps) {
    const acc_t* row = dot + b * c;
    const acc_t s = sa[b];
    acc_t m = 0;
    int64_t mj = -1;
    for (int64_t j = lane; j < c; j += 32) {
      const acc_t d = correction::clamped_distance(s, sb[j], row[j]);
      if (correction::improves(d, m, mj)) {
        m = d;
        mj = j;
      }
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const acc_t other = __shfl_down_sync(0xffffffffu, m, offset);
      const int64_t other_j = __shfl_down_sync(0xffffffffu, mj, offset);
      if (correction::better(other, other_j, m, mj)) {
        m = other;
        mj = other_j;
      }
    }
    if (lane == 0 && mj >= 0 && correction::improves(m, best[b], best_j[b])) {
      best[b] = m;
      best_j[b] = j0 + mj;
    }
  }
}

}  // namespace

namespace correction {

void launch_row_sum_squares_cuda(const at::Tensor& x, const at::Tensor& out) {
  const int64_t rows = x.size(0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgp_row_sum_squares_cuda", [&] {
    sum_squares_kernel<scalar_t><<<warp_blocks(rows), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), rows, x.size(1), out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void launch_update_minima_cuda(const at::Tensor& dot, const at::Tensor& sa, const at::Tensor& sb,
                               int64_t j0, const at::Tensor& best, const at::Tensor& best_j) {
  const int64_t B = dot.size(0);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(dot.scalar_type(), "fastgp_update_minima_cuda", [&] {
    update_minima_kernel<scalar_t><<<warp_blocks(B), kThreads, 0, stream>>>(
        dot.const_data_ptr<scalar_t>(), sa.const_data_ptr<scalar_t>(),
        sb.const_data_ptr<scalar_t>(), B, dot.size(1), j0, best.mutable_data_ptr<scalar_t>(),
        best_j.mutable_data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace correction
}  // namespace fastgp
