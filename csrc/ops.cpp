// Operator schemas of the fastgp library (torch.ops.fastgp.*) and the Python module fastgp._C.
//
// Each op has one host function (csrc/host/<family>.cpp: checks, layout, allocation), registered
// for the CPU key and, when the CUDA kernels are built, the CUDA key; it calls the per-device
// launch, launch_<op>_cpu (csrc/cpu/<family>.cpp) or launch_<op>_cuda (csrc/cuda/<family>.cu).
// Fake (meta) kernels are registered from Python (fastgp/<family>.py), and so are the autograd
// formulas, except where C++ autograd pays (csrc/autograd/<family>.cpp under
// TORCH_LIBRARY_IMPL(fastgp, Autograd, m): ops whose Python autograd costs as much as the kernels).
#include <Python.h>

#include <torch/library.h>

extern "C" {
// `import fastgp._C` only needs to dlopen this library so that the static TORCH_LIBRARY
// initializers below run; the module itself is empty apart from WITH_CUDA. A plain
// PyModule_Create (no pybind11) keeps the build small, as pytorch/extension-cpp does.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // m_name
      "fastgp C++/CUDA kernels; the operators are torch.ops.fastgp.*",  // m_doc
      -1,    // m_size
      nullptr,  // m_methods
  };
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  // Whether the CUDA kernels were compiled in (setup.py defines FASTGP_WITH_CUDA for all
  // translation units when it builds csrc/cuda/*.cu), for fastgp.backend's diagnostics.
#ifdef FASTGP_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (PyModule_AddIntConstant(module, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
}

