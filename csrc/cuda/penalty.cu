// CUDA kernels of the `penalty` family (see csrc/cpu/penalty.cpp for the CPU twins and
// csrc/ops.cpp for the schemas). The per-sample math comes from csrc/fastgp/penalty.h and the
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
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "fastgp/penalty.h"
#include "fastgp/philox.h"
#include "fastgp/tensor_utils.h"
#include "reduce.cuh"

namespace fastgp {
namespace {

using penalty::HeadParams;

constexpr int kThreads = 256;        // threads per block of every kernel (a multiple of 32)
constexpr int kBlocksPerSm = 8;      // 2048 resident threads per SM / kThreads
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
    if (lane == 0) penalty::head_forward(s, params, penalty_out + row, norm_out + row);
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
        penalty::head_forward(s, params, penalty_out + row, norm_out + row);
      } else {
        partial[row * chunks + blockIdx.x] = s;
      }
    }
    __syncthreads();  // `shared` is reused for the next row
  }
}

template <typename acc_t>
__global__ void finalize_head_kernel(const acc_t* __restrict__ partial, int64_t B, int64_t chunks,
                                     HeadParams<acc_t> params, acc_t* __restrict__ penalty_out,
                                     acc_t* __restrict__ norm_out) {
  const int64_t num_threads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; row < B;
       row += num_threads) {
    acc_t s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[row * chunks + c];
    penalty::head_forward(s, params, penalty_out + row, norm_out + row);
  }
}

// ---------------------------------------------------------------------------------------------
// Launch helpers.

int64_t num_sms() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// Blocks for `work` independent items, one per thread, capped at a few waves (grid-stride loops
// cover the rest).
unsigned int grid_for(int64_t work) {
  const int64_t wanted = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, num_sms() * kBlocksPerSm)));
}

GridStep grid_step(unsigned int blocks, int64_t N) {
  const int64_t total = static_cast<int64_t>(blocks) * kThreads;
  return GridStep{total / N, total % N};
}

// ---------------------------------------------------------------------------------------------
// Entry points.

