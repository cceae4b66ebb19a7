// CUDA kernels of the `spectral` family: fused power iterations of spectral normalization for a
// group of matrices of different shapes (one matrix is a group of one), and their launch, called
// by the host functions of csrc/host/spectral.cpp. CPU twins in csrc/cpu/spectral.cpp, schemas in
// csrc/ops.cpp, finishing math in csrc/fastgp/spectral.h.
//
// The multi-tensor pattern of apex's multi_tensor_apply: a metadata table (pointers, sizes,
// offsets of every matrix, in device memory, cached: TableCache) and a table of work items
// (matrix, chunk of rows); one launch covers every item of every matrix. Per iteration:
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
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <list>
#include <mutex>
#include <vector>

#include "fastgp/spectral.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace fastgp {
namespace {

constexpr int kWarps = kWarpsPerBlock;
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

// The group on the host: one Meta per matrix and the matrix of each work item.
struct GroupTable {
  std::vector<Meta> meta;
  std::vector<int64_t> item_matrix;
  int64_t partial_size = 0, u_size = 0, v_size = 0;  // elements of the acc buffers
};

// Work items of at most kMaxRows rows and about kItemElems elements; each matrix's state and
// partials at its offsets in the shared buffers.
GroupTable build_table(at::TensorList weights, at::TensorList us, at::TensorList vs) {
  GroupTable table;
  table.meta.resize(weights.size());
  for (size_t g = 0; g < weights.size(); ++g) {
    const at::Tensor& W = weights[g];
    Meta& m = table.meta[g];
    m.W = reinterpret_cast<int64_t>(W.const_data_ptr());
    m.u = reinterpret_cast<int64_t>(us[g].data_ptr());
    m.v = reinterpret_cast<int64_t>(vs[g].data_ptr());
    m.h = W.size(0);
    m.w = W.size(1);
    m.ld = W.stride(0);
    m.rows_per_item =
        std::min(kMaxRows, std::max<int64_t>(1, spectral::kItemElems / std::max<int64_t>(m.w, 1)));
    m.num_items = (m.h + m.rows_per_item - 1) / m.rows_per_item;
    m.first_item = static_cast<int64_t>(table.item_matrix.size());
    m.partial_offset = table.partial_size;
    m.u_offset = table.u_size;
    m.v_offset = table.v_size;
    table.item_matrix.insert(table.item_matrix.end(), m.num_items, static_cast<int64_t>(g));
    table.partial_size += m.num_items * m.w;
    table.u_size += m.h;
    table.v_size += m.w;
  }
  return table;
}

// Device copies of group tables (Meta rows then the item -> matrix map, one int64 array), the
// most recent kTableCacheSize kept. A table is a pure function of its contents, which hold the
// data pointers of W, u and v: a model's SN layers keep their storage from step to step, so after
// the first call the table is found here and a call does no host-to-device copy. Such a copy
// (from pageable memory) waits for the GPU and cannot be captured in a CUDA graph: capture after
// one warm-up call, as for any op. The same cache as the Triton launcher's (_tables in
// fastgp/triton/spectral.py). Leaked on purpose: device memory must not be freed by a static
// destructor after the CUDA runtime has shut down.
constexpr size_t kTableCacheSize = 64;

class TableCache {
 public:
  at::Tensor get(const std::vector<int64_t>& host, const at::Device& device) {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->device == device && it->host == host) {
        entries_.splice(entries_.begin(), entries_, it);  // most recently used first
        return entries_.front().table;
      }
    }
    // A blocking copy: the host vector may die after it.
    at::Tensor table = at::from_blob(const_cast<int64_t*>(host.data()),
                                     {static_cast<int64_t>(host.size())},
                                     at::TensorOptions().dtype(at::kLong))
                           .to(device);
    entries_.push_front(Entry{host, device, table});
    if (entries_.size() > kTableCacheSize) entries_.pop_back();
    return table;
  }

 private:
  struct Entry {
    std::vector<int64_t> host;
    at::Device device;
    at::Tensor table;
  };
  std::mutex mutex_;
  std::list<Entry> entries_;
};