TORCH_LIBRARY(fastgp, m) {
  // ---- family `penalty` -------------------------------------------------------------------
  // B = size(0) samples; N = numel / B elements per sample; "acc" = float32 for
  // float16/bfloat16/float32 inputs, float64 for float64 inputs.

  // out[b] = alpha[b] * real[b] + (1 - alpha[b]) * fake[b], in acc precision.
  // real, fake: same shape/dtype/device, rank >= 1; alpha: [B], the dtype of real.
  m.def("interpolate(Tensor real, Tensor fake, Tensor alpha) -> Tensor");

  // (out, alpha): alpha[b] = (dtype) tl.rand(seed, b) (Philox4x32-10, bit-identical to Triton),
  // out = interpolate(real, fake, alpha). seed: int64 tensor with one element on real's device.
  m.def("interpolate_random(Tensor real, Tensor fake, Tensor seed) -> (Tensor, Tensor)");

  // (penalty [B], norm [B]) in acc dtype: norm = ||grad[b]||_2 over all non-batch elements;
  // penalty = norm^2 (from the sum of squares) when center == 0, else
  // (one_sided ? max(norm - center, 0) : norm - center)^2.
  m.def(
      "grad_norm_penalty_forward(Tensor grad, float center, bool one_sided) -> (Tensor, Tensor)");

  // grad_in[b] = grad[b] * grad_penalty[b] * coef[b]; coef = 2 when center == 0, else
  // 2 * d / norm (0 where norm == 0). grad_penalty, norm: [B] in acc dtype.
  m.def(
      "grad_norm_penalty_backward(Tensor grad_penalty, Tensor grad, Tensor norm, float center, "
      "bool one_sided) -> Tensor");

  // scale * sum_b penalty[b] (0-d, acc dtype): the head with its mean (scale = 1/B) or sum
  // reduction in one autograd node. The three head ops are differentiable to any order through
  // their C++ autograd (csrc/autograd/penalty.cpp).
  m.def("grad_norm_penalty_sum(Tensor grad, float center, bool one_sided, float scale) -> Tensor");

  // ---- family `spectral` ------------------------------------------------------------------
  // Power iterations of spectral normalization, in the order of
  // torch.nn.utils.parametrizations.spectral_norm: n_iterations times
  //   u = normalize(W v), v = normalize(W^T u), normalize(x) = x / max(||x||_2, eps),
  // updating u [h] and v [w] (contiguous, W's dtype) IN PLACE; float16/bfloat16 iterate in
  // float32. Returns sigma = u^T W v for the final u, v (0-d, acc dtype); with n_iterations == 0
  // u and v are left alone and only sigma is computed. W: [h, w] with any strides.
  m.def(
      "spectral_power_iteration(Tensor weight, Tensor(a!) u, Tensor(b!) v, int n_iterations, "
      "float eps) -> Tensor");

  // The same for a list of matrices of different shapes (one dtype, one device) in one parallel
  // loop / one launch per step; returns sigma [G] in acc dtype.
  m.def(
      "spectral_power_iteration_grouped(Tensor[] weights, Tensor(a!)[] us, Tensor(b!)[] vs, "
      "int n_iterations, float eps) -> Tensor");

  // ---- family `augment` -------------------------------------------------------------------
  // Images [B, C, H, W] (float16/bfloat16/float32/float64); shifts int64 [B, K, 2] of (dy, dx);
  // padding "zeros" | "reflect" | "replicate"; reflect reflects once and needs |dy| < H and
  // |dx| < W (checked on the host for CPU tensors, asserted on the device for CUDA ones), zeros and
  // replicate take any shift (|shift| >= size acts as ±size). An image without pixels (H == 0 or
  // W == 0) gives the empty output for any shift. boxes
  // (optional) int64 [B, K, 4] of (top, left, height, width): a cutout rectangle per output image,
  // in output coordinates, zeroed after the translation (DiffAugment's translation + cutout, fused).

  // out[b*K + k, c, i, j] = x[b, c, src(i, dy), src(j, dx)] (the padding value where src is
  // outside the image), (dy, dx) = shifts[b, k]: content moves right/down for positive shifts.
  // Output [B*K, C, H, W], channels_last when x is (else contiguous).
  m.def("translate(Tensor x, Tensor shifts, Tensor? boxes, str padding) -> Tensor");

  // The adjoint of translate w.r.t. x: grad [B*K, C, H, W] (its boxes zeroed) -> [B, C, H, W],
  // summed over the K copies, deterministic (no atomics). For zeros padding and no boxes it
  // equals the sum over k of translate by the negated shifts.
  m.def("translate_backward(Tensor grad, Tensor shifts, Tensor? boxes, str padding) -> Tensor");

  // ---- family `select` (Fake-As-Real) ---------------------------------------------------------
  // Order of the M candidates: ascending logit, NaN last, ties by ascending index (the order of
  // torch.sort(logits, stable=True)); indices = the first k of that order (int64 [k]).
  // logits: [M] float; candidates: [M, ...] float of any rank >= 1; 1 <= k <= M.
  // Outputs keep channels_last for channels_last candidates (real made to match), else contiguous.

  // (selected [k, ...] = candidates[indices], indices).
  m.def("far_select(Tensor logits, Tensor candidates, int k) -> (Tensor, Tensor)");

  // (batch [R + k, ...] = [real; candidates[indices]], indices): the FAR real batch written in one
  // pass. real: [R, ...] with the per-sample shape, dtype and device of candidates (R may be 0).
  m.def("far_batch(Tensor real, Tensor logits, Tensor candidates, int k) -> (Tensor, Tensor)");

  // ---- family `combine` (pixel-wise combinations) ---------------------------------------------
  // out[p] = f(x[pairs[p, 0]], x[pairs[p, 1]]) elementwise; pairs: [P, 2] int64 in [0, B).
  // mode 0 mean (a + b) / 2 (in acc precision), 1 min, 2 max (NaN propagates), 3 and, 4 or:
  // binary images (v > threshold), result 1 or 0 in x's dtype. Layout as far_select.
  m.def("pixelwise_combine(Tensor x, Tensor pairs, int mode, float threshold) -> Tensor");

  // ---- family `correction` (nearest-neighbour distance) ---------------------------------------
  // For each sample b: (d2[b], index[b]) = min over bank rows j of max(0, |s_b|^2 + |k_j|^2 -
  // 2 s_b.k_j), the lowest j on ties, the first NaN if any distance is NaN. d2 in acc dtype [B],
  // index int64 [B]. The bank is visited in chunks of `chunk` rows (memory O(B * chunk)).
  // samples: [B, ...], bank: [N, ...] (N >= 1), same dtype, same numel per row; chunk >= 1.
  m.def("nearest_distance(Tensor samples, Tensor bank, int chunk) -> (Tensor, Tensor)");
}
