// CUDA kernels of the `spectral` family: fused power iterations of spectral normalization for a
// group of matrices of different shapes (one matrix is a group of one). CPU twins in
// csrc/cpu/spectral.cpp, schemas in csrc/ops.cpp, finishing math in csrc/fastgp/spectral.h.
//
// The multi-tensor pattern of apex's multi_tensor_apply: a metadata table (pointers, sizes,
// offsets of every matrix, in device memory) and a table of work items (matrix, chunk of rows);
// one launch covers every item of every matrix. Per iteration:
//   pass_kernel    one block per item: p_i = W_i·v for its rows (one warp per row), then the
//                  item's partial Wᵀp from the same rows (a second read of a chunk of at most
//                  kMaxRows rows, served by L1/L2) — W is read from DRAM once per iteration;
//   finish_kernel  one block per matrix: adds the partials in item order, normalizes u and v,
//                  writes σ (no atomics: deterministic for a given device and shapes).
// With zero iterations pass_kernel<kSigmaOnly> computes Σ u_i (W_i·v) per item and
// sigma_kernel adds the items of each matrix. The iteration state lives in acc precision
// (float for float16/bfloat16); the buffers u, v are rewritten in their dtype at each finish.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fastgp/spectral.h"
#include "fastgp/tensor_utils.h"
#include "reduce.cuh"

