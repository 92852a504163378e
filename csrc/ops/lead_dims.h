// The broadcast of two box tensors' leading (batch) dimensions, shared by the pairwise overlap ops of the
// boxes and rotated families: boxes1[..., N, K] x boxes2[..., M, K] -> [..., N, M].
#pragma once

#include <ATen/ExpandUtils.h>
#include <ATen/core/Tensor.h>

#include <vector>

#include "checks.h"

namespace detops {

// The broadcast shape of the dimensions before the last two, or an error naming both shapes.
inline std::vector<int64_t> broadcast_lead_dims(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  const auto lead1 = boxes1.sizes().slice(0, boxes1.dim() - 2);
  const auto lead2 = boxes2.sizes().slice(0, boxes2.dim() - 2);
  try {
    return at::infer_size(lead1, lead2);
  } catch (const c10::Error&) {
    TORCH_CHECK(false, "the batch dimensions of boxes1 ", shape_str(boxes1), " and boxes2 ", shape_str(boxes2),
                " do not broadcast");
  }
  return {};  // not reached: TORCH_CHECK(false) throws
}

}  // namespace detops
