// The rotated-box ops (box_iou_rotated, box_iou_rotated_aligned, nms_rotated, batched_nms_rotated):
// argument checks and the layout the CPU kernels (cpu/rotated.cpp) and the CUDA kernels (cuda/rotated.cu)
// both receive. Boxes are (cx, cy, w, h, angle in degrees); geometry: rotated_math.h; semantics:
// docs/rotated.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "rotated_math.h"

namespace detops {

// boxes1[..., N, 5] x boxes2[..., M, 5] -> out[..., N, M], leading dims broadcast. a and b are
// [batch, N, 5] / [batch, M, 5] contiguous in compute dtype; a batch stride of 0 means that side is shared.
struct RotatedPairwiseProblem {
  at::Tensor a, b;
  int64_t a_batch_stride = 0, b_batch_stride = 0;  // in elements
  int64_t batch = 0, n = 0, m = 0;
  at::Tensor out;  // [batch, N, M], compute dtype
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype;
};
RotatedPairwiseProblem prepare_rotated_pairwise(const at::Tensor& boxes1, const at::Tensor& boxes2);

// boxes1[..., 5], boxes2[..., 5] of one shape -> out[...].
struct RotatedAlignedProblem {
  at::Tensor a, b;  // [count, 5] contiguous, compute dtype
  int64_t count = 0;
  at::Tensor out;  // [count], compute dtype
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype;
};
RotatedAlignedProblem prepare_rotated_aligned(const at::Tensor& boxes1, const at::Tensor& boxes2);

// The rotated output as the caller sees it: shape and dtype restored.
at::Tensor finish_rotated(const at::Tensor& out, const std::vector<int64_t>& shape, at::ScalarType dtype);

// nms_rotated / batched_nms_rotated take the NMS family's problems (ops/nms.h) with box_dim = 5, and
// follow its rules: suppressed when the IoU with a kept, higher-ranked box is strictly greater than the
// threshold; rank = decreasing score, ties by lower index; a box with a NaN score or a non-finite value is
// never kept and never suppresses (nms_geometry.h, Rotated).

}  // namespace detops
