// CPU kernels of box coding (CUDA twin: cuda/coding.cu; reference: detops/reference/coding.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/coding.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "box_math.h"
#include "cpu/target_clones.h"
#include "cpu/vector_math.h"

namespace detops {
namespace {

// Calls op(first row, first anchor row, n) over runs of rows whose anchors are consecutive too (row i uses
// anchor i % period, so a run ends where the anchors wrap). A run is a plain loop the compiler vectorises.
constexpr int64_t kRun = 512;  // rows per run: long enough to vectorise, short enough to stay in L1

template <typename Op>
void for_each_run(const CodingProblem& p, Op op) {
  const int64_t period = p.period;
  at::parallel_for(0, p.count, 8192, [=](int64_t begin, int64_t end) {
    int64_t k = begin % period;
    for (int64_t i = begin; i < end;) {
      const int64_t n = std::min({end - i, period - k, kRun});
      op(i, k, n);
      i += n;
      k = k + n == period ? 0 : k + n;
    }
  });
}

// Both ops run three loops over a run of rows: the arguments of the transcendental function (size ratios /
// log-scales) into a small array, vmath's log / exp over that array as one flat loop, then the boxes. Each
// loop vectorises; one fused loop measured 30% slower for decode (its body spills vector registers).
template <typename T>
DETOPS_TARGET_CLONES void encode_run(const T* __restrict__ g, const T* __restrict__ a, CodingWeights w,
                                     T* __restrict__ out, int64_t n) {
  T ratios[2 * kRun];
  for (int64_t j = 0; j < n; ++j) {
    T acx, acy, aw, ah;
    anchor_center_size(load_box(a + 4 * j), acx, acy, aw, ah);
    encode_box_ratios(load_box(g + 4 * j), acx, acy, aw, ah, w, out + 4 * j, ratios[2 * j], ratios[2 * j + 1]);
  }
  for (int64_t j = 0; j < 2 * n; ++j) ratios[j] = vmath::log(ratios[j]);
  for (int64_t j = 0; j < n; ++j) {
    out[4 * j + 2] = static_cast<T>(w.ww) * ratios[2 * j];
    out[4 * j + 3] = static_cast<T>(w.wh) * ratios[2 * j + 1];
  }
}

template <typename T>
DETOPS_TARGET_CLONES void decode_run(const T* __restrict__ d, const T* __restrict__ a, CodingWeights w, T clamp,
                                     T* __restrict__ out, int64_t n) {
  T scales[2 * kRun];
  for (int64_t j = 0; j < n; ++j) decode_box_log_scales(d + 4 * j, w, clamp, scales[2 * j], scales[2 * j + 1]);
  for (int64_t j = 0; j < 2 * n; ++j) scales[j] = vmath::exp(scales[j]);
  for (int64_t j = 0; j < n; ++j)
    decode_box_scaled(d + 4 * j, load_box(a + 4 * j), w, scales[2 * j], scales[2 * j + 1], out + 4 * j);
}

// Dispatches on p's dtype (float or double: prepare_coding's compute dtype) and calls run(x, anchors, out, n)
// on every run of rows, the pointers at its first row.
template <typename Run>
at::Tensor code_runs(CodingProblem& p, Run run) {
  AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "box_coding_cpu", [&] {
    const scalar_t* x = p.x.data_ptr<scalar_t>();
    const scalar_t* a = p.anchors.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    for_each_run(p, [=](int64_t i, int64_t k, int64_t n) { run(x + 4 * i, a + 4 * k, out + 4 * i, n); });
  });
  return finish_coding(p);
}

at::Tensor encode_boxes_cpu(const at::Tensor& boxes, const at::Tensor& anchors, at::ArrayRef<double> weights) {
  CodingProblem p = prepare_coding(boxes, "boxes", anchors, weights);
  const CodingWeights w = p.weights;
  return code_runs(p, [=](const auto* g, const auto* a, auto* out, int64_t n) { encode_run(g, a, w, out, n); });
}

at::Tensor decode_boxes_cpu(const at::Tensor& deltas, const at::Tensor& anchors, at::ArrayRef<double> weights,
                            std::optional<double> clamp) {
  CodingProblem p = prepare_coding(deltas, "deltas", anchors, weights);
  const CodingWeights w = p.weights;
  const double c = clamp ? *clamp : std::numeric_limits<double>::infinity();
  return code_runs(p, [=](const auto* d, const auto* a, auto* out, int64_t n) {
    using T = std::remove_pointer_t<decltype(out)>;
    decode_run(d, a, w, static_cast<T>(c), out, n);
  });
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("encode_boxes", &detops::encode_boxes_cpu);
  m.impl("decode_boxes", &detops::decode_boxes_cpu);
}