namespace fastgp {
namespace {

constexpr int kThreads = 256;  // threads per block (8 warps)
constexpr int kWarps = kThreads / 32;
constexpr int64_t kMaxRows = 64;  // rows per work item: the p values an item keeps in shared memory

// One matrix of the group. All int64 so the table is one int64 tensor copied to the device.
struct Meta {
  int64_t W;   // const scalar_t*
  int64_t u;   // scalar_t* (read at init, rewritten by finish)
  int64_t v;   // scalar_t*
  int64_t h, w, ld;
  int64_t first_item, rows_per_item, num_items;
  int64_t partial_offset;  // this matrix's [num_items, w] partials in the partial buffer
  int64_t u_offset, v_offset;  // this matrix's state in the acc u / v (and p) buffers
};
static_assert(sizeof(Meta) % sizeof(int64_t) == 0, "Meta must be a whole number of int64");

// Copies the buffers u, v into the acc state.
template <typename scalar_t, typename acc_t>
__global__ void init_kernel(const Meta* __restrict__ meta, acc_t* __restrict__ u_acc,
                            acc_t* __restrict__ v_acc) {
  const Meta m = meta[blockIdx.x];
  const scalar_t* u = reinterpret_cast<const scalar_t*>(m.u);
  const scalar_t* v = reinterpret_cast<const scalar_t*>(m.v);
  for (int64_t i = threadIdx.x; i < m.h; i += blockDim.x) u_acc[m.u_offset + i] = static_cast<acc_t>(u[i]);
  for (int64_t j = threadIdx.x; j < m.w; j += blockDim.x) v_acc[m.v_offset + j] = static_cast<acc_t>(v[j]);
}

template <typename scalar_t, typename acc_t, bool kSigmaOnly>
__global__ void pass_kernel(const Meta* __restrict__ meta, const int64_t* __restrict__ item_matrix,
                            const acc_t* __restrict__ u_acc, const acc_t* __restrict__ v_acc,
                            acc_t* __restrict__ p_out, acc_t* __restrict__ partial) {
  __shared__ acc_t p_shared[kMaxRows];
  __shared__ acc_t warp_sums[kWarps];
  const int64_t item = blockIdx.x;
  const Meta m = meta[item_matrix[item]];
  const scalar_t* W = reinterpret_cast<const scalar_t*>(m.W);
  const acc_t* v = v_acc + m.v_offset;
  const int64_t chunk = item - m.first_item;
  const int64_t r0 = chunk * m.rows_per_item;
  const int64_t rows = min(m.rows_per_item, m.h - r0);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;

  // p for this item's rows: warp `warp` takes rows warp, warp + kWarps, ... (coalesced lanes).
  acc_t sigma_part = 0;  // kSigmaOnly: Σ u_i p_i over this warp's rows (lane 0)
  for (int64_t r = warp; r < rows; r += kWarps) {
    const scalar_t* row = W + (r0 + r) * m.ld;
    acc_t s0 = 0, s1 = 0;  // two loads in flight per lane
    int64_t j = lane;
    for (; j + 32 < m.w; j += 64) {
      s0 += static_cast<acc_t>(row[j]) * v[j];
      s1 += static_cast<acc_t>(row[j + 32]) * v[j + 32];
    }
    for (; j < m.w; j += 32) s0 += static_cast<acc_t>(row[j]) * v[j];
    const acc_t p = warp_reduce_sum(s0 + s1);
    if (lane == 0) {
      if constexpr (kSigmaOnly) {
        sigma_part += u_acc[m.u_offset + r0 + r] * p;
      } else {
        p_shared[r] = p;
        p_out[m.u_offset + r0 + r] = p;
      }
    }
  }
  if constexpr (kSigmaOnly) {
    if (lane == 0) warp_sums[warp] = sigma_part;
    __syncthreads();
    if (threadIdx.x == 0) {
      acc_t s = 0;
      for (int k = 0; k < kWarps; ++k) s += warp_sums[k];
      partial[item] = s;
    }
  } else {
    __syncthreads();
    // Partial Wᵀp over these rows: thread j sums column j down the chunk (coalesced rows).
    acc_t* out = partial + m.partial_offset + chunk * m.w;
    for (int64_t j = threadIdx.x; j < m.w; j += blockDim.x) {
      acc_t t = 0;
      for (int64_t r = 0; r < rows; ++r) t += p_shared[r] * static_cast<acc_t>(W[(r0 + r) * m.ld + j]);
      out[j] = t;
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void finish_kernel(const Meta* __restrict__ meta, acc_t* __restrict__ u_acc,
                              acc_t* __restrict__ v_acc, const acc_t* __restrict__ p,
                              const acc_t* __restrict__ partial, acc_t eps,
                              acc_t* __restrict__ sigma) {
  __shared__ acc_t shared[32];
  __shared__ spectral::Finish<acc_t> f;
  const Meta m = meta[blockIdx.x];
  const acc_t* pm = p + m.u_offset;
  acc_t* u = u_acc + m.u_offset;
  acc_t* t = v_acc + m.v_offset;  // v is not needed again this iteration: t is summed into it
  acc_t p_sq = 0;
  for (int64_t i = threadIdx.x; i < m.h; i += blockDim.x) p_sq += pm[i] * pm[i];
  p_sq = block_reduce_sum(p_sq, shared);
  acc_t t_sq = 0;
  const acc_t* part = partial + m.partial_offset;
  for (int64_t j = threadIdx.x; j < m.w; j += blockDim.x) {
    acc_t s = 0;
    for (int64_t k = 0; k < m.num_items; ++k) s += part[k * m.w + j];
    t[j] = s;
    t_sq += s * s;
  }
  t_sq = block_reduce_sum(t_sq, shared);
  if (threadIdx.x == 0) {
    f = spectral::finish<acc_t>(p_sq, t_sq, eps);
    sigma[blockIdx.x] = f.sigma;
  }
  __syncthreads();
  scalar_t* u_out = reinterpret_cast<scalar_t*>(m.u);
  scalar_t* v_out = reinterpret_cast<scalar_t*>(m.v);
  for (int64_t i = threadIdx.x; i < m.h; i += blockDim.x) {
    const acc_t x = pm[i] * f.inv_du;
    u[i] = x;
    u_out[i] = static_cast<scalar_t>(x);
  }
  for (int64_t j = threadIdx.x; j < m.w; j += blockDim.x) {  // same j per thread as above
    const acc_t x = t[j] * f.inv_dv;
    t[j] = x;
    v_out[j] = static_cast<scalar_t>(x);
  }
}

template <typename acc_t>
__global__ void sigma_kernel(const Meta* __restrict__ meta, const acc_t* __restrict__ partial,
                             acc_t* __restrict__ sigma) {
  const Meta m = meta[blockIdx.x];
  if (threadIdx.x != 0) return;
  acc_t s = 0;
  for (int64_t k = 0; k < m.num_items; ++k) s += partial[m.first_item + k];
  sigma[blockIdx.x] = s;
}

at::Tensor run(const char* op, at::TensorList weights, at::TensorList us, at::TensorList vs,
               int64_t n_iterations, double eps) {
  spectral::check_group(op, weights, us, vs, n_iterations, eps);
  const int64_t G = static_cast<int64_t>(weights.size());
  TORCH_CHECK(G > 0, "fastgp::", op, ": needs at least one weight on the GPU");
  const c10::cuda::CUDAGuard device_guard(weights[0].device());
  const at::ScalarType dtype = weights[0].scalar_type();
  const auto acc_options = weights[0].options().dtype(acc_dtype(dtype));

  // Metadata and work items on the host, then one copy each to the device (a blocking copy from
  // pageable memory: the host vectors may die after it).
  std::vector<at::Tensor> W(weights.size());
  std::vector<Meta> meta(weights.size());
  std::vector<int64_t> item_matrix;
  int64_t partial_size = 0, u_size = 0, v_size = 0;
  for (int64_t g = 0; g < G; ++g) {
    W[g] = weights[g].size(1) <= 1 || weights[g].stride(1) == 1 ? weights[g] : weights[g].contiguous();
    Meta& m = meta[g];
    m.W = reinterpret_cast<int64_t>(W[g].const_data_ptr());
    m.u = reinterpret_cast<int64_t>(us[g].data_ptr());
    m.v = reinterpret_cast<int64_t>(vs[g].data_ptr());
    m.h = W[g].size(0);
    m.w = W[g].size(1);
    m.ld = W[g].stride(0);
    m.rows_per_item =
        std::min(kMaxRows, std::max<int64_t>(1, spectral::kItemElems / std::max<int64_t>(m.w, 1)));
    m.num_items = (m.h + m.rows_per_item - 1) / m.rows_per_item;
    m.first_item = static_cast<int64_t>(item_matrix.size());
    m.partial_offset = partial_size;
    m.u_offset = u_size;
    m.v_offset = v_size;
    item_matrix.insert(item_matrix.end(), m.num_items, g);
    partial_size += m.num_items * m.w;
    u_size += m.h;
    v_size += m.w;
  }
  const int64_t items = static_cast<int64_t>(item_matrix.size());
  TORCH_CHECK(items < (int64_t{1} << 31), "fastgp::", op, ": too many rows (", items,
              " work items exceed the CUDA grid)");
  const auto long_cpu = at::TensorOptions().dtype(at::kLong);
  at::Tensor meta_dev =
      at::from_blob(meta.data(), {G * static_cast<int64_t>(sizeof(Meta) / sizeof(int64_t))}, long_cpu)
          .to(weights[0].device());
  at::Tensor items_dev = at::from_blob(item_matrix.data(), {items}, long_cpu).to(weights[0].device());

  at::Tensor sigma = at::empty({G}, acc_options);
  at::Tensor u_acc = at::empty({u_size}, acc_options);
  at::Tensor v_acc = at::empty({v_size}, acc_options);
  at::Tensor p = at::empty({u_size}, acc_options);
  at::Tensor partial = at::empty({std::max(partial_size, items)}, acc_options);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fastgp_spectral_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const Meta* md = reinterpret_cast<const Meta*>(meta_dev.const_data_ptr<int64_t>());
    const int64_t* im = items_dev.const_data_ptr<int64_t>();
    acc_t* ua = u_acc.mutable_data_ptr<acc_t>();
    acc_t* va = v_acc.mutable_data_ptr<acc_t>();
    acc_t* pp = p.mutable_data_ptr<acc_t>();
    acc_t* part = partial.mutable_data_ptr<acc_t>();
    acc_t* sg = sigma.mutable_data_ptr<acc_t>();
    init_kernel<scalar_t, acc_t><<<G, kThreads, 0, stream>>>(md, ua, va);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (n_iterations == 0) {
      if (items > 0) {
        pass_kernel<scalar_t, acc_t, true><<<items, kThreads, 0, stream>>>(md, im, ua, va, pp, part);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      sigma_kernel<acc_t><<<G, 32, 0, stream>>>(md, part, sg);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    for (int64_t it = 0; it < n_iterations; ++it) {
      if (items > 0) {
        pass_kernel<scalar_t, acc_t, false><<<items, kThreads, 0, stream>>>(md, im, ua, va, pp, part);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      finish_kernel<scalar_t, acc_t><<<G, kThreads, 0, stream>>>(md, ua, va, pp, part,
                                                                   static_cast<acc_t>(eps), sg);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return sigma;
}

at::Tensor spectral_power_iteration_cuda(const at::Tensor& weight, const at::Tensor& u,
                                         const at::Tensor& v, int64_t n_iterations, double eps) {
  return run("spectral_power_iteration", {weight}, {u}, {v}, n_iterations, eps).squeeze(0);
}

at::Tensor spectral_power_iteration_grouped_cuda(at::TensorList weights, at::TensorList us,
                                                 at::TensorList vs, int64_t n_iterations,
                                                 double eps) {
  return run("spectral_power_iteration_grouped", weights, us, vs, n_iterations, eps);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CUDA, m) {
  m.impl("spectral_power_iteration", &spectral_power_iteration_cuda);
  m.impl("spectral_power_iteration_grouped", &spectral_power_iteration_grouped_cuda);
}

}  // namespace fastgp
