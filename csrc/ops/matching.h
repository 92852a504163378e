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
