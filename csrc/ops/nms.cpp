// Schemas of the NMS family, and the argument handling the CPU and CUDA kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/nms.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string>

#include "checks.h"

namespace detops {

static void check_threshold(double t, const char* name) {
  TORCH_CHECK(!std::isnan(t), name, " must be a number, got NaN");
}

// boxes and scores: one device, one floating dtype (every op of the family).
static void check_boxes_and_scores_types(const at::Tensor& boxes, const at::Tensor& scores) {
  check_same_device(boxes, "boxes", scores, "scores");
  check_floating(boxes, "boxes");
  check_floating(scores, "scores");
  check_same_dtype(boxes, "boxes", scores, "scores");
}

// "[..., 4]" or "[..., 5] (cx, cy, w, h, angle)": the box shape an error message names.
static std::string box_shape(const char* lead, int64_t box_dim) {
  return std::string("[") + lead + std::to_string(box_dim) + "]" + (box_dim == 5 ? " (cx, cy, w, h, angle)" : "");
}

static void check_nms_inputs(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, int64_t box_dim) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == box_dim, "boxes must have shape ", box_shape("N, ", box_dim),
              ", got ", shape_str(boxes));
  TORCH_CHECK(scores.dim() == 1, "scores must have shape [N], got ", shape_str(scores));
  TORCH_CHECK(boxes.size(0) == scores.size(0), "boxes and scores must hold the same number of boxes, got ",
              shape_str(boxes), " and ", shape_str(scores));
  check_boxes_and_scores_types(boxes, scores);
  check_threshold(iou_threshold, "iou_threshold");
}

NmsProblem prepare_nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, int64_t box_dim) {
  check_nms_inputs(boxes, scores, iou_threshold, box_dim);
  NmsProblem p;
  const auto dtype = compute_dtype(boxes.scalar_type());
  p.boxes = boxes.to(dtype).contiguous();
  p.scores = scores.to(dtype).contiguous();
  p.n = boxes.size(0);
  p.iou_threshold = iou_threshold;
  return p;
}

NmsProblem prepare_batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                               double iou_threshold, int64_t box_dim) {
  check_nms_inputs(boxes, scores, iou_threshold, box_dim);
  TORCH_CHECK(idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "idxs must have shape [N] with N = ", boxes.size(0),
              " (one category per box), got ", shape_str(idxs));
  TORCH_CHECK(at::isIntegralType(idxs.scalar_type(), /*includeBool=*/false),
              "idxs must be an integer tensor of categories, got ", idxs.scalar_type());
  check_same_device(boxes, "boxes", idxs, "idxs");
  NmsProblem p = prepare_nms(boxes, scores, iou_threshold, box_dim);
  p.idxs = idxs.to(at::kLong).contiguous();
  return p;
}

