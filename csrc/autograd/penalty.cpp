// Autograd of the `penalty` head ops, in C++ (the Autograd dispatch key), for every device the
// extension has kernels for.
//
// Why C++: at the shapes GAN code runs (a [64, 3, 32, 32] gradient) the fused kernels take a few
// tens of microseconds, and a Python torch.autograd.Function around them (its ctx object, the
// Python backward call, a separate `mean` node) cost as much again. Here the forward, the
// backward and the double backward are torch::autograd::Function nodes that call the device
// kernels through the dispatcher, so a penalty's forward + backward never re-enters Python.
//
// The three levels, each differentiable by the next:
//   grad_norm_penalty_sum      scale · Σ_b penalty_b          (backward: grad_norm_penalty_backward)
//   grad_norm_penalty_forward  (penalty [B], norm [B])        (backward: grad_norm_penalty_backward)
//   grad_norm_penalty_backward grad_in = grad · gp_b · coef_b (backward: ATen ops below, which
//                                                              ATen differentiates further)
// The Python backends (Triton, reference) keep the same formulas in fastgp/penalty.py.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

namespace fastgp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The device kernels, called below the Autograd key (the Functions below are the autograd).
std::tuple<at::Tensor, at::Tensor> call_forward(const at::Tensor& grad, double center,
                                                bool one_sided) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastgp::grad_norm_penalty_forward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, double, bool)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(grad, center, one_sided);
}

using BackwardSignature = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      double, bool);

const c10::TypedOperatorHandle<BackwardSignature>& backward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("fastgp::grad_norm_penalty_backward", "")
                       .typed<BackwardSignature>();
  return op;
}

// The backward op WITH its autograd (differentiable when grad mode is on: double backward).
at::Tensor call_backward(const at::Tensor& grad_penalty, const at::Tensor& grad,
                         const at::Tensor& norm, double center, bool one_sided) {
  return backward_op().call(grad_penalty, grad, norm, center, one_sided);
}

at::Tensor per_sample(const at::Tensor& values, int64_t ndim) {
  std::vector<int64_t> shape(static_cast<size_t>(ndim), 1);
  shape[0] = values.size(0);
  return values.view(shape);
}

// d penalty_b / d grad_b = coef_b · grad_b (see fastgp/reference/penalty.py
// `_penalty_coefficient`); coef is 0 where the norm is 0, as torch's norm gradient.
at::Tensor penalty_coefficient(const at::Tensor& norm, double center, bool one_sided) {
  if (center == 0) return at::full_like(norm, 2.0);
  at::Tensor distance = norm - center;
  if (one_sided) distance = distance.clamp_min(0);
  const at::Tensor positive = norm > 0;
  const at::Tensor safe_norm = at::where(positive, norm, at::ones_like(norm));
  return at::where(positive, 2 * distance / safe_norm, at::zeros_like(norm));
}

// ---------------------------------------------------------------------------------------------

struct GradNormPenaltyBackward : public torch::autograd::Function<GradNormPenaltyBackward> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad_penalty,
                            const at::Tensor& grad, const at::Tensor& norm, double center,
                            bool one_sided) {
    ctx->save_for_backward({grad_penalty, grad});
    ctx->saved_data["center"] = center;
    ctx->saved_data["one_sided"] = one_sided;
    at::AutoDispatchBelowADInplaceOrView guard;  // the device kernel, below this autograd
    return backward_op().call(grad_penalty, grad, norm, center, one_sided);
  }

  // Written in ATen ops of grad (the norm is recomputed from it, not taken from the saved
  // non-differentiable `norm`), so that differentiating it again is exact.
  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad_penalty = saved[0];
    const at::Tensor& grad = saved[1];
    const double center = ctx->saved_data["center"].toDouble();
    const bool one_sided = ctx->saved_data["one_sided"].toBool();
    const auto acc = grad_penalty.scalar_type();
    const int64_t batch = grad.size(0);
    const at::Tensor g = grad.to(acc);
    const at::Tensor gg = grad_outputs[0].to(acc);
    const at::Tensor norm = at::linalg_vector_norm(g.reshape({batch, -1}), 2, {1});
    const at::Tensor coef = penalty_coefficient(norm, center, one_sided);
    const at::Tensor dot = (gg * g).reshape({batch, -1}).sum(1);
    at::Tensor d_grad_penalty, d_grad;
    if (ctx->needs_input_grad(0)) d_grad_penalty = dot * coef;
    if (ctx->needs_input_grad(1)) {
      d_grad = gg * per_sample(grad_penalty * coef, gg.dim());
      if (center != 0) {
        // coef(n) = 2 − 2c/n, so d coef / d g = (2c / n²) · g / n where the penalty is active.
        const at::Tensor active = one_sided ? norm > center : norm > 0;
        const at::Tensor safe_norm = at::where(norm > 0, norm, at::ones_like(norm));
        const at::Tensor extra = at::where(active, 2 * center * grad_penalty * dot / safe_norm.pow(3),
                                           at::zeros_like(norm));
        d_grad = d_grad + g * per_sample(extra, g.dim());
      }
      d_grad = d_grad.to(grad.scalar_type());
    }
    return {d_grad_penalty, d_grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct GradNormPenaltyForward : public torch::autograd::Function<GradNormPenaltyForward> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad, double center,
                               bool one_sided) {
    auto [penalty, norm] = call_forward(grad, center, one_sided);
    ctx->mark_non_differentiable({norm});
    ctx->save_for_backward({grad, norm});
    ctx->saved_data["center"] = center;
    ctx->saved_data["one_sided"] = one_sided;
    return {penalty, norm};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    at::Tensor grad_in = call_backward(grad_outputs[0], saved[0], saved[1],
                                       ctx->saved_data["center"].toDouble(),
                                       ctx->saved_data["one_sided"].toBool());
    return {grad_in, at::Tensor(), at::Tensor()};
  }
};