TableCache& table_cache() {
  static TableCache* cache = new TableCache();  // never destroyed (see above)
  return *cache;
}

// The device copy of a group's table: G Meta rows, then the matrix of each work item.
at::Tensor device_table(const GroupTable& table, const at::Device& device) {
  const auto* meta = reinterpret_cast<const int64_t*>(table.meta.data());
  std::vector<int64_t> host(meta, meta + table.meta.size() * (sizeof(Meta) / sizeof(int64_t)));
  host.insert(host.end(), table.item_matrix.begin(), table.item_matrix.end());
  return table_cache().get(host, device);
}

// The iterations on the device, in acc precision: init, then per iteration one pass over every W
// and one finish per matrix (or, with no iteration, the σ-only pass and its sum).
template <typename scalar_t, typename acc_t>
void run_iterations(const Meta* meta, const int64_t* item_matrix, int64_t G, int64_t items,
                    int64_t n_iterations, acc_t eps, acc_t* u_acc, acc_t* v_acc, acc_t* p,
                    acc_t* partial, acc_t* sigma, cudaStream_t stream) {
  const unsigned int groups = static_cast<unsigned int>(G);
  const unsigned int blocks = static_cast<unsigned int>(items);
  init_kernel<scalar_t, acc_t><<<groups, kThreads, 0, stream>>>(meta, u_acc, v_acc);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (n_iterations == 0) {
    if (items > 0) {
      pass_kernel<scalar_t, acc_t, true><<<blocks, kThreads, 0, stream>>>(meta, item_matrix, u_acc,
                                                                          v_acc, p, partial);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    sigma_kernel<acc_t><<<groups, 32, 0, stream>>>(meta, partial, sigma);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  for (int64_t it = 0; it < n_iterations; ++it) {
    if (items > 0) {
      pass_kernel<scalar_t, acc_t, false><<<blocks, kThreads, 0, stream>>>(meta, item_matrix, u_acc,
                                                                           v_acc, p, partial);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    finish_kernel<scalar_t, acc_t><<<groups, kThreads, 0, stream>>>(meta, u_acc, v_acc, p, partial,
                                                                    eps, sigma);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace

namespace spectral {

void launch_spectral_power_iteration_cuda(at::TensorList weights, at::TensorList us,
                                          at::TensorList vs, int64_t n_iterations, double eps,
                                          const at::Tensor& sigma) {
  const int64_t G = static_cast<int64_t>(weights.size());
  const GroupTable table = build_table(weights, us, vs);
  const int64_t items = static_cast<int64_t>(table.item_matrix.size());
  TORCH_CHECK(items < (int64_t{1} << 31) && G < (int64_t{1} << 31),
              "fastgp::spectral_power_iteration: too many rows (", items,
              " work items exceed the CUDA grid)");
  const at::Device device = weights[0].device();
  const at::Tensor tables = device_table(table, device);
  const int64_t* meta = tables.const_data_ptr<int64_t>();
  const int64_t* item_matrix = meta + G * static_cast<int64_t>(sizeof(Meta) / sizeof(int64_t));
  const auto acc_options = sigma.options();
  at::Tensor u_acc = at::empty({table.u_size}, acc_options);
  at::Tensor v_acc = at::empty({table.v_size}, acc_options);
  at::Tensor p = at::empty({table.u_size}, acc_options);
  at::Tensor partial = at::empty({std::max(table.partial_size, items)}, acc_options);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, weights[0].scalar_type(), "fastgp_spectral_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        run_iterations<scalar_t, acc_t>(
            reinterpret_cast<const Meta*>(meta), item_matrix, G, items, n_iterations,
            static_cast<acc_t>(eps), u_acc.mutable_data_ptr<acc_t>(),
            v_acc.mutable_data_ptr<acc_t>(), p.mutable_data_ptr<acc_t>(),
            partial.mutable_data_ptr<acc_t>(), sigma.mutable_data_ptr<acc_t>(), stream);
      });
}

}  // namespace spectral
}  // namespace fastgp
