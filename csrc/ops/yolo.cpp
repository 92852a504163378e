// Schema of YOLO candidate scoring, and the argument handling the CPU and CUDA kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/yolo.h"

#include <torch/library.h>

#include <cmath>
#include <cstdint>

#include "checks.h"

namespace detops {

YoloProblem prepare_yolo_candidates(const at::Tensor& prediction, double conf_thres, bool objectness) {
  const int64_t first_class = objectness ? 5 : 4;
  TORCH_CHECK(prediction.dim() == 3, "prediction must have shape [B, N, ", first_class, " + C] (cx, cy, w, h, ",
              objectness ? "objectness, " : "", "class scores), got ", shape_str(prediction));
  TORCH_CHECK(prediction.size(2) > first_class, "prediction has no class channels: shape ", shape_str(prediction),
              objectness ? " with objectness needs at least 6 channels" : " needs at least 5 channels");
  check_floating(prediction, "prediction");
  check_int32_count(prediction.size(2) - first_class, "prediction", "classes");
  TORCH_CHECK(std::isfinite(conf_thres) && conf_thres >= 0 && conf_thres <= 1, "conf_thres must be in [0, 1], got ",
              conf_thres);
  YoloProblem p;
  p.prediction = prediction;
  p.B = prediction.size(0);
  p.N = prediction.size(1);
  p.C = prediction.size(2) - first_class;
  p.first_class = first_class;
  p.stride_b = prediction.stride(0);
  p.stride_n = prediction.stride(1);
  p.stride_d = prediction.stride(2);
  p.objectness = objectness;
  p.conf_thres = conf_thres;
  return p;
}

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // prediction [B, N, 4 (+1) + C] -> the rows whose best class scores above conf_thres (and, with objectness,
  // whose objectness does): their flat index b * N + n (increasing), corner boxes [K, 4] from (cx, cy, w, h),
  // best score (class x objectness) and class. YOLO's filtering in one pass over the head's output, in place
  // of a gather of every passing row, a product tensor and a max over it.
  m.def(
      "yolo_candidates(Tensor prediction, float conf_thres, bool objectness=True) -> "
      "(Tensor rows, Tensor boxes, Tensor scores, Tensor labels)");
}