MulticlassProblem prepare_multiclass(const at::Tensor& boxes, const at::Tensor& scores, double score_threshold,
                                     double iou_threshold, int64_t max_detections, int64_t background_class,
                                     int64_t max_candidates_per_class, int64_t box_dim) {
  TORCH_CHECK(scores.dim() == 3, "scores must have shape [B, P, C] (images, priors, classes), got ", shape_str(scores));
  const int64_t b = scores.size(0), pr = scores.size(1), c = scores.size(2);
  const bool shared = boxes.dim() == 3 && boxes.size(0) == b && boxes.size(1) == pr && boxes.size(2) == box_dim;
  const bool per_class =
      boxes.dim() == 4 && boxes.size(0) == b && boxes.size(1) == pr && boxes.size(2) == c && boxes.size(3) == box_dim;
  TORCH_CHECK(shared || per_class, "boxes must have shape ", box_shape("B, P, ", box_dim), " or ",
              box_shape("B, P, C, ", box_dim), " matching scores ", shape_str(scores), ", got ", shape_str(boxes));
  check_boxes_and_scores_types(boxes, scores);
  check_threshold(score_threshold, "score_threshold");
  check_threshold(iou_threshold, "iou_threshold");
  TORCH_CHECK(max_detections >= 0, "max_detections must be >= 0, got ", max_detections);
  TORCH_CHECK(background_class >= -1 && background_class < std::max<int64_t>(c, 1),
              "background_class must be None or a class in [0, ", c, "), got ", background_class);
  TORCH_CHECK(max_candidates_per_class >= -1, "max_candidates_per_class must be None or >= 0, got ",
              max_candidates_per_class);
  MulticlassProblem p;
  const auto dtype = compute_dtype(scores.scalar_type());
  p.boxes = boxes.to(dtype).contiguous();
  p.scores = scores.to(dtype).contiguous();
  p.per_class_boxes = per_class;
  p.batch = b, p.priors = pr, p.classes = c;
  p.background_class = background_class;
  p.max_candidates = max_candidates_per_class < 0 ? pr : std::min(pr, max_candidates_per_class);
  // An image cannot have more detections than candidates (the classes searched times the candidates each
  // keeps), so K is clamped to that before the padded outputs are allocated: a "no limit" max_detections
  // (say 10**9) costs no more memory than the input.
  const int64_t classes_searched = std::max<int64_t>(0, c - (background_class >= 0 ? 1 : 0));
  p.max_detections = std::min(max_detections, classes_searched * p.max_candidates);
  p.score_threshold = score_threshold;
  p.iou_threshold = iou_threshold;
  p.out_dtype = scores.scalar_type();
  p.out_boxes = at::empty({b, p.max_detections, box_dim}, p.scores.options());
  p.out_scores = at::empty({b, p.max_detections}, p.scores.options());
  p.out_labels = at::empty({b, p.max_detections}, p.scores.options().dtype(at::kLong));
  p.out_counts = at::empty({b}, p.scores.options().dtype(at::kLong));
  return p;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> finish_multiclass(MulticlassProblem& p) {
  return {p.out_boxes.to(p.out_dtype), p.out_scores.to(p.out_dtype), p.out_labels, p.out_counts};
}

SoftNmsProblem prepare_soft_nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold, double sigma,
                                double score_threshold, c10::string_view method, int64_t box_dim) {
  check_nms_inputs(boxes, scores, iou_threshold, box_dim);
  check_threshold(score_threshold, "score_threshold");
  TORCH_CHECK(sigma > 0, "sigma must be > 0, got ", sigma);
  SoftNmsProblem p;
  if (method == "linear") {
    p.method = SoftNmsMethod::Linear;
  } else if (method == "gaussian") {
    p.method = SoftNmsMethod::Gaussian;
  } else {
    TORCH_CHECK(false, "method must be 'linear' or 'gaussian', got '", std::string(method), "'");
  }
  const auto dtype = compute_dtype(boxes.scalar_type());
  p.boxes = boxes.to(dtype).contiguous();
  p.scores = scores.to(dtype).contiguous();
  p.n = boxes.size(0);
  p.iou_threshold = iou_threshold;
  p.sigma = sigma;
  p.score_threshold = score_threshold;
  p.out_dtype = scores.scalar_type();
  return p;
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // Greedy NMS: indices of the kept boxes, by decreasing score (ties: lower index first).
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  // NMS within each category of idxs, in one call; result by decreasing score (ties: lower index first).
  m.def("batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  // Whole-batch, per-class NMS with fixed-shape padded outputs (boxes [B,K,4], scores [B,K], labels [B,K],
  // counts [B]), K = min(max_detections, classes searched x candidates per class); background_class = -1 and
  // max_candidates_per_class = -1 mean none.
  m.def(
      "multiclass_nms(Tensor boxes, Tensor scores, float score_threshold, float iou_threshold, "
      "int max_detections, int background_class=-1, int max_candidates_per_class=-1) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  // Soft-NMS (linear or gaussian decay): kept indices in selection order and their decayed scores.
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, float iou_threshold=0.3, float sigma=0.5, "
      "float score_threshold=0.001, str method=\"gaussian\") -> (Tensor, Tensor)");
}
