// Schemas of the rotated-box ops, and the argument handling the CPU and CUDA kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/rotated.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "checks.h"
#include "ops/lead_dims.h"

namespace detops {

static void check_rotated(const at::Tensor& t, const char* name, int64_t min_dim) {
  TORCH_CHECK(t.dim() >= min_dim && t.size(-1) == 5, name, " must have shape [", (min_dim > 1 ? "..., N, " : "..., "),
              "5] (cx, cy, w, h, angle), got ", shape_str(t));
  TORCH_CHECK(t.scalar_type() != at::kBool, name, " must be numeric, got bool");
}

static void check_rotated_pair(const at::Tensor& boxes1, const at::Tensor& boxes2, int64_t min_dim) {
  check_rotated(boxes1, "boxes1", min_dim);
  check_rotated(boxes2, "boxes2", min_dim);
  check_same_device(boxes1, "boxes1", boxes2, "boxes2");
  check_same_dtype(boxes1, "boxes1", boxes2, "boxes2");
}

// As the axis-aligned overlaps: float32 for integers, and for float16/bfloat16 unless kept (aligned form).
static at::ScalarType rotated_result_dtype(at::ScalarType t, bool keep_reduced_float) {
  if (at::isIntegralType(t, /*includeBool=*/true)) return at::kFloat;
  if (!keep_reduced_float && (t == at::kHalf || t == at::kBFloat16)) return at::kFloat;
  return t;
}

// One side of a pairwise problem as [batch, K, 5] contiguous rows, and its batch stride in elements. A side
// without batch dimensions is kept once and shared (stride 0) instead of being copied per batch entry.
static at::Tensor as_batched5(const at::Tensor& t, at::IntArrayRef lead, int64_t batch, at::ScalarType dtype,
                              int64_t& batch_stride) {
  if (t.dim() == 2 && batch > 1) {
    batch_stride = 0;
    return t.to(dtype).contiguous().unsqueeze(0);
  }
  std::vector<int64_t> shape(lead.begin(), lead.end());
  shape.push_back(t.size(-2));
  shape.push_back(5);
  batch_stride = t.size(-2) * 5;
  return t.to(dtype).expand(shape).reshape({batch, t.size(-2), 5}).contiguous();
}

RotatedPairwiseProblem prepare_rotated_pairwise(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_rotated_pair(boxes1, boxes2, 2);
  RotatedPairwiseProblem p;
  const std::vector<int64_t> lead = broadcast_lead_dims(boxes1, boxes2);
  p.batch = c10::multiply_integers(lead);
  p.n = boxes1.size(-2);
  p.m = boxes2.size(-2);
  const auto dtype = compute_dtype(boxes1.scalar_type());
  p.a = as_batched5(boxes1, lead, p.batch, dtype, p.a_batch_stride);
  p.b = as_batched5(boxes2, lead, p.batch, dtype, p.b_batch_stride);
  p.out_shape = lead;
  p.out_shape.push_back(p.n);
  p.out_shape.push_back(p.m);
  p.out_dtype = rotated_result_dtype(boxes1.scalar_type(), /*keep_reduced_float=*/false);
  p.out = at::empty({p.batch, p.n, p.m}, p.a.options());
  return p;
}

RotatedAlignedProblem prepare_rotated_aligned(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  check_rotated_pair(boxes1, boxes2, 1);
  TORCH_CHECK(boxes1.sizes() == boxes2.sizes(), "aligned overlaps need boxes1 and boxes2 of one shape, got ",
              shape_str(boxes1), " and ", shape_str(boxes2));
  RotatedAlignedProblem p;
  const auto dtype = compute_dtype(boxes1.scalar_type());
  p.a = boxes1.to(dtype).reshape({-1, 5}).contiguous();
  p.b = boxes2.to(dtype).reshape({-1, 5}).contiguous();
  p.count = p.a.size(0);
  const auto lead = boxes1.sizes().slice(0, boxes1.dim() - 1);
  p.out_shape.assign(lead.begin(), lead.end());
  p.out_dtype = rotated_result_dtype(boxes1.scalar_type(), /*keep_reduced_float=*/true);
  p.out = at::empty({p.count}, p.a.options());
  return p;
}

at::Tensor finish_rotated(const at::Tensor& out, const std::vector<int64_t>& shape, at::ScalarType dtype) {
  return out.view(shape).to(dtype);
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  m.def("box_iou_rotated(Tensor boxes1, Tensor boxes2) -> Tensor");
  m.def("box_iou_rotated_aligned(Tensor boxes1, Tensor boxes2) -> Tensor");
  m.def("nms_rotated(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  m.def("batched_nms_rotated(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor");
  // multiclass_nms and soft_nms on (cx, cy, w, h, angle) boxes: the axis-aligned ops' arguments and rules.
  m.def(
      "multiclass_nms_rotated(Tensor boxes, Tensor scores, float score_threshold, float iou_threshold, "
      "int max_detections, int background_class=-1, int max_candidates_per_class=-1) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "soft_nms_rotated(Tensor boxes, Tensor scores, float iou_threshold=0.3, float sigma=0.5, "
      "float score_threshold=0.001, str method=\"gaussian\") -> (Tensor, Tensor)");
}
