// CUDA kernels of the `penalty` family and their launches, called by the host functions of
// csrc/host/penalty.cpp (see csrc/cpu/penalty.cpp for the CPU twins and csrc/ops.cpp for the
// schemas). The per-sample math comes from csrc/fastgp/penalty.h and the
// RNG from csrc/fastgp/philox.h, shared with the CPU kernels and bit-compatible with Triton.
//
// Tensors are viewed as B rows of N elements in raw memory (layout rule in
// csrc/fastgp/tensor_utils.h). Conventions: int64 indexing everywhere; float16/bfloat16 are
// loaded and converted to float, computed in float, and rounded once on store; every launch goes
// to the current stream of the input's device and is checked.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>

#include "fastgp/penalty.h"
#include "fastgp/philox.h"
#include "fastgp/tensor_utils.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace fastgp {
namespace {

using penalty::HeadParams;

constexpr int64_t kMinChunk = 4096;  // elements per block below which a row is not split

// ---------------------------------------------------------------------------------------------
// Element-wise kernels over [B, N] memory.
//
// A grid-stride loop visits i = tid, tid + T, tid + 2T, ... (T = total threads; coalesced). The
// row of i is tracked incrementally, (row, col) += (T / N, T % N) with one carry, instead of a
// 64-bit division per element; the per-row factor (alpha, scale) is recomputed only when the
// row changes.
struct GridStep {
  int64_t rows;  // T / N
  int64_t cols;  // T % N
};

// interpolate (kRandom = false: alpha read from alpha_in) and interpolate_random (kRandom =
// true: alpha[b] = tl.rand(seed, b) drawn in the kernel, written to alpha_out, one thread per
// sample). The seed is read from device memory, so no host synchronization is needed.
template <typename scalar_t, bool kRandom>
__global__ void interpolate_kernel(const scalar_t* __restrict__ real,
                                   const scalar_t* __restrict__ fake,
                                   const scalar_t* __restrict__ alpha_in,
                                   const int64_t* __restrict__ seed_ptr,
                                   scalar_t* __restrict__ alpha_out, scalar_t* __restrict__ out,
                                   int64_t B, int64_t N, GridStep step) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t num_threads = static_cast<int64_t>(gridDim.x) * blockDim.x;

  uint64_t seed = 0;
  if constexpr (kRandom) {
    seed = static_cast<uint64_t>(*seed_ptr);
    for (int64_t b = tid; b < B; b += num_threads) {
      alpha_out[b] = static_cast<scalar_t>(philox::uniform(seed, static_cast<uint32_t>(b)));
    }
  }
  if (N == 0) return;

  int64_t row = tid / N;
  int64_t col = tid - row * N;
  int64_t cached_row = -1;
  acc_t a = 0, one_minus_a = 0;
  while (row < B) {
    if (row != cached_row) {
      cached_row = row;
      // kRandom: the same draw as alpha_out[row], rounded to scalar_t, so that out is exactly
      // consistent with the returned alpha (a few integer ops: cheaper than a grid-wide sync).
      a = kRandom ? static_cast<acc_t>(static_cast<scalar_t>(
                        philox::uniform(seed, static_cast<uint32_t>(row))))
                  : static_cast<acc_t>(alpha_in[row]);
      one_minus_a = acc_t(1) - a;
    }
    const int64_t i = row * N + col;
    out[i] = static_cast<scalar_t>(penalty::lerp(a, one_minus_a, static_cast<acc_t>(real[i]),
                                                 static_cast<acc_t>(fake[i])));
    row += step.rows;
    col += step.cols;
    if (col >= N) {
      col -= N;
      ++row;
    }
  }
}

