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
// deterministic and needs no atomics. int64 indexing; half/bfloat16 accumulated in float.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/macros/Macros.h>

#include <cstdint>

#include "fastgp/augment.h"
#include "launch.cuh"

namespace fastgp {
namespace {

using augment::clamp_shift;
using augment::Geometry;
using augment::preimages;
using augment::source_index;

// Reflect padding reflects once: |dy| < H and |dx| < W, the range the public API admits (checked
// on the device: a host check would wait for the GPU).
__device__ __forceinline__ void assert_reflect_range(int64_t dy, int64_t dx, const Geometry& g) {
  if (g.mode == augment::kReflect) {
    CUDA_KERNEL_ASSERT(augment::in_reflect_range(dy, g.H) && augment::in_reflect_range(dx, g.W));
  }
}

// Whether output pixel (i, j) of output image n lies in its cutout box (boxes may be null).
__device__ __forceinline__ bool in_box(const int64_t* __restrict__ boxes, int64_t n, int64_t i,
                                       int64_t j) {
  if (boxes == nullptr) return false;
  const int64_t* box = boxes + 4 * n;
  return i >= box[0] && i < box[0] + box[2] && j >= box[1] && j < box[1] + box[3];
}

// out[n, p, i, j, e] = x[b, p, src(i, dy), src(j, dx), e], 0 outside the image, times 0 in the box.
template <typename scalar_t>
__global__ void translate_kernel(const scalar_t* __restrict__ x,
                                 const int64_t* __restrict__ shifts,
                                 const int64_t* __restrict__ boxes, scalar_t* __restrict__ out,
                                 Geometry g, int64_t total) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    int64_t t = idx;
    const int64_t e = t % g.E;
    t /= g.E;
    const int64_t j = t % g.W;
    t /= g.W;
    const int64_t i = t % g.H;
    t /= g.H;
    const int64_t p = t % g.P;
    const int64_t n = t / g.P;
    const int64_t b = n / g.K;
    assert_reflect_range(shifts[2 * n], shifts[2 * n + 1], g);
    const int64_t sy = source_index(i, clamp_shift(shifts[2 * n], g.H), g.H, g.mode);
    const int64_t sx = source_index(j, clamp_shift(shifts[2 * n + 1], g.W), g.W, g.mode);
    scalar_t v = scalar_t(0);
    if (sy >= 0 && sx >= 0) {
      v = x[(((b * g.P + p) * g.H + sy) * g.W + sx) * g.E + e];
    }
    // Multiplied by 0 in the box, as DiffAugment's mask: a NaN/inf pixel there stays NaN.
    out[idx] = in_box(boxes, n, i, j) ? static_cast<scalar_t>(v * scalar_t(0)) : v;
  }
}

// grad_x[b, p, y, x, e] = sum over k, and over the output pixels (i, j) of copy k whose source
// is (y, x), of grad[b*K + k, p, i, j, e] (times 0 in the box).
template <typename scalar_t>
__global__ void translate_backward_kernel(const scalar_t* __restrict__ grad,
                                          const int64_t* __restrict__ shifts,
                                          const int64_t* __restrict__ boxes,
                                          scalar_t* __restrict__ out, Geometry g, int64_t total) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += stride) {
    int64_t t = idx;
    const int64_t e = t % g.E;
    t /= g.E;
    const int64_t x = t % g.W;
    t /= g.W;
    const int64_t y = t % g.H;
    t /= g.H;
    const int64_t p = t % g.P;
    const int64_t b = t / g.P;
    acc_t acc = 0;
    for (int64_t k = 0; k < g.K; ++k) {
      const int64_t n = b * g.K + k;
      assert_reflect_range(shifts[2 * n], shifts[2 * n + 1], g);
      int64_t ylo[3], yhi[3], xlo[3], xhi[3];
      const int ny = preimages(y, clamp_shift(shifts[2 * n], g.H), g.H, g.mode, ylo, yhi);
      const int nx = preimages(x, clamp_shift(shifts[2 * n + 1], g.W), g.W, g.mode, xlo, xhi);
      const scalar_t* plane = grad + (n * g.P + p) * g.H * g.W * g.E;
      for (int a = 0; a < ny; ++a) {
        for (int64_t i = ylo[a]; i <= yhi[a]; ++i) {
          for (int c = 0; c < nx; ++c) {
            for (int64_t j = xlo[c]; j <= xhi[c]; ++j) {
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

}  // namespace

namespace augment {

void launch_translate_cuda(const at::Tensor& in, const at::Tensor& shifts, const at::Tensor& boxes,
                           const at::Tensor& out, const Geometry& g) {
  const int64_t total = out.numel();
  const unsigned int blocks = grid_for(total);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "fastgp_translate_cuda", [&] {
        translate_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            in.const_data_ptr<scalar_t>(), shifts.const_data_ptr<int64_t>(), boxes_ptr(boxes),
            out.mutable_data_ptr<scalar_t>(), g, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
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
        translate_backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            grad.const_data_ptr<scalar_t>(), shifts.const_data_ptr<int64_t>(), boxes_ptr(boxes),
            out.mutable_data_ptr<scalar_t>(), g, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace augment
}  // namespace fastgp
