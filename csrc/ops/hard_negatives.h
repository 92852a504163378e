// Hard negative mining (docs/ops.md, "Hard negatives"): argument checks (both kernels select on the keys of
// ordered_key.h); and the per-prior softmax cross-entropy that ranks the negatives.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "ordered_key.h"

namespace detops {

// conf_loss [B, P] (float or double, contiguous), positives [B, P] bool (contiguous), mask [B, P] bool.
struct MiningProblem {
  at::Tensor loss, positives, mask;
  int64_t B, P, ratio;
};
MiningProblem prepare_hard_negative_mining(const at::Tensor& conf_loss, const at::Tensor& positives,
                                           int64_t neg_pos_ratio);

// softmax_cross_entropy: logits [rows, C] (float or double, contiguous), targets [rows] int64 (contiguous),
// out [rows] in the compute dtype; finish_cross_entropy gives it the targets' shape and the logits' dtype.
// A row whose target equals ignore_index has loss 0 (F.cross_entropy's rule, default -100).
struct CrossEntropyProblem {
  at::Tensor logits, targets, out;
  int64_t rows, C, ignore_index;
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype;
};
CrossEntropyProblem prepare_softmax_cross_entropy(const at::Tensor& logits, const at::Tensor& targets,
                                                  int64_t ignore_index);
// The error for a target that is neither a class in [0, C) nor ignore_index: names the first such row and
// its value (the CPU kernel reads them back; the CUDA kernel gives NaN instead of synchronising to check).
[[noreturn]] void bad_cross_entropy_target(const CrossEntropyProblem& p);
at::Tensor finish_cross_entropy(const CrossEntropyProblem& p);

}  // namespace detops