// grad_in = grad * (grad_penalty[row] * coef(norm[row])).
template <typename scalar_t, typename acc_t>
__global__ void grad_norm_backward_kernel(const acc_t* __restrict__ grad_penalty,
                                          const scalar_t* __restrict__ grad,
                                          const acc_t* __restrict__ norm, int64_t B, int64_t N,
                                          GridStep step, HeadParams<acc_t> params,
                                          scalar_t* __restrict__ grad_in) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t row = tid / N;
  int64_t col = tid - row * N;
  int64_t cached_row = -1;
  acc_t scale = 0;
  while (row < B) {
    if (row != cached_row) {
      cached_row = row;
      scale = penalty::head_backward_scale(grad_penalty[row], norm[row], params);
    }
    const int64_t i = row * N + col;
    grad_in[i] = static_cast<scalar_t>(static_cast<acc_t>(grad[i]) * scale);
    row += step.rows;
    col += step.cols;
    if (col >= N) {
      col -= N;
      ++row;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Row reduction: sum of squares per sample. No atomics anywhere: for a given device and shape
// the result is deterministic.
//
// Short rows (N < kWarpRowLimit): one warp per row (a block per row would leave most threads
// idle). Longer rows: grid (chunks, min(B, 65535)); block (c, y) reduces chunk c of rows y,
// y + gridDim.y, ... With one chunk per row the block applies the penalty head itself; with
// several (few long rows, split so that every SM gets work) each block writes a partial sum and
// a second kernel adds a row's partials in chunk order.

constexpr int64_t kWarpRowLimit = 1024;

template <typename scalar_t, typename acc_t>
__global__ void sum_squares_warp_kernel(const scalar_t* __restrict__ grad, int64_t B, int64_t N,
                                        HeadParams<acc_t> params, acc_t* __restrict__ penalty_out,
                                        acc_t* __restrict__ norm_out) {
  const int lane = threadIdx.x & 31;
  const int64_t first_warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t num_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  // `row` is the same for all lanes of a warp, so every lane reaches the shuffles.
  for (int64_t row = first_warp; row < B; row += num_warps) {
    const scalar_t* x = grad + row * N;
    acc_t s0 = 0, s1 = 0;  // two loads in flight per lane
    int64_t i = lane;
    for (; i + 32 < N; i += 64) {
      const acc_t v0 = static_cast<acc_t>(x[i]);
      const acc_t v1 = static_cast<acc_t>(x[i + 32]);
      s0 += v0 * v0;
      s1 += v1 * v1;
    }
    for (; i < N; i += 32) {
      const acc_t v = static_cast<acc_t>(x[i]);
      s0 += v * v;
    }
    const acc_t s = warp_reduce_sum(s0 + s1);
    // An over/underflowed row (rare) is rescaled by lane 0 alone: see head_forward_row.
    if (lane == 0) penalty::head_forward_row(s, x, N, params, penalty_out + row, norm_out + row);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void sum_squares_kernel(const scalar_t* __restrict__ grad, int64_t B, int64_t N,
                                   int64_t chunk_len, HeadParams<acc_t> params,
                                   acc_t* __restrict__ partial, acc_t* __restrict__ penalty_out,
                                   acc_t* __restrict__ norm_out) {
  __shared__ acc_t shared[32];
  const int64_t chunks = gridDim.x;
  const int64_t stride = blockDim.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.x) * chunk_len;
  const int64_t end = begin + chunk_len < N ? begin + chunk_len : N;
  for (int64_t row = blockIdx.y; row < B; row += gridDim.y) {
    const scalar_t* x = grad + row * N;
    // Four independent accumulators keep four loads in flight per thread.
    acc_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = begin + threadIdx.x;
    for (; i + 3 * stride < end; i += 4 * stride) {
      const acc_t v0 = static_cast<acc_t>(x[i]);
      const acc_t v1 = static_cast<acc_t>(x[i + stride]);
      const acc_t v2 = static_cast<acc_t>(x[i + 2 * stride]);
      const acc_t v3 = static_cast<acc_t>(x[i + 3 * stride]);
      s0 += v0 * v0;
      s1 += v1 * v1;
      s2 += v2 * v2;
      s3 += v3 * v3;
    }
    for (; i < end; i += stride) {
      const acc_t v = static_cast<acc_t>(x[i]);
      s0 += v * v;
    }
    const acc_t s = block_reduce_sum((s0 + s1) + (s2 + s3), shared);
    if (threadIdx.x == 0) {
      if (chunks == 1) {
        penalty::head_forward_row(s, x, N, params, penalty_out + row, norm_out + row);
      } else {
        partial[row * chunks + blockIdx.x] = s;
      }
    }
    __syncthreads();  // `shared` is reused for the next row
  }
}

template <typename scalar_t, typename acc_t>
__global__ void finalize_head_kernel(const acc_t* __restrict__ partial, const scalar_t* __restrict__ grad,
                                     int64_t B, int64_t N, int64_t chunks,
                                     HeadParams<acc_t> params, acc_t* __restrict__ penalty_out,
                                     acc_t* __restrict__ norm_out) {
  const int64_t num_threads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < B;
       row += num_threads) {
    acc_t s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[row * chunks + c];
    penalty::head_forward_row(s, grad + row * N, N, params, penalty_out + row, norm_out + row);
  }
}

// ---------------------------------------------------------------------------------------------
// Launch helpers.

GridStep grid_step(unsigned int blocks, int64_t N) {
  const int64_t total = static_cast<int64_t>(blocks) * kThreads;
  return GridStep{total / N, total % N};
}

// interpolate (alpha given) or interpolate_random (alpha drawn from the seed and written).
void launch_interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor* alpha,
                        const at::Tensor* seed, const at::Tensor* alpha_out, const at::Tensor& out) {
  const int64_t B = num_rows(real), N = row_numel(real);
  const bool random = seed != nullptr;
  // interpolate_random must write alpha even when N == 0.
  const int64_t work = std::max<int64_t>(B * N, random ? B : 0);
  if (work == 0) return;
  const unsigned int blocks = grid_for(work);
  const GridStep step = N > 0 ? grid_step(blocks, N) : GridStep{0, 0};
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, real.scalar_type(), "fastgp_interpolate_cuda", [&] {
        const scalar_t* r = real.const_data_ptr<scalar_t>();
        const scalar_t* f = fake.const_data_ptr<scalar_t>();
        scalar_t* o = out.mutable_data_ptr<scalar_t>();
        if (random) {
          interpolate_kernel<scalar_t, true><<<blocks, kThreads, 0, stream>>>(
              r, f, nullptr, seed->const_data_ptr<int64_t>(),
              alpha_out->mutable_data_ptr<scalar_t>(), o, B, N, step);
        } else {
          interpolate_kernel<scalar_t, false><<<blocks, kThreads, 0, stream>>>(
              r, f, alpha->const_data_ptr<scalar_t>(), nullptr, nullptr, o, B, N, step);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

// The number of chunks each row of N elements is split into, so that B rows give every SM work.
int64_t row_chunks(int64_t B, int64_t N) {
  const int64_t target_blocks = num_sms() * kBlocksPerSm;
  int64_t chunks = 1;
  if (B < target_blocks && N > kMinChunk) {
    chunks = std::min((target_blocks + B - 1) / B, (N + kMinChunk - 1) / kMinChunk);
  }
  return chunks;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Launches.

namespace penalty {

void launch_interpolate_cuda(const at::Tensor& real, const at::Tensor& fake,
                             const at::Tensor& alpha, const at::Tensor& out) {
  launch_interpolate(real, fake, &alpha, nullptr, nullptr, out);
}

void launch_interpolate_random_cuda(const at::Tensor& real, const at::Tensor& fake,
                                    const at::Tensor& seed, const at::Tensor& alpha,
                                    const at::Tensor& out) {
  launch_interpolate(real, fake, nullptr, &seed, &alpha, out);
}

void launch_grad_norm_penalty_forward_cuda(const at::Tensor& grad, double center, bool one_sided,
                                           const at::Tensor& penalty, const at::Tensor& norm) {
  const int64_t B = num_rows(grad), N = row_numel(grad);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (N < kWarpRowLimit) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_forward_cuda",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          sum_squares_warp_kernel<scalar_t, acc_t><<<grid_for(B * 32), kThreads, 0, stream>>>(
              grad.const_data_ptr<scalar_t>(), B, N, make_head_params<acc_t>(center, one_sided),
              penalty.mutable_data_ptr<acc_t>(), norm.mutable_data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
    return;
  }

  // Split rows into chunks only when there are too few rows to occupy the GPU.
  int64_t chunks = row_chunks(B, N);
  const int64_t chunk_len = std::max<int64_t>(1, (N + chunks - 1) / chunks);
  chunks = std::max<int64_t>(1, (N + chunk_len - 1) / chunk_len);
  const dim3 grid(static_cast<unsigned int>(chunks),
                  static_cast<unsigned int>(std::min<int64_t>(B, kMaxGridY)));
  at::Tensor partial = chunks > 1 ? at::empty({B * chunks}, penalty.options()) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto params = make_head_params<acc_t>(center, one_sided);
        acc_t* partial_ptr = chunks > 1 ? partial.mutable_data_ptr<acc_t>() : nullptr;
        sum_squares_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
            grad.const_data_ptr<scalar_t>(), B, N, chunk_len, params, partial_ptr,
            penalty.mutable_data_ptr<acc_t>(), norm.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (chunks > 1) {
          finalize_head_kernel<scalar_t, acc_t><<<grid_for(B), kThreads, 0, stream>>>(
              partial_ptr, grad.const_data_ptr<scalar_t>(), B, N, chunks, params, penalty.mutable_data_ptr<acc_t>(),
              norm.mutable_data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
}

void launch_grad_norm_penalty_backward_cuda(const at::Tensor& grad_penalty,
                                            const at::Tensor& grad, const at::Tensor& norm,
                                            double center, bool one_sided,
                                            const at::Tensor& grad_in) {
  const int64_t B = num_rows(grad), N = row_numel(grad);
  const unsigned int blocks = grid_for(B * N);
  const GridStep step = grid_step(blocks, N);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        grad_norm_backward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
            grad_penalty.const_data_ptr<acc_t>(), grad.const_data_ptr<scalar_t>(),
            norm.const_data_ptr<acc_t>(), B, N, step, make_head_params<acc_t>(center, one_sided),
            grad_in.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace penalty
}  // namespace fastgp
