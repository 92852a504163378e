// The NMS family (nms, batched_nms, multiclass_nms, soft_nms): argument checks and the layout both the CPU
// kernels (cpu/nms.cpp) and the CUDA kernels (cuda/nms.cu) receive. Semantics: docs/ops.md, "NMS family".
// The rotated family's NMS ops (ops/rotated.h) take the same problems with box_dim = 5.
//
// Shared conventions:
//   * a box is suppressed when its IoU with a kept, higher-ranked box is strictly greater than the threshold
//     (the IoU is detops::iou from box_math.h, the formula torchvision uses, so float32 agrees bit for bit);
//   * rank = decreasing score, ties by lower index;
//   * a box whose score or any coordinate is NaN is never kept and never suppresses another box;
//   * float16/bfloat16 compute in float32, integer input is rejected.
#pragma once

#include <ATen/core/Tensor.h>

#include <cmath>
#include <limits>

#include "box_math.h"
#include "nms_geometry.h"

namespace detops {

// The largest T value t' <= threshold, so that `T iou > t'` equals `double(iou) > threshold` exactly
// (torchvision's CPU kernel compares the scalar_t IoU against the double threshold).
template <typename T>
inline T threshold_as(double threshold) {
  if (std::isinf(threshold)) return static_cast<T>(threshold);
  T t = static_cast<T>(threshold);
  if (static_cast<double>(t) > threshold) t = std::nextafter(t, -std::numeric_limits<T>::infinity());
  return t;
}

struct NmsProblem {
  at::Tensor boxes;   // [N, box_dim] contiguous, compute dtype (float32 for half/bfloat16)
  at::Tensor scores;  // [N] contiguous, compute dtype
  at::Tensor idxs;    // [N] int64 contiguous (batched_nms only)
  int64_t n = 0;
  double iou_threshold = 0.5;
};
// box_dim: 4 for (x1, y1, x2, y2), 5 for rotated (cx, cy, w, h, angle) boxes.
NmsProblem prepare_nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, int64_t box_dim = 4);
NmsProblem prepare_batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                               double iou_threshold, int64_t box_dim = 4);

struct MulticlassProblem {
  at::Tensor boxes;   // [B, P, D] or [B, P, C, D] contiguous (D = box_dim), compute dtype
  at::Tensor scores;  // [B, P, C] contiguous, compute dtype
  bool per_class_boxes = false;
  int64_t batch = 0, priors = 0, classes = 0;
  int64_t max_detections = 0;     // K, already clamped to the number of candidates
  int64_t background_class = -1;  // -1: none
  int64_t max_candidates = 0;     // per class before NMS; P when uncapped
  double score_threshold = 0.05, iou_threshold = 0.5;
  at::ScalarType out_dtype;  // the input dtype: boxes and scores are returned in it
  // Outputs, allocated by prepare_multiclass: boxes [B, K, D] and scores [B, K] in compute dtype, labels
  // [B, K] and counts [B] int64.
  at::Tensor out_boxes, out_scores, out_labels, out_counts;
};
MulticlassProblem prepare_multiclass(const at::Tensor& boxes, const at::Tensor& scores, double score_threshold,
                                     double iou_threshold, int64_t max_detections, int64_t background_class,
                                     int64_t max_candidates_per_class, int64_t box_dim = 4);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> finish_multiclass(MulticlassProblem& p);

enum class SoftNmsMethod : int { Linear = 1, Gaussian = 2 };
struct SoftNmsProblem {
  at::Tensor boxes, scores;  // as NmsProblem
  int64_t n = 0;
  double iou_threshold = 0.3, sigma = 0.5, score_threshold = 0.001;
  SoftNmsMethod method = SoftNmsMethod::Gaussian;
  at::ScalarType out_dtype;
};
SoftNmsProblem prepare_soft_nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, double sigma,
                                double score_threshold, c10::string_view method, int64_t box_dim = 4);

// Soft-NMS weight of a box overlapping the selected one by `ov` (Bodla et al. 2017, eqs. 2 and 3).
template <typename T>
DETOPS_HD T soft_nms_weight(SoftNmsMethod method, T ov, T iou_threshold, T sigma) {
  if (method == SoftNmsMethod::Linear) return ov > iou_threshold ? T(1) - ov : T(1);
  return exp(-(ov * ov) / sigma);
}

}  // namespace detops
