// CUDA kernels of the `augment` family: batched integer translation (with an optional cutout box
// per output image) and its adjoint, and their launches, called by the host functions of
// csrc/host/augment.cpp. CPU twins in csrc/cpu/augment.cpp, schemas in csrc/ops.cpp, index math
// shared through csrc/fastgp/augment.h.
//
// Images are viewed as [rows, P, H, W, E] raw memory (ImageView: contiguous P = C, E = 1;
// channels_last P = 1, E = C). Forward: one thread per output element, a gather (coalesced
// writes; reads coalesced along rows). Adjoint: one thread per element of grad_x, summing the
// output elements that read it (its preimage: one pixel for zeros, up to three per axis for
// reflect, an interval per axis for replicate) over the K copies in a fixed order, so it is
// deterministic and needs no atomics. 32-bit index arithmetic with precomputed divisors where
// every index fits (Dividers), int64 otherwise; half/bfloat16 accumulated in float.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/detail/IntegerDivider.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <limits>

#include "fastgp/augment.h"
#include "launch.cuh"

namespace fastgp {
namespace {

using augment::clamp_shift;
using augment::Geometry;
using augment::preimages;
using augment::source_index;

// Whether output pixel (i, j) of output image n lies in its cutout box (boxes may be null).
__device__ __forceinline__ bool in_box(const int64_t* __restrict__ boxes, int64_t n, int64_t i,
                                       int64_t j) {
  if (boxes == nullptr) return false;
  const int64_t* box = boxes + 4 * n;
  return i >= box[0] && i < box[0] + box[2] && j >= box[1] && j < box[1] + box[3];
}

// The divisors of a flat element index into (n or b, p, i, j, e). Division is the kernels' main
// arithmetic cost (an int64 division is a ~70-instruction software routine on NVIDIA GPUs, and a
// forward element needs five): with index_t = unsigned int (every index of the launch below
// 2^31) each is a multiply-high and a shift (ATen's IntDivider, divisors precomputed on the host),
// so the forward is bound by memory, not arithmetic; int64 otherwise.
template <typename index_t>
struct Dividers {
  at::cuda::detail::IntDivider<index_t> E, W, H, P, K;
  explicit Dividers(const Geometry& g)
      : E(static_cast<index_t>(g.E)), W(static_cast<index_t>(g.W)), H(static_cast<index_t>(g.H)),
        P(static_cast<index_t>(g.P)), K(static_cast<index_t>(g.K)) {}
};

// The coordinates of flat index idx of an image [rows, P, H, W, E]: (row, p, i, j, e).
struct Coordinates {
  int64_t row, p, i, j, e;
};

template <typename index_t>
__device__ __forceinline__ Coordinates coordinates(index_t idx, const Dividers<index_t>& d) {
  const auto e = d.E.divmod(idx);
  const auto j = d.W.divmod(e.div);
  const auto i = d.H.divmod(j.div);
  const auto p = d.P.divmod(i.div);
  return {static_cast<int64_t>(p.div), static_cast<int64_t>(p.mod), static_cast<int64_t>(i.mod),
          static_cast<int64_t>(j.mod), static_cast<int64_t>(e.mod)};
}

// out[n, p, i, j, e] = x[b, p, src(i, dy), src(j, dx), e], 0 outside the image, times 0 in the box.
template <typename scalar_t, typename index_t>
__global__ void translate_kernel(const scalar_t* __restrict__ x,
                                 const int64_t* __restrict__ shifts,
                                 const int64_t* __restrict__ boxes, scalar_t* __restrict__ out,
                                 Geometry g, Dividers<index_t> d, index_t total) {
  // total <= 2^31 - 1 for unsigned int: idx + stride cannot wrap around.
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t idx = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const Coordinates c = coordinates(idx, d);
    const int64_t n = c.row;
    const int64_t b = static_cast<int64_t>(d.K.div(static_cast<index_t>(n)));
    const int64_t sy = source_index(c.i, clamp_shift(shifts[2 * n], g.H), g.H, g.mode);
    const int64_t sx = source_index(c.j, clamp_shift(shifts[2 * n + 1], g.W), g.W, g.mode);
    scalar_t v = scalar_t(0);
    if (sy >= 0 && sx >= 0) {
      // Below total (x has total / K elements): index_t holds it.
      const index_t plane = static_cast<index_t>(b * g.P + c.p) * static_cast<index_t>(g.H);
      v = x[((plane + static_cast<index_t>(sy)) * static_cast<index_t>(g.W) + static_cast<index_t>(sx)) *
                static_cast<index_t>(g.E) +
            static_cast<index_t>(c.e)];
    }
    // Multiplied by 0 in the box, as DiffAugment's mask: a NaN/inf pixel there stays NaN.
    out[idx] = in_box(boxes, n, c.i, c.j) ? static_cast<scalar_t>(v * scalar_t(0)) : v;
  }
}

// grad_x[b, p, y, x, e] = sum over k, and over the output pixels (i, j) of copy k whose source
// is (y, x), of grad[b*K + k, p, i, j, e] (times 0 in the box). Indices into grad (K times
// larger than grad_x) in int64.
template <typename scalar_t, typename index_t>
__global__ void translate_backward_kernel(const scalar_t* __restrict__ grad,
                                          const int64_t* __restrict__ shifts,
                                          const int64_t* __restrict__ boxes,
                                          scalar_t* __restrict__ out, Geometry g,
                                          Dividers<index_t> d, index_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const index_t stride = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t idx = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    const Coordinates c = coordinates(idx, d);
    const int64_t b = c.row, p = c.p, y = c.i, x = c.j, e = c.e;
    acc_t acc = 0;
    for (int64_t k = 0; k < g.K; ++k) {
      const int64_t n = b * g.K + k;
        int64_t ylo[3], yhi[3], xlo[3], xhi[3];
      const int ny = preimages(y, clamp_shift(shifts[2 * n], g.H), g.H, g.mode, ylo, yhi);
      const int nx = preimages(x, clamp_shift(shifts[2 * n + 1], g.W), g.W, g.mode, xlo, xhi);
      const scalar_t* plane = grad + (n * g.P + p) * g.H * g.W * g.E;
      for (int a = 0; a < ny; ++a) {
        for (int64_t i = ylo[a]; i <= yhi[a]; ++i) {
          for (int c2 = 0; c2 < nx; ++c2) {
            for (int64_t j = xlo[c2]; j <= xhi[c2]; ++j) {
              const acc_t v = static_cast<acc_t>(plane[(i * g.W + j) * g.E + e]);
              // grad * mask: times 0 in the box (NaN/inf there gives NaN, as DiffAugment).
              acc += in_box(boxes, n, i, j) ? v * acc_t(0) : v;
            }
          }
        }
      }
    }
    out[idx] = static_cast<scalar_t>(acc);
  }
}

