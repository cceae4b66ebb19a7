// Deterministic warp and block sums shared by the CUDA kernels (no atomics: a fixed shuffle tree).
#pragma once

namespace fastgp {

template <typename acc_t>
__device__ __forceinline__ acc_t warp_reduce_sum(acc_t v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // the full sum is in lane 0
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); the result is valid in thread
// 0. `shared` holds at least blockDim.x / 32 values. Ends with a barrier, so the shared array is
// free again and the function can be called several times in a row.
template <typename acc_t>
__device__ acc_t block_reduce_sum(acc_t v, acc_t* shared) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  v = warp_reduce_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int num_warps = blockDim.x >> 5;
  v = threadIdx.x < num_warps ? shared[lane] : acc_t(0);
  if (warp == 0) v = warp_reduce_sum(v);
  __syncthreads();
  return v;
}

}  // namespace fastgp
