// CUDA kernels of the NMS family (CPU twin: cpu/nms.cpp; reference: detops/reference/nms.py), each written
// once over the box geometry (nms_geometry.h) and shared with the rotated family (cuda/rotated.cu):
// nms / batched_nms run the bit-mask sweep of cuda/mask_nms.cuh (the only host synchronisation is the size
// of the index tensor), multiclass_nms the per-(image, class) sweep of cuda/multiclass_nms.cuh (nothing is
// copied to the host: it can be captured in a CUDA graph), soft_nms the one-block loop of cuda/soft_nms.cuh.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <torch/library.h>

#include "cuda/mask_nms.cuh"
#include "cuda/multiclass_nms.cuh"
#include "cuda/soft_nms.cuh"
#include "nms_geometry.h"
#include "ops/nms.h"

namespace detops {
namespace {

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return mask_nms<AxisAligned>(prepare_nms(boxes, scores, iou_threshold), "nms");
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  return mask_nms<AxisAligned>(prepare_batched_nms(boxes, scores, idxs, iou_threshold), "batched_nms");
}

// ---- multiclass_nms, soft_nms: cuda/multiclass_nms.cuh and cuda/soft_nms.cuh on axis-aligned boxes ----

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  return multiclass_nms_on_cuda<AxisAligned>(prepare_multiclass(
      boxes, scores, score_threshold, iou_threshold, max_detections, background_class, max_candidates_per_class));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                 double iou_threshold, double sigma, double score_threshold,
                                                 c10::string_view method) {
  return soft_nms_on_cuda<AxisAligned>(prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method));
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("nms", &detops::nms_cuda);
  m.impl("batched_nms", &detops::batched_nms_cuda);
  m.impl("multiclass_nms", &detops::multiclass_nms_cuda);
  m.impl("soft_nms", &detops::soft_nms_cuda);
}