// Launches kernel<index_t> with 32-bit index arithmetic when every flat index of `largest`
// elements fits (the common case), int64 otherwise.
template <typename Launch>
void with_index_type(int64_t largest, const Launch& launch) {
  if (largest <= std::numeric_limits<int32_t>::max()) {
    launch(static_cast<unsigned int>(0));
  } else {
    launch(int64_t{0});
  }
}

}  // namespace

namespace augment {

void launch_translate_cuda(const at::Tensor& in, const at::Tensor& shifts, const at::Tensor& boxes,
                           const at::Tensor& out, const Geometry& g) {
  const int64_t total = out.numel();
  const unsigned int blocks = grid_for(total);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "fastgp_translate_cuda", [&] {
        // out (B·K images) is the largest tensor indexed: x has total / K elements.
        with_index_type(total, [&](auto zero) {
          using index_t = decltype(zero);
          translate_kernel<scalar_t, index_t><<<blocks, kThreads, 0, stream>>>(
              in.const_data_ptr<scalar_t>(), shifts.const_data_ptr<int64_t>(), boxes_ptr(boxes),
              out.mutable_data_ptr<scalar_t>(), g, Dividers<index_t>(g),
              static_cast<index_t>(total));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
}

void launch_translate_backward_cuda(const at::Tensor& grad, const at::Tensor& shifts,
                                    const at::Tensor& boxes, const at::Tensor& out,
                                    const Geometry& g) {
  const int64_t total = out.numel();
  const unsigned int blocks = grid_for(total);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_translate_backward_cuda", [&] {
        // The flat index runs over grad_x (total elements); grad is indexed in int64.
        with_index_type(total, [&](auto zero) {
          using index_t = decltype(zero);
          translate_backward_kernel<scalar_t, index_t><<<blocks, kThreads, 0, stream>>>(
              grad.const_data_ptr<scalar_t>(), shifts.const_data_ptr<int64_t>(), boxes_ptr(boxes),
              out.mutable_data_ptr<scalar_t>(), g, Dividers<index_t>(g),
              static_cast<index_t>(total));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
}

}  // namespace augment
}  // namespace fastgp
