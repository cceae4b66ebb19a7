// CUDA kernels of the `select` family: Fake-As-Real top-k selection and the gather of the selected
// rows (far_batch also copies the real rows into the same output), and their launch, called by the
// host functions of csrc/host/select.cpp. CPU twin: csrc/cpu/select.cpp; schemas: csrc/ops.cpp;
// candidate order: csrc/fastgp/select.h.
//
// Selection: for up to kMaxRankCandidates candidates, one thread per candidate counts the
// candidates that come before it (its rank, O(M^2) comparisons, a few microseconds for the M1 =
// 256 of the paper) and writes its index at position rank when rank < k: no sort, no host sync.
// Ranks are distinct because the order is total (ties broken by index). Beyond that size the
// O(M^2) count would dominate, so the indices come from ATen's stable sort instead.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "fastgp/select.h"
#include "fastgp/tensor_utils.h"
#include "launch.cuh"

namespace fastgp {
namespace {

constexpr int64_t kMaxRankCandidates = 16384;

template <typename scalar_t>
__global__ void rank_select_kernel(const scalar_t* __restrict__ logits, int64_t stride, int64_t M,
                                   int64_t k, int64_t* __restrict__ indices) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_threads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < M;
       i += num_threads) {
    const acc_t vi = static_cast<acc_t>(logits[i * stride]);
    int64_t rank = 0;
    for (int64_t j = 0; j < M; ++j) {
      rank += select::comes_before(static_cast<acc_t>(logits[j * stride]), j, vi, i) ? 1 : 0;
    }
    if (rank < k) indices[rank] = i;
  }
}

// out row r = real row r (r < R) or candidates row indices[r - R]; rows of N words of type word_t
// (the element bits: the copy is dtype-agnostic). blockIdx.y walks rows, x-threads walk columns.
template <typename word_t>
__global__ void gather_rows_kernel(const word_t* __restrict__ real, int64_t R,
                                   const word_t* __restrict__ candidates,
                                   const int64_t* __restrict__ indices, int64_t rows, int64_t N,
                                   word_t* __restrict__ out) {
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t col_step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const word_t* src = r < R ? real + r * N : candidates + indices[r - R] * N;
    word_t* dst = out + r * N;
    for (int64_t c = col0; c < N; c += col_step) dst[c] = src[c];
  }
}

template <typename word_t>
void launch_gather(const at::Tensor& real, int64_t R, const at::Tensor& candidates,
                   const at::Tensor& indices, int64_t rows, int64_t N, const at::Tensor& out,
                   cudaStream_t stream) {
  const int64_t col_blocks = std::min<int64_t>((N + kThreads - 1) / kThreads, 64);
  const dim3 grid(static_cast<unsigned int>(std::max<int64_t>(1, col_blocks)),
                  static_cast<unsigned int>(std::min(rows, kMaxGridY)));
  gather_rows_kernel<word_t><<<grid, kThreads, 0, stream>>>(
      R > 0 ? static_cast<const word_t*>(real.const_data_ptr()) : nullptr, R,
      static_cast<const word_t*>(candidates.const_data_ptr()), indices.const_data_ptr<int64_t>(),
      rows, N, static_cast<word_t*>(out.mutable_data_ptr()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

namespace select {

void launch_far_gather_cuda(const at::Tensor& logits, int64_t k, const at::Tensor& real,
                            const at::Tensor& candidates, const at::Tensor& indices,
                            const at::Tensor& out) {
  const int64_t M = candidates.size(0), R = real.defined() ? real.size(0) : 0;
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  if (M <= kMaxRankCandidates) {
    const unsigned int blocks = static_cast<unsigned int>((M + kThreads - 1) / kThreads);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "fastgp_far_rank_cuda", [&] {
          rank_select_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
              logits.const_data_ptr<scalar_t>(), logits.stride(0), M, k,
              indices.mutable_data_ptr<int64_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  } else {
    // torch.sort orders NaN last and, stable, keeps ties in index order: the same order.
    indices.copy_(std::get<1>(at::sort(logits, /*stable=*/true, /*dim=*/0, /*descending=*/false))
                      .narrow(0, 0, k));
  }
  const int64_t N = row_numel(candidates);
  if (N == 0) return;
  switch (candidates.element_size()) {
    case 2: launch_gather<uint16_t>(real, R, candidates, indices, R + k, N, out, stream); break;
    case 4: launch_gather<uint32_t>(real, R, candidates, indices, R + k, N, out, stream); break;
    default: launch_gather<uint64_t>(real, R, candidates, indices, R + k, N, out, stream); break;
  }
}

}  // namespace select
}  // namespace fastgp
