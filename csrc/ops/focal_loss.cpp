// Schema of the sigmoid focal loss (docs/ops.md, "Focal loss") and of its closed-form backward, and the
// argument handling both kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/focal_loss.h"

#include <ATen/ops/empty.h>
#include <c10/core/ScalarType.h>
#include <torch/library.h>

#include <cmath>

#include "checks.h"

namespace detops {
namespace {

Reduction parse_reduction(c10::string_view reduction) {
  if (reduction == "none") return Reduction::kNone;
  if (reduction == "mean") return Reduction::kMean;
  if (reduction == "sum") return Reduction::kSum;
  TORCH_CHECK(false, "reduction must be 'none', 'mean' or 'sum', got '", std::string(reduction), "'");
}

// Checks shared by the forward and the backward; returns the dtype both tensors are read in.
at::ScalarType check_focal_args(const at::Tensor& inputs, const at::Tensor& targets, double alpha, double gamma) {
  check_floating(inputs, "inputs");
  check_floating(targets, "targets");
  TORCH_CHECK(targets.sizes() == inputs.sizes(), "targets must have the shape of inputs ", shape_str(inputs), ", got ",
              shape_str(targets));
  check_same_device(inputs, "inputs", targets, "targets");
  // torchvision's rule: alpha in [0, 1], or -1 for no weighting.
  TORCH_CHECK((alpha >= 0 && alpha <= 1) || alpha == -1, "alpha must be in [0, 1], or -1 for no weighting, got ",
              alpha);
  TORCH_CHECK(!std::isnan(gamma), "gamma must not be NaN");
  // As torchvision's arithmetic does, mixed dtypes promote (float32 logits with float64 targets give float64).
  return c10::promoteTypes(inputs.scalar_type(), targets.scalar_type());
}

}  // namespace

FocalProblem prepare_sigmoid_focal_loss(const at::Tensor& inputs, const at::Tensor& targets, double alpha, double gamma,
                                        c10::string_view reduction) {
  const at::ScalarType dtype = check_focal_args(inputs, targets, alpha, gamma);
  FocalProblem p;
  p.reduction = parse_reduction(reduction);
  p.alpha = alpha;
  p.gamma = gamma;
  p.inputs = inputs.to(dtype).contiguous();
  p.targets = targets.to(dtype).contiguous();
  p.n = inputs.numel();
  p.out = p.reduction == Reduction::kNone ? at::empty(inputs.sizes(), p.inputs.options())
                                          : at::empty({}, p.inputs.options());
  return p;
}

FocalBackwardProblem prepare_sigmoid_focal_loss_backward(const at::Tensor& grad, const at::Tensor& inputs,
                                                         const at::Tensor& targets, double alpha, double gamma,
                                                         c10::string_view reduction) {
  const at::ScalarType dtype = check_focal_args(inputs, targets, alpha, gamma);
  FocalBackwardProblem p;
  p.reduction = parse_reduction(reduction);
  if (p.reduction == Reduction::kNone) {
    TORCH_CHECK(grad.sizes() == inputs.sizes(), "grad must have the shape of inputs ", shape_str(inputs),
                " for reduction 'none', got ", shape_str(grad));
  } else {
    TORCH_CHECK(grad.numel() == 1, "grad must hold one value for reduction '", std::string(reduction), "', got ",
                shape_str(grad));
  }
  check_floating(grad, "grad");
  check_same_device(grad, "grad", inputs, "inputs");
  p.alpha = alpha;
  p.gamma = gamma;
  p.inputs = inputs.to(dtype).contiguous();
  p.targets = targets.to(dtype).contiguous();
  p.grad = grad.to(dtype).contiguous();
  p.n = inputs.numel();
  p.out = at::empty(inputs.sizes(), p.inputs.options());
  return p;
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // torchvision.ops.sigmoid_focal_loss in one pass: no sigmoid, cross-entropy or weight tensors, only the
  // output (elementwise for "none", one value otherwise).
  m.def(
      "sigmoid_focal_loss(Tensor inputs, Tensor targets, float alpha=0.25, float gamma=2., "
      "str reduction=\"none\") -> Tensor");
  // d loss / d inputs in closed form, given the output's gradient (elementwise or one value).
  m.def(
      "sigmoid_focal_loss_backward(Tensor grad, Tensor inputs, Tensor targets, float alpha, float gamma, "
      "str reduction) -> Tensor");
}
