// Prior matching (SSD rule and torchvision's Matcher rule): argument checks and the layout both kernels receive.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "box_math.h"

namespace detops {

// A batch of ground truth padded to [B, G, 4] (xyxy, compute dtype, contiguous) with labels [B, G] int64 and
// counts [B] int64 (objects g >= counts[b] are padding), against priors given both as center-size [P, 4] and
// as xyxy [P, 4] (converted once, as the tutorial's cxcy_to_xy does), in the same dtype.
struct MatchProblem {
  at::Tensor boxes, labels, counts, priors_cxcy, priors_xy;
  int64_t B, G, P;
  double threshold;
  CodingWeights weights;
  at::ScalarType out_dtype;
};

MatchProblem prepare_match_priors(const at::Tensor& gt_boxes, const at::Tensor& gt_labels, const at::Tensor& counts,
                                  const at::Tensor& priors_cxcy, double threshold, at::ArrayRef<double> weights);

// Value checks that need the data on the host (the CPU kernel runs them; on CUDA they would cost a sync):
// counts in [0, G], labels >= 0, no NaN coordinate, x2 >= x1 and y2 >= y1 for every real object.
void check_match_values_cpu(const MatchProblem& p);

// torchvision's Matcher rule for one prior p of one quality matrix qn [G, P] (G > 0): its best object
// (torch.max(dim=0): the first maximum; a NaN is the maximum, the first NaN), -1 below `low`, -2 in
// [low, high); with allow_low, a prior that reaches some object's best quality (row_max[g]) keeps its best
// object whatever the thresholds. Shared by the CPU and CUDA kernels, so the rule is written once.
template <typename T>
DETOPS_HD int64_t matcher_decision(const T* qn, int64_t G, int64_t P, int64_t p, const T* row_max, T high, T low,
                                   bool allow_low) {
  T best = qn[p];
  int64_t best_g = 0;
  for (int64_t g = 1; g < G && best == best; ++g) {
    const T v = qn[g * P + p];
    if (v > best || v != v) {
      best = v;
      best_g = g;
    }
  }
  if (!(best < high)) return best_g;  // NaN too: a NaN quality is neither below low nor between
  if (allow_low) {
    for (int64_t g = 0; g < G; ++g)
      if (qn[g * P + p] == row_max[g]) return best_g;
  }
  return best < low ? -1 : -2;
}

// torchvision's Matcher rule on a quality matrix [..., G, P] (batched over leading dims).
struct MatcherProblem {
  at::Tensor quality;  // [N, G, P], contiguous, compute dtype
  int64_t N, G, P;
  double high, low;
  bool allow_low_quality;
  std::vector<int64_t> out_shape;  // [..., P]
};
MatcherProblem prepare_match_boxes(const at::Tensor& quality, double high, double low, bool allow_low_quality);

}  // namespace detops