// scale · Σ_b penalty_b in ONE node: the `mean` (scale = 1/B) and `sum` reductions of the head.
struct GradNormPenaltySum : public torch::autograd::Function<GradNormPenaltySum> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& grad, double center,
                            bool one_sided, double scale) {
    auto [penalty, norm] = call_forward(grad, center, one_sided);
    ctx->save_for_backward({grad, norm});
    ctx->saved_data["center"] = center;
    ctx->saved_data["one_sided"] = one_sided;
    ctx->saved_data["scale"] = scale;
    at::AutoDispatchBelowADInplaceOrView guard;
    return penalty.sum().mul_(scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = saved[0];
    // d(scale · Σ p_b)/d p_b = scale for every sample: a stride-0 [B] view, no copy; the
    // backward kernel reads grad_penalty through its strides.
    const at::Tensor grad_penalty =
        (grad_outputs[0] * ctx->saved_data["scale"].toDouble()).expand({grad.size(0)});
    at::Tensor grad_in = call_backward(grad_penalty, grad, saved[1],
                                       ctx->saved_data["center"].toDouble(),
                                       ctx->saved_data["one_sided"].toBool());
    return {grad_in, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> grad_norm_penalty_forward_autograd(const at::Tensor& grad,
                                                                      double center,
                                                                      bool one_sided) {
  auto outputs = GradNormPenaltyForward::apply(grad, center, one_sided);
  return {outputs[0], outputs[1]};
}

at::Tensor grad_norm_penalty_backward_autograd(const at::Tensor& grad_penalty,
                                               const at::Tensor& grad, const at::Tensor& norm,
                                               double center, bool one_sided) {
  return GradNormPenaltyBackward::apply(grad_penalty, grad, norm, center, one_sided);
}

at::Tensor grad_norm_penalty_sum_autograd(const at::Tensor& grad, double center, bool one_sided,
                                          double scale) {
  return GradNormPenaltySum::apply(grad, center, one_sided, scale);
}

// The device implementation of grad_norm_penalty_sum (below autograd): the forward kernel and a
// sum. Registered for CPU and CUDA, so the op exists wherever the head kernels do.
at::Tensor grad_norm_penalty_sum_kernel(const at::Tensor& grad, double center, bool one_sided,
                                        double scale) {
  auto [penalty, norm] = call_forward(grad, center, one_sided);
  return penalty.sum().mul_(scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgp, Autograd, m) {
  m.impl("grad_norm_penalty_forward", &grad_norm_penalty_forward_autograd);
  m.impl("grad_norm_penalty_backward", &grad_norm_penalty_backward_autograd);
  m.impl("grad_norm_penalty_sum", &grad_norm_penalty_sum_autograd);
}

TORCH_LIBRARY_IMPL(fastgp, CPU, m) {
  m.impl("grad_norm_penalty_sum", &grad_norm_penalty_sum_kernel);
}

TORCH_LIBRARY_IMPL(fastgp, CUDA, m) {
  m.impl("grad_norm_penalty_sum", &grad_norm_penalty_sum_kernel);
}

}  // namespace fastgp