void launch_interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor* alpha,
                        const at::Tensor* seed, at::Tensor* alpha_out, const at::Tensor& out) {
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

at::Tensor interpolate_cuda(const at::Tensor& real, const at::Tensor& fake,
                            const at::Tensor& alpha) {
  check_real_fake("interpolate", real, fake);
  check_row_vector("interpolate", "alpha", alpha, num_rows(real), real.scalar_type(), real);
  TORCH_CHECK(real.is_cuda(), "fastgp::interpolate: the CUDA kernel got tensors on ",
              real.device());
  const c10::cuda::CUDAGuard device_guard(real.device());
  PairLayout t = prepare_pair(real, fake);
  const at::Tensor a = alpha.contiguous();
  launch_interpolate(t.a, t.b, &a, nullptr, nullptr, t.out);
  return t.out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_random_cuda(const at::Tensor& real,
                                                           const at::Tensor& fake,
                                                           const at::Tensor& seed) {
  check_real_fake("interpolate_random", real, fake);
  check_seed("interpolate_random", seed, real);
  TORCH_CHECK(real.is_cuda(), "fastgp::interpolate_random: the CUDA kernel got tensors on ",
              real.device());
  const int64_t B = num_rows(real);
  TORCH_CHECK(B <= (int64_t{1} << 31), "fastgp::interpolate_random: batch size ", B,
              " exceeds 2^31, the range of the 32-bit Philox counter shared with Triton");
  const c10::cuda::CUDAGuard device_guard(real.device());
  PairLayout t = prepare_pair(real, fake);
  at::Tensor alpha = at::empty({B}, real.options());
  const at::Tensor s = seed.contiguous();  // one element: a view of it is fine, but be explicit
  launch_interpolate(t.a, t.b, nullptr, &s, &alpha, t.out);
  return {t.out, alpha};
}

std::tuple<at::Tensor, at::Tensor> grad_norm_penalty_forward_cuda(const at::Tensor& grad,
                                                                  double center,
                                                                  bool one_sided) {
  check_float_input("grad_norm_penalty_forward", "grad", grad);
  TORCH_CHECK(grad.is_cuda(), "fastgp::grad_norm_penalty_forward: the CUDA kernel got a tensor on ",
              grad.device());
  const c10::cuda::CUDAGuard device_guard(grad.device());
  const int64_t B = num_rows(grad), N = row_numel(grad);
  const at::Tensor g = is_sample_major_dense(grad) ? grad : grad.contiguous();
  const auto acc_options = grad.options().dtype(acc_dtype(grad.scalar_type()));
  at::Tensor penalty = at::empty({B}, acc_options);
  at::Tensor norm = at::empty({B}, acc_options);
  if (B == 0) return {penalty, norm};

  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (N < kWarpRowLimit) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_forward_cuda",
        [&] {
          using acc_t = at::opmath_type<scalar_t>;
          sum_squares_warp_kernel<scalar_t, acc_t><<<grid_for(B * 32), kThreads, 0, stream>>>(
              g.const_data_ptr<scalar_t>(), B, N,
              penalty::make_head_params<acc_t>(center, one_sided),
              penalty.mutable_data_ptr<acc_t>(), norm.mutable_data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
    return {penalty, norm};
  }

  // Split rows into chunks only when there are too few rows to occupy the GPU.
  const int64_t target_blocks = num_sms() * kBlocksPerSm;
  int64_t chunks = 1;
  if (B < target_blocks && N > kMinChunk) {
    chunks = std::min((target_blocks + B - 1) / B, (N + kMinChunk - 1) / kMinChunk);
  }
  const int64_t chunk_len = std::max<int64_t>(1, (N + chunks - 1) / chunks);
  chunks = std::max<int64_t>(1, (N + chunk_len - 1) / chunk_len);
  const dim3 grid(static_cast<unsigned int>(chunks),
                  static_cast<unsigned int>(std::min<int64_t>(B, 65535)));
  at::Tensor partial = chunks > 1 ? at::empty({B * chunks}, acc_options) : at::Tensor();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const auto params = penalty::make_head_params<acc_t>(center, one_sided);
        acc_t* partial_ptr = chunks > 1 ? partial.mutable_data_ptr<acc_t>() : nullptr;
        sum_squares_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
            g.const_data_ptr<scalar_t>(), B, N, chunk_len, params, partial_ptr,
            penalty.mutable_data_ptr<acc_t>(), norm.mutable_data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        if (chunks > 1) {
          finalize_head_kernel<acc_t><<<grid_for(B), kThreads, 0, stream>>>(
              partial_ptr, B, chunks, params, penalty.mutable_data_ptr<acc_t>(),
              norm.mutable_data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  return {penalty, norm};
}

at::Tensor grad_norm_penalty_backward_cuda(const at::Tensor& grad_penalty, const at::Tensor& grad,
                                           const at::Tensor& norm, double center,
                                           bool one_sided) {
  constexpr const char* op = "grad_norm_penalty_backward";
  check_float_input(op, "grad", grad);
  const int64_t B = num_rows(grad), N = row_numel(grad);
  const at::ScalarType acc = acc_dtype(grad.scalar_type());
  check_row_vector(op, "grad_penalty", grad_penalty, B, acc, grad);
  check_row_vector(op, "norm", norm, B, acc, grad);
  TORCH_CHECK(grad.is_cuda(), "fastgp::grad_norm_penalty_backward: the CUDA kernel got tensors on ",
              grad.device());
  const c10::cuda::CUDAGuard device_guard(grad.device());
  PairLayout t = prepare_single(grad);
  // grad_penalty is often an expanded scalar (the backward of .mean()): make it [B] memory.
  const at::Tensor gp = grad_penalty.contiguous();
  const at::Tensor n = norm.contiguous();
  if (B * N == 0) return t.out;
  const unsigned int blocks = grid_for(B * N);
  const GridStep step = grid_step(blocks, N);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_grad_norm_penalty_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        grad_norm_backward_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
            gp.const_data_ptr<acc_t>(), t.a.const_data_ptr<scalar_t>(), n.const_data_ptr<acc_t>(),
            B, N, step, penalty::make_head_params<acc_t>(center, one_sided),
            t.out.mutable_data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return t.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CUDA, m) {
  m.impl("interpolate", &interpolate_cuda);
  m.impl("interpolate_random", &interpolate_random_cuda);
  m.impl("grad_norm_penalty_forward", &grad_norm_penalty_forward_cuda);
  m.impl("grad_norm_penalty_backward", &grad_norm_penalty_backward_cuda);
}

}  // namespace fastgp
