// CPU kernels of box coding (CUDA twin: cuda/coding.cu; reference: detops/reference/coding.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
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

at::Tensor encode_boxes_cpu(const at::Tensor& boxes, const at::Tensor& anchors, at::ArrayRef<double> weights) {
  CodingProblem p = prepare_coding(boxes, "boxes", anchors, weights);
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "encode_boxes_cpu", [&] {
    const scalar_t* g = p.x.data_ptr<scalar_t>();
    const scalar_t* a = p.anchors.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    const CodingWeights w = p.weights;
    for_each_row<scalar_t>(p, [=](int64_t i, int64_t k) {
      encode_box(load_box(g + 4 * i), load_box(a + 4 * k), w, out + 4 * i);
    });
  });
  return finish_coding(p);
}

at::Tensor decode_boxes_cpu(const at::Tensor& deltas, const at::Tensor& anchors, at::ArrayRef<double> weights,
                            std::optional<double> clamp) {
  CodingProblem p = prepare_coding(deltas, "deltas", anchors, weights);
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "decode_boxes_cpu", [&] {
    const scalar_t* d = p.x.data_ptr<scalar_t>();
    const scalar_t* a = p.anchors.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    const CodingWeights w = p.weights;
    const auto c = static_cast<scalar_t>(clamp ? *clamp : std::numeric_limits<double>::infinity());
    for_each_row<scalar_t>(p, [=](int64_t i, int64_t k) {
      decode_box(d + 4 * i, load_box(a + 4 * k), w, c, out + 4 * i);
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
