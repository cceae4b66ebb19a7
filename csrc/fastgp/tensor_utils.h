// Host-side helpers of the ops' host functions (csrc/host/<family>.cpp): argument checks with
// clear messages, the "sample-major dense" layout rule that lets kernels run over raw memory,
// and the call of an op's per-device launch.
//
// Every op has ONE host function, registered for the CPU and the CUDA dispatch keys: it checks
// the op's invariants (dtype, device, ranks, shapes, sizes: what memory safety rests on), chooses
// the layout, allocates the outputs, and then calls the launch of the tensors' device,
// launch_<op>_cpu (csrc/cpu/<family>.cpp) or launch_<op>_cuda (csrc/cuda/<family>.cu), declared
// in csrc/fastgp/<family>.h, with the tensor's device made current by
// `const c10::OptionalDeviceGuard guard(launch_device(x));`. A launch
// runs kernels; the only checks it makes are those that read tensor data (the CPU launch on the
// host). A CUDA kernel never asserts (a failed CUDA_KERNEL_ASSERT poisons the whole CUDA context,
// failing every later call in the process): what memory safety rests on in tensor data is checked
// by the host function before the launch (one reduction and one host sync). User-facing
// validation (ValueError / TypeError naming the argument) is the Python public layer's
// (fastgp/<family>.py).
#pragma once

#include <ATen/DeviceGuard.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>

// FASTGP_LAUNCH(launch_translate, x, args...) calls launch_translate_cuda(args...) when x is a CUDA
// tensor and launch_translate_cpu(args...) otherwise. Without the CUDA kernels (setup.py defines
// FASTGP_WITH_CUDA when it builds them) only the CPU key is registered, so only CPU tensors come.
#ifdef FASTGP_WITH_CUDA
#define FASTGP_LAUNCH(launch, tensor, ...) \
  ((tensor).is_cuda() ? launch##_cuda(__VA_ARGS__) : launch##_cpu(__VA_ARGS__))
#else
#define FASTGP_LAUNCH(launch, tensor, ...) launch##_cpu(__VA_ARGS__)
#endif

// Registers a family's host functions, `void register_<family>(torch::Library&)`, for the CPU key
// and (when built) the CUDA key.
#ifdef FASTGP_WITH_CUDA
#define FASTGP_REGISTER_HOST_FUNCTIONS(register_fn)          \
  TORCH_LIBRARY_IMPL(fastgp, CPU, m) { register_fn(m); }     \
  TORCH_LIBRARY_IMPL(fastgp, CUDA, m) { register_fn(m); }
#else
#define FASTGP_REGISTER_HOST_FUNCTIONS(register_fn) \
  TORCH_LIBRARY_IMPL(fastgp, CPU, m) { register_fn(m); }
#endif

namespace fastgp {

// The device a host function makes current while it allocates and launches: a CUDA tensor's
// device; none for CPU tensors (nothing to switch, and no guard cost on the CPU path).
inline std::optional<c10::Device> launch_device(const at::Tensor& t) {
  if (t.is_cuda()) return t.device();
  return std::nullopt;
}

// B = size(0): the batch (sample) dimension.
inline int64_t num_rows(const at::Tensor& t) { return t.size(0); }

// N = number of elements of one sample (product of the non-batch sizes; 1 for rank-1 input).
// Computed from the sizes, not numel / B, so that B == 0 is not a division by zero.
inline int64_t row_numel(const at::Tensor& t) {
  int64_t n = 1;
  for (int64_t d = 1; d < t.dim(); ++d) n *= t.size(d);
  return n;
}

// True when every sample occupies one contiguous block of memory, sample b at offset b*N, and
// the whole tensor is a dense non-overlapping block. Holds for contiguous and channels_last
// (and any other dense permutation that keeps dim 0 outermost). Proof sketch: a dense tensor
// with stride(0) == N maps sample b to b*N + S with |S| = N; the last sample must stay below
// B*N, so S lies in [0, N) and is all of it.
inline bool is_sample_major_dense(const at::Tensor& t) {
  if (!t.is_non_overlapping_and_dense()) return false;
  return t.size(0) <= 1 || t.stride(0) == row_numel(t);
}

// Same element -> memory offset map. Strides of size-1 dimensions never contribute to an
// offset, so they are ignored (is_contiguous() ignores them too).
inline bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

// Inputs of a two-tensor op (real/fake) ready for a raw-memory kernel, and its output. When both
// share one sample-major dense layout they are used as they are and the output is allocated
// with the same strides (so channels_last stays channels_last); otherwise contiguous copies and
// a contiguous output. Inputs are never written.
struct PairLayout {
  at::Tensor a, b, out;
};

inline PairLayout prepare_pair(const at::Tensor& a, const at::Tensor& b) {
  if (is_sample_major_dense(a) && same_layout(a, b)) return {a, b, at::empty_like(a)};
  return {a.contiguous(), b.contiguous(), at::empty(a.sizes(), a.options())};
}

// One-tensor version (grad of the penalty head): the input to read, and the output layout.
inline PairLayout prepare_single(const at::Tensor& a) {
  if (is_sample_major_dense(a)) return {a, at::Tensor(), at::empty_like(a)};
  return {a.contiguous(), at::Tensor(), at::empty(a.sizes(), a.options())};
}

// float16, bfloat16, float32, float64: the dtypes every fastgp kernel dispatches.
inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// The accumulation dtype: float32 for half/bfloat16/float32 inputs, float64 for float64.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_float_input(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_supported_float(t.scalar_type()), "fastgp::", op, ": ", name,
              " must be float16, bfloat16, float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.dim() >= 1, "fastgp::", op, ": ", name,
              " must have at least one dimension (the batch), got a 0-d tensor");
}

inline void check_same_device(const char* op, const char* name, const at::Tensor& t,
                              const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), "fastgp::", op, ": ", name, " is on ", t.device(),
              " but ", ref_name, " is on ", ref.device(), "; all tensors must be on one device");
}

// A [B] per-sample vector (alpha, grad_penalty, norm).
inline void check_row_vector(const char* op, const char* name, const at::Tensor& t,
                             int64_t B, at::ScalarType dtype, const at::Tensor& ref) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == B, "fastgp::", op, ": ", name,
              " must have shape [", B, "] (one value per sample), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, "fastgp::", op, ": ", name, " must have dtype ", dtype,
              ", got ", t.scalar_type());
  check_same_device(op, name, t, "the input", ref);
}

}  // namespace fastgp
