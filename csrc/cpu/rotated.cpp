// CPU kernels of the rotated-box ops (CUDA twin: cuda/rotated.cu; reference: detops/reference/rotated.py).
// The NMS ops run the NMS family's kernels (cpu/multiclass_nms.h, cpu/soft_nms.h) on rotated boxes.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/rotated.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/multiclass_nms.h"
#include "cpu/nms_sweep.h"
#include "cpu/soft_nms.h"
#include "nms_geometry.h"
#include "ops/nms.h"
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
      for (int64_t i = begin; i < end; ++i) out[i] = rotated_iou(load_rotated(a + 5 * i), load_rotated(b + 5 * i));
    });
  });
  return finish_rotated(p.out, p.out_shape, p.out_dtype);
}

// Rotated boxes in rank order for the greedy sweep: the rotated counterpart of cpu/nms_sweep.h's Columns
// (the same members, so cpu/multiclass_nms.h and cpu/soft_nms.h run on either), each box loaded once (its
// angle's cosine and sine), with the id it reports when kept and its category.
template <typename T>
struct RotatedCandidates {
  using Geo = Rotated<T>;
  std::vector<RotatedBox<T>> box;
  std::vector<int64_t> id, cls;
  std::vector<uint8_t> removed;
  void resize(int64_t n) {
    const size_t m = static_cast<size_t>(n);
    if (box.size() < m) box.resize(m), id.resize(m), cls.resize(m), removed.resize(m);
  }
  void set(int64_t k, const T* p, int64_t box_id, int64_t category = 0) {
    box[k] = load_rotated(p);
    id[k] = box_id;
    cls[k] = category;
    removed[k] = 0;
  }
  // Greedy NMS over the first n entries: writes the ids of the kept boxes, in order, to keep and returns how
  // many; stops after max_keep. Boxes of different categories never suppress each other.
  int64_t sweep(int64_t n, T thr, int64_t max_keep, int64_t* keep) {
    int64_t kept = 0;
    for (int64_t r = 0; r < n && kept < max_keep; ++r) {
      if (removed[r]) continue;
      keep[kept++] = id[r];
      const RotatedBox<T> a = box[r];
      const int64_t ca = cls[r];
      // The later boxes' tests against this kept box are independent: split them over the threads (inline
      // when already inside a parallel region).
      at::parallel_for(r + 1, n, 256, [&](int64_t begin, int64_t end) {
        for (int64_t s = begin; s < end; ++s)
          if (!removed[s] && cls[s] == ca && rotated_iou(a, box[s]) > thr) removed[s] = 1;
      });
    }
    return kept;
  }
  // Soft-NMS' access: entry k as one box, its IoU with entry j, and entry j moved to slot w <= j.
  RotatedBox<T> get(int64_t k) const { return box[k]; }
  T overlap(const RotatedBox<T>& a, int64_t j) const { return rotated_iou(a, box[j]); }
  void move(int64_t w, int64_t j) {
    box[w] = box[j];
    id[w] = id[j];
    cls[w] = cls[j];
  }
};

// nms_rotated / batched_nms_rotated: the valid boxes in rank order (decreasing score, ties by lower index),
// then one greedy sweep.
template <typename T>
std::vector<int64_t> nms_rotated_impl(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  const int64_t* cls = p.idxs.defined() ? p.idxs.data_ptr<int64_t>() : nullptr;
  std::vector<Cand<T>> order;
  order.reserve(static_cast<size_t>(p.n));
  for (int64_t i = 0; i < p.n; ++i)
    if (Rotated<T>::valid(boxes + 5 * i, scores[i])) order.push_back({scores[i], i});
  sort_by_rank(order);
  const int64_t k = static_cast<int64_t>(order.size());
  RotatedCandidates<T> c;
  c.resize(k);
  for (int64_t r = 0; r < k; ++r) c.set(r, boxes + 5 * order[r].id, order[r].id, cls != nullptr ? cls[order[r].id] : 0);
  std::vector<int64_t> keep(static_cast<size_t>(k));
  keep.resize(static_cast<size_t>(c.sweep(k, threshold_as<T>(p.iou_threshold), k, keep.data())));
  return keep;
}

at::Tensor keep_tensor(const std::vector<int64_t>& v, const at::Tensor& like) {
  at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, like.options().dtype(at::kLong));
  if (!v.empty()) std::memcpy(out.data_ptr<int64_t>(), v.data(), v.size() * sizeof(int64_t));
  return out;
}

at::Tensor run_nms_rotated(const NmsProblem& p) {
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_rotated_cpu", [&] { keep = nms_rotated_impl<scalar_t>(p); });
  return keep_tensor(keep, p.boxes);
}

at::Tensor nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return run_nms_rotated(prepare_nms(boxes, scores, iou_threshold, /*box_dim=*/5));
}

at::Tensor batched_nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                                   double iou_threshold) {
  return run_nms_rotated(prepare_batched_nms(boxes, scores, idxs, iou_threshold, /*box_dim=*/5));
}

// multiclass_nms_rotated, soft_nms_rotated: the NMS family's kernels (cpu/multiclass_nms.h,
// cpu/soft_nms.h) over RotatedCandidates.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_rotated_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  return multiclass_nms_on_cpu<RotatedCandidates>(prepare_multiclass(boxes, scores, score_threshold, iou_threshold,
                                                                     max_detections, background_class,
                                                                     max_candidates_per_class, /*box_dim=*/5));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_rotated_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                        double iou_threshold, double sigma, double score_threshold,
                                                        c10::string_view method) {
  return soft_nms_on_cpu<RotatedCandidates>(
      prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method, /*box_dim=*/5));
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("box_iou_rotated", &detops::box_iou_rotated_cpu);
  m.impl("box_iou_rotated_aligned", &detops::box_iou_rotated_aligned_cpu);
  m.impl("nms_rotated", &detops::nms_rotated_cpu);
  m.impl("batched_nms_rotated", &detops::batched_nms_rotated_cpu);
  m.impl("multiclass_nms_rotated", &detops::multiclass_nms_rotated_cpu);
  m.impl("soft_nms_rotated", &detops::soft_nms_rotated_cpu);
}
