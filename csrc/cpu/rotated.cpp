// CPU kernels of the rotated-box ops (CUDA twin: cuda/rotated.cu; reference: detops/reference/rotated.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/nms.h"
#include "ops/rotated.h"
#include "rotated_math.h"

namespace detops {
namespace {

template <typename T>
std::vector<RotatedBox<T>> load_all(const T* p, int64_t count) {
  std::vector<RotatedBox<T>> v(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) v[i] = load_rotated(p + 5 * i);
  return v;
}

// One batch entry of b: the boxes, plus their centres and circumradii as columns for the vectorised
// disjointness pass (radius NaN for a box with a non-finite value, so that pass never decides for it).
template <typename T>
struct RotatedColumns {
  std::vector<RotatedBox<T>> boxes;
  std::vector<T> cx, cy, radius;
  void load(const T* p, int64_t m) {
    boxes = load_all(p, m);
    cx.resize(m), cy.resize(m), radius.resize(m);
    for (int64_t j = 0; j < m; ++j) {
      const bool ok = rotated_finite(boxes[j]);
      cx[j] = boxes[j].cx, cy[j] = boxes[j].cy;
      radius[j] = ok ? boxes[j].radius : static_cast<T>(NAN);
    }
  }
};

// A row of the matrix in two passes: a branch-free pass (which the compiler vectorises) writes 0 for
// every box whose circumscribed circle is apart from the row box's, as rotated_iou's own early exit
// would, and marks the others; then rotated_iou runs on the marked ones only.
template <typename T>
void rotated_row(const RotatedBox<T>& ai, const RotatedColumns<T>& bc, int64_t m, T* row, uint8_t* near) {
  if (!rotated_finite(ai)) {
    for (int64_t j = 0; j < m; ++j) row[j] = rotated_iou(ai, bc.boxes[j]);
    return;
  }
  const T* cx = bc.cx.data();
  const T* cy = bc.cy.data();
  const T* rb = bc.radius.data();
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < m; ++j) {
    const T dx = cx[j] - ai.cx, dy = cy[j] - ai.cy;
    const T reach = (ai.radius + rb[j]) * T(1.0001);
    const T d2 = dx * dx + dy * dy;
    // Infinite distances (a centre at infinity) and NaN radii go to rotated_iou, which gives NaN.
    const bool apart = d2 > reach * reach && d2 < inf;
    near[j] = !apart;
    row[j] = T(0);
  }
  for (int64_t j = 0; j < m; ++j)
    if (near[j]) row[j] = rotated_iou(ai, bc.boxes[j]);
}

template <typename T>
void pairwise_rotated(RotatedPairwiseProblem& p) {
  const T* a = p.a.data_ptr<T>();
  const T* b = p.b.data_ptr<T>();
  T* out = p.out.data_ptr<T>();
  const int64_t n = p.n, m = p.m;
  // Each distinct batch entry of b is loaded once (its angles' sines and cosines), then reused by every row.
  const int64_t b_entries = p.b_batch_stride == 0 ? 1 : p.batch;
  std::vector<RotatedColumns<T>> bl(static_cast<size_t>(b_entries));
  at::parallel_for(0, b_entries, 1, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) bl[e].load(b + e * p.b_batch_stride, m);
  });
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(m, 1));
  at::parallel_for(0, p.batch * n, grain, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> near(static_cast<size_t>(m));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t e = r / n, i = r % n;
      const RotatedBox<T> ai = load_rotated(a + e * p.a_batch_stride + 5 * i);
      rotated_row(ai, bl[p.b_batch_stride == 0 ? 0 : e], m, out + r * m, near.data());
    }
  });
}

at::Tensor box_iou_rotated_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  RotatedPairwiseProblem p = prepare_rotated_pairwise(boxes1, boxes2);
  if (p.out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_iou_rotated_cpu", [&] { pairwise_rotated<scalar_t>(p); });
  }
  return finish_rotated(p.out, p.out_shape, p.out_dtype);
}

at::Tensor box_iou_rotated_aligned_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  RotatedAlignedProblem p = prepare_rotated_aligned(boxes1, boxes2);
  AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_iou_rotated_aligned_cpu", [&] {
    const scalar_t* a = p.a.data_ptr<scalar_t>();
    const scalar_t* b = p.b.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    at::parallel_for(0, p.count, 2048, [=](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        out[i] = rotated_iou(load_rotated(a + 5 * i), load_rotated(b + 5 * i));
    });
  });
  return finish_rotated(p.out, p.out_shape, p.out_dtype);
}

// Greedy NMS in rank order (decreasing score, ties by lower index) over the valid boxes. With categories,
// boxes of different categories never suppress each other.
template <typename T>
std::vector<int64_t> nms_rotated_impl(const RotatedNmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  const int64_t* cls = p.idxs.defined() ? p.idxs.data_ptr<int64_t>() : nullptr;
  std::vector<int64_t> order;
  std::vector<RotatedBox<T>> all = load_all(boxes, p.n);
  order.reserve(static_cast<size_t>(p.n));
  for (int64_t i = 0; i < p.n; ++i)
    if (nms_rotated_valid(all[i], scores[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return scores[x] > scores[y]; });
  const int64_t k = static_cast<int64_t>(order.size());
  std::vector<RotatedBox<T>> ranked(static_cast<size_t>(k));
  std::vector<int64_t> rcls(static_cast<size_t>(k), 0);
  for (int64_t r = 0; r < k; ++r) {
    ranked[r] = all[order[r]];
    if (cls != nullptr) rcls[r] = cls[order[r]];
  }
  const T thr = threshold_as<T>(p.iou_threshold);
  std::vector<uint8_t> removed(static_cast<size_t>(k), 0);
  std::vector<int64_t> keep;
  for (int64_t r = 0; r < k; ++r) {
    if (removed[r]) continue;
    keep.push_back(order[r]);
    // The later boxes' tests against this kept box are independent: split them over the threads.
    const int64_t grain = 256;
    at::parallel_for(r + 1, k, grain, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s)
        if (!removed[s] && rcls[s] == rcls[r] && rotated_iou(ranked[r], ranked[s]) > thr) removed[s] = 1;
    });
  }
  return keep;
}

at::Tensor keep_tensor(const std::vector<int64_t>& v, const at::Tensor& like) {
  at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, like.options().dtype(at::kLong));
  if (!v.empty()) std::memcpy(out.data_ptr<int64_t>(), v.data(), v.size() * sizeof(int64_t));
  return out;
}

at::Tensor run_nms_rotated(const RotatedNmsProblem& p) {
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_rotated_cpu", [&] { keep = nms_rotated_impl<scalar_t>(p); });
  return keep_tensor(keep, p.boxes);
}

at::Tensor nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return run_nms_rotated(prepare_nms_rotated(boxes, scores, iou_threshold));
}

at::Tensor batched_nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                                   double iou_threshold) {
  return run_nms_rotated(prepare_batched_nms_rotated(boxes, scores, idxs, iou_threshold));
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("box_iou_rotated", &detops::box_iou_rotated_cpu);
  m.impl("box_iou_rotated_aligned", &detops::box_iou_rotated_aligned_cpu);
  m.impl("nms_rotated", &detops::nms_rotated_cpu);
  m.impl("batched_nms_rotated", &detops::batched_nms_rotated_cpu);
}
