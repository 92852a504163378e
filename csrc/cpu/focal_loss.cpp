// CPU kernels of the sigmoid focal loss and its closed-form backward (CUDA twin: cuda/focal_loss.cu; formulas:
// ops/focal_loss.h; reference: detops/reference/focal_loss.py). One pass over the elements; the reductions add
// kFocalBlock-element blocks in double, then the blocks in index order, so the sum does not depend on the
// number of threads.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/focal_loss.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace detops {
namespace {

at::Tensor sigmoid_focal_loss_cpu(const at::Tensor& inputs, const at::Tensor& targets, double alpha, double gamma,
                                  c10::string_view reduction) {
  FocalProblem p = prepare_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.inputs.scalar_type(), "sigmoid_focal_loss_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = p.inputs.data_ptr<scalar_t>();
    const scalar_t* t = p.targets.data_ptr<scalar_t>();
    const acc_t a = static_cast<acc_t>(p.alpha), g = static_cast<acc_t>(p.gamma);
    scalar_t* out = p.out.data_ptr<scalar_t>();
    if (p.reduction == Reduction::kNone) {
      at::parallel_for(0, p.n, 2048, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) out[i] = static_cast<scalar_t>(focal_loss_value<acc_t>(x[i], t[i], a, g));
      });
      return;
    }
    const int64_t blocks = (p.n + kFocalBlock - 1) / kFocalBlock;
    std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t end = std::min(p.n, (b + 1) * kFocalBlock);
        double s = 0;
        for (int64_t i = b * kFocalBlock; i < end; ++i) s += focal_loss_value<acc_t>(x[i], t[i], a, g);
        partial[b] = s;
      }
    });
    double total = 0;
    for (double s : partial) total += s;
    // The mean of nothing is NaN, as torch.mean's.
    if (p.reduction == Reduction::kMean) total /= static_cast<double>(p.n);
    out[0] = static_cast<scalar_t>(total);
  });
  return p.out;
}

at::Tensor sigmoid_focal_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& inputs, const at::Tensor& targets,
                                           double alpha, double gamma, c10::string_view reduction) {
  FocalBackwardProblem p = prepare_sigmoid_focal_loss_backward(grad, inputs, targets, alpha, gamma, reduction);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.inputs.scalar_type(), "sigmoid_focal_loss_backward_cpu",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* x = p.inputs.data_ptr<scalar_t>();
    const scalar_t* t = p.targets.data_ptr<scalar_t>();
    const scalar_t* go = p.grad.data_ptr<scalar_t>();
    const acc_t a = static_cast<acc_t>(p.alpha), g = static_cast<acc_t>(p.gamma);
    scalar_t* out = p.out.data_ptr<scalar_t>();
    const bool each = p.reduction == Reduction::kNone;
    acc_t scale = 0;
    if (!each) {
      scale = static_cast<acc_t>(go[0]);
      if (p.reduction == Reduction::kMean) scale /= static_cast<acc_t>(p.n);
    }
    at::parallel_for(0, p.n, 2048, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t gi = each ? static_cast<acc_t>(go[i]) : scale;
        out[i] = static_cast<scalar_t>(gi * focal_loss_grad<acc_t>(x[i], t[i], a, g));
      }
    });
  });
  return p.out;
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("sigmoid_focal_loss", &detops::sigmoid_focal_loss_cpu);
  m.impl("sigmoid_focal_loss_backward", &detops::sigmoid_focal_loss_backward_cpu);
}
