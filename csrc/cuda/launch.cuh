// Launch geometry shared by the CUDA kernels: block size, the resident blocks per SM that a
// grid-stride loop needs to fill the GPU, and the grid for a number of independent work items.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace fastgp {

constexpr int kThreads = 256;        // threads per block of every kernel (8 warps)
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kBlocksPerSm = 8;      // 2048 resident threads per SM / kThreads
constexpr int64_t kMaxGridY = 65535;  // the largest gridDim.y (and gridDim.z)

// Streaming multiprocessors of the current device.
inline int64_t num_sms() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

// Blocks for `work` independent items, one per thread, capped at a few waves (grid-stride loops
// cover the rest); at least one block.
inline unsigned int grid_for(int64_t work) {
  const int64_t wanted = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, num_sms() * kBlocksPerSm)));
}

}  // namespace fastgp
