// The pairwise and aligned overlap ops (box_iou and friends): argument checks and the layout the CPU
// kernel (cpu/boxes.cpp) and the CUDA kernel (cuda/boxes.cu) both receive.
#pragma once

#include <ATen/core/Tensor.h>

#include <type_traits>

#include "box_math.h"

namespace detops {

IouMode parse_iou_mode(c10::string_view mode);

// The pairwise op's input format (box_iou(fmt=...)); the kernels read the boxes as given.
enum class BoxFormat : int { XYXY = 0, XYWH = 1, CXCYWH = 2 };
BoxFormat parse_box_format(c10::string_view fmt);

// One input box as corners, and its area. For xywh and cxcywh the area is w * h from the format's own
// width and height, as torchvision's box_area(fmt=...): the corners' (x2 - x1) * (y2 - y1) loses w where
// x + w rounds it away (float32 [1e8, 0, 3, 10] would have area 0 and a self-IoU of 0 / 0). The corners
// are computed in T, the compute dtype, as torchvision computes them in the boxes' dtype.
template <typename T>
DETOPS_HD Box<T> load_corners(const T* p, BoxFormat fmt, T& area_out) {
  if (fmt == BoxFormat::XYXY) {
    const Box<T> b = load_box(p);
    area_out = area(b);
    return b;
  }
  const T w = p[2], h = p[3];
  area_out = w * h;
  if (fmt == BoxFormat::XYWH) return {p[0], p[1], p[0] + w, p[1] + h};
  const T hw = w / T(2), hh = h / T(2);
  return {p[0] - hw, p[1] - hh, p[0] + hw, p[1] + hh};
}

// Calls f(std::integral_constant<IouMode, kMode>{}) for the run-time mode: the kernels are templates on the
// mode (so each mode's inner loop is compiled without a branch on it), and this is the one place that maps
// the run-time value to those instantiations. Inside f, `decltype(mode)::value` is the mode.
template <typename F>
void dispatch_iou_mode(IouMode mode, const F& f) {
  switch (mode) {
    case IouMode::IoU:
      return f(std::integral_constant<IouMode, IouMode::IoU>{});
    case IouMode::GIoU:
      return f(std::integral_constant<IouMode, IouMode::GIoU>{});
    case IouMode::DIoU:
      return f(std::integral_constant<IouMode, IouMode::DIoU>{});
    case IouMode::CIoU:
      return f(std::integral_constant<IouMode, IouMode::CIoU>{});
    case IouMode::IoF:
      return f(std::integral_constant<IouMode, IouMode::IoF>{});
  }
  TORCH_CHECK(false, "unknown overlap mode ", static_cast<int>(mode));
}

// boxes1[..., N, 4] x boxes2[..., M, 4] -> out[..., N, M], leading dims broadcast.
// a and b are [batch, N, 4] / [batch, M, 4] in compute dtype with rows contiguous; a batch stride of 0
// means that side is shared by every batch entry (priors against per-image ground truth, say).
struct PairwiseProblem {
  at::Tensor a, b;
  int64_t a_batch_stride, b_batch_stride;  // in elements
  int64_t batch, n, m;
  IouMode mode;
  BoxFormat fmt;
  double eps;
  // [batch, N, M] in out_dtype: integer boxes are computed in float64 and written as float32 directly,
  // with no float64 matrix in between.
  at::Tensor out;
  std::vector<int64_t> out_shape;  // [..., N, M]
  at::ScalarType out_dtype;
};
// allocate_out=false leaves p.out for the kernel to allocate (the CPU kernel backs large outputs with huge
// pages: cpu/large_output.h).
PairwiseProblem prepare_pairwise(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps,
                                 c10::string_view fmt, bool allocate_out = true);
at::Tensor finish_pairwise(PairwiseProblem& p);

// boxes1[..., 4], boxes2[..., 4] of one shape (broadcast) -> out[...].
struct AlignedProblem {
  at::Tensor a, b;  // [count, 4] contiguous, compute dtype
  int64_t count;
  IouMode mode;
  double eps;
  at::Tensor out;  // [count], compute dtype
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype;
};
AlignedProblem prepare_aligned(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps);
at::Tensor finish_aligned(AlignedProblem& p);

}  // namespace detops
