// Schemas of the box-coding ops, and the argument handling the CPU and CUDA kernels share.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/coding.h"

#include <ATen/ExpandUtils.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>

#include "checks.h"

namespace detops {

CodingProblem prepare_coding(const at::Tensor& x, const char* x_name, const at::Tensor& anchors,
                             at::ArrayRef<double> weights) {
  check_boxes(x, x_name);
  check_boxes(anchors, "anchors");
  check_same_device(x, x_name, anchors, "anchors");
  check_same_dtype(x, x_name, anchors, "anchors");
  check_floating(x, x_name);
  TORCH_CHECK(weights.size() == 4, "weights must have 4 values (wx, wy, ww, wh), got ", weights.size());
  for (double w : weights) TORCH_CHECK(std::isfinite(w) && w != 0, "weights must be finite and non-zero, got ", w);
  CodingProblem p;
  p.weights = {weights[0], weights[1], weights[2], weights[3]};
  std::vector<int64_t> shape;
  try {
    shape = at::infer_size(x.sizes(), anchors.sizes());
  } catch (const c10::Error&) {
    TORCH_CHECK(false, x_name, " ", shape_str(x), " and anchors ", shape_str(anchors), " do not broadcast");
  }
  const auto dtype = compute_dtype(x.scalar_type());
  p.x = x.to(dtype).expand(shape).contiguous().view({-1, 4});
  p.count = p.x.size(0);
  // Anchors whose shape is a suffix of the result's repeat with period anchors.numel() / 4: no copy.
  const int64_t extra = static_cast<int64_t>(shape.size()) - anchors.dim();
  bool suffix = true;
  for (int64_t d = 0; d < anchors.dim(); ++d) suffix = suffix && anchors.size(d) == shape[extra + d];
  p.anchors = (suffix ? anchors.to(dtype) : anchors.to(dtype).expand(shape)).contiguous().view({-1, 4});
  p.period = std::max<int64_t>(p.anchors.size(0), 1);
  p.out_shape = shape;
  p.out_dtype = x.scalar_type();
  p.out = at::empty({p.count, 4}, p.x.options());
  return p;
}

at::Tensor finish_coding(CodingProblem& p) { return p.out.view(p.out_shape).to(p.out_dtype); }

}  // namespace detops

TORCH_LIBRARY_FRAGMENT(detops, m) {
  // boxes[..., 4] xyxy -> deltas (dx, dy, dw, dh) relative to anchors[..., 4] xyxy (docs/ops.md, "Box coding").
  m.def("encode_boxes(Tensor boxes, Tensor anchors, float[] weights=[1., 1., 1., 1.]) -> Tensor");
  // The inverse; dw and dh clamped from above at `clamp` before exp (None: no clamp).
  m.def(
      "decode_boxes(Tensor deltas, Tensor anchors, float[] weights=[1., 1., 1., 1.], "
      "float? clamp=4.135166556742356) -> Tensor");
}
