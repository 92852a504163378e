// CPU kernels of box coding (CUDA twin: cuda/coding.cu; reference: detops/reference/coding.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/log.h>
#include <torch/library.h>

#include <limits>

#include "box_math.h"
#include "ops/coding.h"

namespace detops {
namespace {

// Applies op(row i, anchor row i % period) over all rows; the anchor index is advanced, not divided, per row.
template <typename T, typename Op>
void for_each_row(const CodingProblem& p, Op op) {
  const int64_t period = p.period;
  at::parallel_for(0, p.count, 8192, [=](int64_t begin, int64_t end) {
    int64_t k = begin % period;
    for (int64_t i = begin; i < end; ++i) {
      op(i, k);
      k = k + 1 == period ? 0 : k + 1;
    }
  });
}

// Both ops run in three passes: a fused pass up to the transcendental function, writing its arguments to
// a [2, count] scratch; ATen's vectorised log_/exp_ over the scratch (scalar libm calls cost more than all
// the rest of the arithmetic); a fused pass finishing the boxes.
at::Tensor encode_boxes_cpu(const at::Tensor& boxes, const at::Tensor& anchors, at::ArrayRef<double> weights) {
  CodingProblem p = prepare_coding(boxes, "boxes", anchors, weights);
  at::Tensor ratios = at::empty({2, p.count}, p.x.options());
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "encode_boxes_cpu", [&] {
    const scalar_t* g = p.x.data_ptr<scalar_t>();
    const scalar_t* a = p.anchors.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    scalar_t* rw = ratios.data_ptr<scalar_t>();
    scalar_t* rh = rw + p.count;
    const CodingWeights w = p.weights;
    for_each_row<scalar_t>(p, [=](int64_t i, int64_t k) {
      scalar_t acx, acy, aw, ah;
      anchor_center_size(load_box(a + 4 * k), acx, acy, aw, ah);
      encode_box_ratios(load_box(g + 4 * i), acx, acy, aw, ah, w, out + 4 * i, rw[i], rh[i]);
    });
    at::log_(ratios);
    const auto ww = static_cast<scalar_t>(w.ww), wh = static_cast<scalar_t>(w.wh);
    at::parallel_for(0, p.count, 16384, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        out[4 * i + 2] = ww * rw[i];
        out[4 * i + 3] = wh * rh[i];
      }
    });
  });
  return finish_coding(p);
}

at::Tensor decode_boxes_cpu(const at::Tensor& deltas, const at::Tensor& anchors, at::ArrayRef<double> weights,
                            std::optional<double> clamp) {
  CodingProblem p = prepare_coding(deltas, "deltas", anchors, weights);
  at::Tensor scales = at::empty({2, p.count}, p.x.options());
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "decode_boxes_cpu", [&] {
    const scalar_t* d = p.x.data_ptr<scalar_t>();
    const scalar_t* a = p.anchors.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    scalar_t* sw = scales.data_ptr<scalar_t>();
    scalar_t* sh = sw + p.count;
    const CodingWeights w = p.weights;
    const auto c = static_cast<scalar_t>(clamp ? *clamp : std::numeric_limits<double>::infinity());
    at::parallel_for(0, p.count, 16384, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) decode_box_log_scales(d + 4 * i, w, c, sw[i], sh[i]);
    });
    at::exp_(scales);
    for_each_row<scalar_t>(p, [=](int64_t i, int64_t k) {
      decode_box_scaled(d + 4 * i, load_box(a + 4 * k), w, sw[i], sh[i], out + 4 * i);
    });
  });
  return finish_coding(p);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("encode_boxes", &detops::encode_boxes_cpu);
  m.impl("decode_boxes", &detops::decode_boxes_cpu);
}
