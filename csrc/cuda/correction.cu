// CUDA kernels of the `correction` family: each sample's nearest bank row, the bank visited in
// chunks. The dot products of a chunk come from cuBLAS (at::mm); the fused part is the bank rows'
// squared norms, the clamped distance and the running minimum with its index (one warp per
// sample, no atomics: deterministic for a given device and shape). CPU twin:
// csrc/cpu/correction.cpp; math: csrc/fastgp/correction.h.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/mm.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>

#include "fastgp/correction.h"
#include "fastgp/rows.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
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

std::tuple<at::Tensor, at::Tensor> nearest_distance_cuda(const at::Tensor& samples,
                                                         const at::Tensor& bank, int64_t chunk) {
  constexpr const char* op = "nearest_distance";
  check_nearest_args(op, samples, bank, chunk);
  TORCH_CHECK(samples.is_cuda(), "fastgp::", op, ": the CUDA kernel got tensors on ",
              samples.device());
  const c10::cuda::CUDAGuard device_guard(samples.device());
  const int64_t B = samples.size(0), N = bank.size(0), D = row_numel(samples);
  const at::ScalarType acc = acc_dtype(samples.scalar_type());
  const auto acc_options = samples.options().dtype(acc);
  const at::Tensor a = samples.reshape({B, D}).to(acc).contiguous();
  at::Tensor best = at::full({B}, std::numeric_limits<double>::infinity(), acc_options);
  at::Tensor best_j = at::full({B}, -1, samples.options().dtype(at::kLong));
  if (B == 0) return {best, best_j};
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t c_max = std::min(chunk, N);
  at::Tensor sa = at::empty({B}, acc_options);
  at::Tensor sb = at::empty({c_max}, acc_options);

  AT_DISPATCH_FLOATING_TYPES(acc, "fastgp_nearest_distance_cuda", [&] {
    using acc_t = scalar_t;
    sum_squares_kernel<acc_t><<<warp_blocks(B), kThreads, 0, stream>>>(
        a.const_data_ptr<acc_t>(), B, D, sa.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    for (int64_t j0 = 0; j0 < N; j0 += c_max) {
      const int64_t c = std::min(c_max, N - j0);
      // Only this chunk is reshaped / converted / copied, whatever the bank's layout or dtype.
      const at::Tensor kc = bank.narrow(0, j0, c).reshape({c, D}).to(acc).contiguous();
      const at::Tensor dot = at::mm(a, kc.t());  // [B, c], cuBLAS, on the current stream
      sum_squares_kernel<acc_t><<<warp_blocks(c), kThreads, 0, stream>>>(
          kc.const_data_ptr<acc_t>(), c, D, sb.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      update_minima_kernel<acc_t><<<warp_blocks(B), kThreads, 0, stream>>>(
          dot.const_data_ptr<acc_t>(), sa.const_data_ptr<acc_t>(), sb.const_data_ptr<acc_t>(), B,
          c, j0, best.mutable_data_ptr<acc_t>(), best_j.mutable_data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {best, best_j};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CUDA, m) { m.impl("nearest_distance", &nearest_distance_cuda); }

}  // namespace fastgp
