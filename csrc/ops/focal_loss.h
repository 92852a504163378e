// Sigmoid focal loss (docs/ops.md, "Focal loss"): argument checks and the problem both kernels receive, and
// the per-element formulas both evaluate, written once.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "box_math.h"

namespace detops {

enum class Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

// inputs and targets: the same shape, both in the promoted floating dtype, contiguous. The kernels read that
// dtype and compute in its opmath type (float for half and bfloat16). `out` is the elementwise loss (kNone) or
// a 0-dim tensor (kMean, kSum), in the promoted dtype.
struct FocalProblem {
  at::Tensor inputs, targets, out;
  int64_t n;
  double alpha, gamma;
  Reduction reduction;
};
FocalProblem prepare_sigmoid_focal_loss(const at::Tensor& inputs, const at::Tensor& targets, double alpha, double gamma,
                                        c10::string_view reduction);

// The backward: grad is the output's gradient (the loss's shape for kNone, 0-dim otherwise); `out` is the
// gradient of the inputs, in the promoted dtype.
struct FocalBackwardProblem {
  at::Tensor grad, inputs, targets, out;
  int64_t n;
  double alpha, gamma;
  Reduction reduction;
};
FocalBackwardProblem prepare_sigmoid_focal_loss_backward(const at::Tensor& grad, const at::Tensor& inputs,
                                                         const at::Tensor& targets, double alpha, double gamma,
                                                         c10::string_view reduction);

// Elements a partial sum covers: the reductions add fixed blocks in index order, so the result does not
// depend on the thread count (CPU) or on the launch (CUDA).
constexpr int64_t kFocalBlock = 4096;

// torchvision's formula step by step, in the same operations: p = sigmoid(x),
// ce = (1 - t) x - log_sigmoid(x) (binary_cross_entropy_with_logits), p_t = p t + (1 - p)(1 - t),
// loss = alpha_t ce (1 - p_t)^gamma with alpha_t = alpha t + (1 - alpha)(1 - t), or no alpha_t when alpha < 0.
template <typename T>
DETOPS_HD T focal_pow(T m, T gamma) {
  using std::pow;
  // x * x for the default gamma, as torch.pow does for an exponent of 2.
  if (gamma == T(2)) return m * m;
  if (gamma == T(1)) return m;
  if (gamma == T(0)) return T(1);
  return pow(m, gamma);
}

template <typename T>
struct FocalTerms {
  T p, ce, m, alpha_t;
};

template <typename T>
DETOPS_HD FocalTerms<T> focal_terms(T x, T t, T alpha) {
  using std::exp;
  using std::fabs;
  using std::log1p;
  FocalTerms<T> f;
  f.p = T(1) / (T(1) + exp(-x));
  const T log_sigmoid = (x < T(0) ? x : T(0)) - log1p(exp(-fabs(x)));
  f.ce = (T(1) - t) * x - log_sigmoid;
  const T p_t = f.p * t + (T(1) - f.p) * (T(1) - t);
  f.m = T(1) - p_t;
  f.alpha_t = alpha >= T(0) ? alpha * t + (T(1) - alpha) * (T(1) - t) : T(1);
  return f;
}

template <typename T>
DETOPS_HD T focal_loss_value(T x, T t, T alpha, T gamma) {
  const FocalTerms<T> f = focal_terms(x, t, alpha);
  const T loss = f.ce * focal_pow(f.m, gamma);
  return alpha >= T(0) ? f.alpha_t * loss : loss;
}

// d loss / d x, the chain autograd takes through torchvision's formula, in closed form:
// alpha_t (1 - p_t)^gamma (p - t)  [through ce]  -  alpha_t ce gamma (1 - p_t)^(gamma - 1) (2t - 1) p (1 - p)
// [through p_t]; gamma = 0 has no second term (torch.pow's gradient for an exponent of 0 is 0).
template <typename T>
DETOPS_HD T focal_loss_grad(T x, T t, T alpha, T gamma) {
  const FocalTerms<T> f = focal_terms(x, t, alpha);
  const T through_ce = f.alpha_t * focal_pow(f.m, gamma) * (f.p - t);
  if (gamma == T(0)) return through_ce;
  const T dpow = gamma == T(2) ? T(2) * f.m : gamma * focal_pow(f.m, gamma - T(1));
  const T d_pt = -(f.alpha_t * f.ce * dpow);
  const T d_p = d_pt * t - d_pt * (T(1) - t);
  return through_ce + d_p * ((T(1) - f.p) * f.p);
}

}  // namespace detops
