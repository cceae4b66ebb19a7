// CUDA kernels of the `augment` family: batched integer translation (with an optional cutout box
// per output image) and its adjoint. CPU twins in csrc/cpu/augment.cpp, schemas in csrc/ops.cpp,
// index math shared through csrc/fastgp/augment.h.
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
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

#include "fastgp/augment.h"
#include "fastgp/tensor_utils.h"

namespace fastgp {
namespace {

using augment::preimages;
using augment::source_index;

constexpr int kThreads = 256;    // threads per block (a multiple of 32)
constexpr int kBlocksPerSm = 8;  // 2048 resident threads per SM / kThreads

struct Geometry {
  int64_t B, K, P, H, W, E;
  int mode;
};

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
    const int64_t sy = source_index(i, shifts[2 * n], g.H, g.mode);
    const int64_t sx = source_index(j, shifts[2 * n + 1], g.W, g.mode);
    scalar_t v = scalar_t(0);
    if (sy >= 0 && sx >= 0) {
      v = x[(((b * g.P + p) * g.H + sy) * g.W + sx) * g.E + e];
    }
    // Multiplied by 0 in the box, as DiffAugment's mask: a NaN/inf pixel there stays NaN.
    out[idx] = in_box(boxes, n, i, j) ? static_cast<scalar_t>(v * scalar_t(0)) : v;
  }
}

// grad_x[b, p, y, x, e] = sum over k, and over the output pixels (i, j) of copy k whose source
// is (y, x) and that are not in the box, of grad[b*K + k, p, i, j, e].
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
      int64_t ylo[3], yhi[3], xlo[3], xhi[3];
      const int ny = preimages(y, shifts[2 * n], g.H, g.mode, ylo, yhi);
      const int nx = preimages(x, shifts[2 * n + 1], g.W, g.mode, xlo, xhi);
      const scalar_t* plane = grad + (n * g.P + p) * g.H * g.W * g.E;
      for (int a = 0; a < ny; ++a) {
        for (int64_t i = ylo[a]; i <= yhi[a]; ++i) {
          for (int c = 0; c < nx; ++c) {
            for (int64_t j = xlo[c]; j <= xhi[c]; ++j) {
              if (!in_box(boxes, n, i, j)) {
                acc += static_cast<acc_t>(plane[(i * g.W + j) * g.E + e]);
              }
            }
          }
        }
      }
    }
    out[idx] = static_cast<scalar_t>(acc);
  }
}

unsigned int grid_for(int64_t work) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t wanted = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, sms * kBlocksPerSm)));
}

at::Tensor translate_cuda(const at::Tensor& x, const at::Tensor& shifts,
                          const std::optional<at::Tensor>& boxes, c10::string_view padding) {
  constexpr const char* op = "translate";
  augment::check_image(op, "x", x);
  const int mode = augment::parse_padding(op, std::string(padding));
  const int64_t B = x.size(0);
  augment::check_shifts(op, shifts, B, x);
  TORCH_CHECK(x.is_cuda(), "fastgp::translate: the CUDA kernel got tensors on ", x.device());
  const c10::cuda::CUDAGuard device_guard(x.device());
  // The reflect range (|dy| < H, |dx| < W) is checked by the Python API: checking it here would
  // synchronize with the device. Out-of-range shifts are clamped, never read out of bounds.
  const at::Tensor s = shifts.contiguous();
  const at::Tensor bx = augment::check_boxes(op, boxes, s, x);
  const augment::ImageView v = augment::image_view(x);
  const int64_t K = s.size(1);
  at::Tensor out = augment::empty_image(v, B * K, x.size(1));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const Geometry g{B, K, v.P, v.H, v.W, v.E, mode};
  const unsigned int blocks = grid_for(total);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "fastgp_translate_cuda", [&] {
        translate_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            v.t.const_data_ptr<scalar_t>(), s.const_data_ptr<int64_t>(), augment::boxes_ptr(bx),
            out.mutable_data_ptr<scalar_t>(), g, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

at::Tensor translate_backward_cuda(const at::Tensor& grad, const at::Tensor& shifts,
                                   const std::optional<at::Tensor>& boxes,
                                   c10::string_view padding) {
  constexpr const char* op = "translate_backward";
  const std::pair<int64_t, int64_t> batch_copies = augment::check_backward_args(op, grad, shifts);
  const int64_t B = batch_copies.first, K = batch_copies.second;
  const int mode = augment::parse_padding(op, std::string(padding));
  TORCH_CHECK(grad.is_cuda(), "fastgp::translate_backward: the CUDA kernel got tensors on ",
              grad.device());
  const c10::cuda::CUDAGuard device_guard(grad.device());
  const at::Tensor s = shifts.contiguous();
  const at::Tensor bx = augment::check_boxes(op, boxes, s, grad);
  const augment::ImageView v = augment::image_view(grad);
  at::Tensor out = augment::empty_image(v, B, grad.size(1));
  const int64_t total = out.numel();
  if (total == 0) return out;
  const Geometry g{B, K, v.P, v.H, v.W, v.E, mode};
  const unsigned int blocks = grid_for(total);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "fastgp_translate_backward_cuda", [&] {
        translate_backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
            v.t.const_data_ptr<scalar_t>(), s.const_data_ptr<int64_t>(), augment::boxes_ptr(bx),
            out.mutable_data_ptr<scalar_t>(), g, total);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, CUDA, m) {
  m.impl("translate", &translate_cuda);
  m.impl("translate_backward", &translate_backward_cuda);
}

}  // namespace fastgp
