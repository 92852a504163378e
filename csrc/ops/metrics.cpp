// Schemas of the metrics family (COCO-style evaluation), and the argument handling the CPU and CUDA kernels
// share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/metrics.h"

#include <ATen/ops/full.h>
#include <torch/library.h>

#include <cmath>

#include "checks.h"

namespace detops {

static void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

// [rows, 4] float64 boxes; `rows` names the first dimension in the message.
static void check_box_rows(const at::Tensor& t, const char* name, const char* rows) {
  TORCH_CHECK(t.dim() == 2 && t.size(1) == 4, name, " must have shape [", rows, ", 4], got ", shape_str(t));
  check_dtype(t, name, at::kDouble);
}

// One value per row of another argument: shape [n], `n_name` naming n in the message.
static void check_per_row(const at::Tensor& t, const char* name, int64_t n, const char* n_name, at::ScalarType dtype) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, name, " must have shape [", n_name, "] with ", n_name, " = ", n, ", got ",
              shape_str(t));
  check_dtype(t, name, dtype);
}

static void check_offsets(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) >= 1, name, " must have shape [groups + 1], got ", shape_str(t));
  check_dtype(t, name, at::kLong);
}

CocoMatchProblem prepare_coco_match(const at::Tensor& dt_boxes, const at::Tensor& gt_boxes, const at::Tensor& gt_crowd,
                                    const at::Tensor& gt_ignore, const at::Tensor& dt_offsets,
                                    const at::Tensor& gt_offsets, at::ArrayRef<double> iou_thresholds) {
  check_box_rows(dt_boxes, "dt_boxes", "D");
  check_box_rows(gt_boxes, "gt_boxes", "G");
  const int64_t G = gt_boxes.size(0);
  check_per_row(gt_crowd, "gt_crowd", G, "G", at::kBool);
  TORCH_CHECK(gt_ignore.dim() == 2 && gt_ignore.size(1) == G, "gt_ignore must have shape [A, G] with G = ", G, ", got ",
              shape_str(gt_ignore));
  check_dtype(gt_ignore, "gt_ignore", at::kBool);
  check_offsets(dt_offsets, "dt_offsets");
  check_offsets(gt_offsets, "gt_offsets");
  TORCH_CHECK(dt_offsets.size(0) == gt_offsets.size(0), "dt_offsets and gt_offsets must have the same length, got ",
              shape_str(dt_offsets), " and ", shape_str(gt_offsets));
  for (const auto* t : {&gt_boxes, &gt_crowd, &gt_ignore, &dt_offsets, &gt_offsets})
    check_same_device(dt_boxes, "dt_boxes", *t, "the other arguments");
  TORCH_CHECK(!iou_thresholds.empty(), "iou_thresholds must not be empty");
  for (double t : iou_thresholds) TORCH_CHECK(!std::isnan(t), "iou_thresholds must be numbers, got NaN");
  CocoMatchProblem p;
  p.dt_boxes = dt_boxes.contiguous();
  p.gt_boxes = gt_boxes.contiguous();
  p.gt_crowd = gt_crowd.contiguous();
  p.gt_ignore = gt_ignore.contiguous();
  p.dt_offsets = dt_offsets.contiguous();
  p.gt_offsets = gt_offsets.contiguous();
  p.thresholds.assign(iou_thresholds.begin(), iou_thresholds.end());
  p.groups = dt_offsets.size(0) - 1;
  p.A = gt_ignore.size(0);
  p.T = static_cast<int64_t>(iou_thresholds.size());
  p.D = dt_boxes.size(0);
  p.G = G;
  p.matched = at::full({p.A, p.T, p.D}, -1, dt_boxes.options().dtype(at::kLong));
  return p;
}

CocoAccumulateProblem prepare_coco_accumulate(const at::Tensor& status, const at::Tensor& scores,
                                              const at::Tensor& rank, const at::Tensor& class_offsets,
                                              const at::Tensor& positives, const at::Tensor& rec_thresholds,
                                              at::IntArrayRef max_detections) {
  TORCH_CHECK(status.dim() == 3, "status must have shape [A, T, D], got ", shape_str(status));
  check_dtype(status, "status", at::kByte);
  const int64_t D = status.size(2);
  check_per_row(scores, "scores", D, "D", at::kDouble);
  check_per_row(rank, "rank", D, "D", at::kLong);
  check_offsets(class_offsets, "class_offsets");
  const int64_t K = class_offsets.size(0) - 1;
  TORCH_CHECK(positives.dim() == 2 && positives.size(0) == K && positives.size(1) == status.size(0),
              "positives must have shape [K, A] = [", K, ", ", status.size(0), "], got ", shape_str(positives));
  check_dtype(positives, "positives", at::kLong);
  TORCH_CHECK(rec_thresholds.dim() == 1, "rec_thresholds must have shape [R], got ", shape_str(rec_thresholds));
  check_dtype(rec_thresholds, "rec_thresholds", at::kDouble);
  TORCH_CHECK(!max_detections.empty(), "max_detections must not be empty");
  for (const auto* t : {&scores, &rank, &class_offsets, &positives, &rec_thresholds})
    check_same_device(status, "status", *t, "the other arguments");
  CocoAccumulateProblem p;
  p.status = status.contiguous();
  p.scores = scores.contiguous();
  p.rank = rank.contiguous();
  p.class_offsets = class_offsets.contiguous();
  p.positives = positives.contiguous();
  p.rec_thresholds = rec_thresholds.contiguous();
  p.max_dets.assign(max_detections.begin(), max_detections.end());
  p.A = status.size(0);
  p.T = status.size(1);
  p.D = D;
  p.K = K;
  p.R = rec_thresholds.size(0);
  p.M = static_cast<int64_t>(max_detections.size());
  const auto opts = scores.options();
  p.precision = at::full({p.T, p.R, p.K, p.A, p.M}, -1.0, opts);
  p.recall = at::full({p.T, p.K, p.A, p.M}, -1.0, opts);
  p.out_scores = at::full({p.T, p.R, p.K, p.A, p.M}, -1.0, opts);
  return p;
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // Greedy matching of ranked detections to ground truth per (image, class) group, area range and IoU
  // threshold (pycocotools' evaluateImg) -> [A, T, D] int64: the matched ground-truth row, or -1.
  m.def(
      "coco_match(Tensor dt_boxes, Tensor gt_boxes, Tensor gt_crowd, Tensor gt_ignore, Tensor dt_offsets, "
      "Tensor gt_offsets, float[] iou_thresholds) -> Tensor");
  // Precision / recall / scores arrays from ranked detection statuses (pycocotools' accumulate) ->
  // precision [T, R, K, A, M], recall [T, K, A, M], scores [T, R, K, A, M], float64, -1 where undefined.
  m.def(
      "coco_accumulate(Tensor status, Tensor scores, Tensor rank, Tensor class_offsets, Tensor positives, "
      "Tensor rec_thresholds, int[] max_detections) -> (Tensor, Tensor, Tensor)");
}
