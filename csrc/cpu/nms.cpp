// CPU kernels of the NMS family (CUDA twin: cuda/nms.cu; reference: detops/reference/nms.py).
//
// Every op ranks its candidates, then runs the greedy sweep of cpu/nms_sweep.h: nms once, batched_nms and
// multiclass_nms once per category on the work queue of cpu/task_queue.h, soft_nms its own decaying loop.
// multiclass_nms and soft_nms are written once for both geometries (cpu/multiclass_nms.h, cpu/soft_nms.h;
// the rotated family runs them on its own boxes).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/nms.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "box_math.h"
#include "cpu/multiclass_nms.h"
#include "cpu/nms_sweep.h"
#include "cpu/soft_nms.h"
#include "cpu/task_queue.h"

namespace detops {
namespace {

at::Tensor to_index_tensor(const std::vector<int64_t>& v, const at::Tensor& like) {
  at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, like.options().dtype(at::kLong));
  if (!v.empty()) std::memcpy(out.data_ptr<int64_t>(), v.data(), v.size() * sizeof(int64_t));
  return out;
}

// ---- nms ----

// The boxes that can be kept (no NaN score or coordinate), sorted by rank: decreasing score, ties by index.
template <typename T>
std::vector<Cand<T>> ranked_candidates(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  std::vector<Cand<T>> order;
  order.reserve(static_cast<size_t>(p.n));
  for (int64_t i = 0; i < p.n; ++i)
    if (nms_valid(boxes + 4 * i, scores[i])) order.push_back({scores[i], i});
  sort_by_rank(order);
  return order;
}

template <typename T>
std::vector<int64_t> nms_impl(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const std::vector<Cand<T>> order = ranked_candidates<T>(p);
  const int64_t n = static_cast<int64_t>(order.size());
  Columns<T> cols;
  cols.resize(n);
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) cols.set(k, boxes + 4 * order[k].id, order[k].id);
  });
  std::vector<int64_t> keep(static_cast<size_t>(n));
  keep.resize(static_cast<size_t>(run_nms(cols, n, threshold_as<T>(p.iou_threshold), n, keep.data())));
  return keep;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  NmsProblem p = prepare_nms(boxes, scores, iou_threshold);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_cpu", [&] { keep = nms_impl<scalar_t>(p); });
  return to_index_tensor(keep, boxes);
}

// ---- batched_nms ----

// One sort by rank over all boxes, then a stable counting sort into categories: each category is a contiguous
// segment in rank order, and the kept flags, read back in rank order, are already the answer's order.
template <typename T>
std::vector<int64_t> batched_nms_impl(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const int64_t* idxs = p.idxs.data_ptr<int64_t>();
  const std::vector<Cand<T>> order = ranked_candidates<T>(p);
  const int64_t n = static_cast<int64_t>(order.size());
  if (n == 0) return {};
  // Dense category numbers: an offset when the categories span a small range, else ranks among the distinct
  // values (any int64 category works, negative ones included).
  std::vector<int64_t> dense(static_cast<size_t>(n));
  int64_t lo = idxs[order[0].id], hi = lo;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t c = idxs[order[r].id];
    lo = std::min(lo, c), hi = std::max(hi, c);
  }
  int64_t ncls;
  if (static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) < static_cast<uint64_t>(4 * n + 1024)) {
    ncls = hi - lo + 1;
    for (int64_t r = 0; r < n; ++r) dense[r] = idxs[order[r].id] - lo;
  } else {
    std::vector<int64_t> distinct(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) distinct[r] = idxs[order[r].id];
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    ncls = static_cast<int64_t>(distinct.size());
    for (int64_t r = 0; r < n; ++r)
      dense[r] = std::lower_bound(distinct.begin(), distinct.end(), idxs[order[r].id]) - distinct.begin();
  }
  std::vector<int64_t> start(static_cast<size_t>(ncls + 1), 0);
  for (int64_t r = 0; r < n; ++r) ++start[dense[r] + 1];
  for (int64_t c = 0; c < ncls; ++c) start[c + 1] += start[c];
  std::vector<int64_t> slot(static_cast<size_t>(n));  // rank positions, grouped by category, rank order within
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t r = 0; r < n; ++r) slot[fill[dense[r]]++] = r;
  }
  // Non-empty categories, largest first, so the queue's tail is short tasks.
  std::vector<int64_t> segs;
  for (int64_t c = 0; c < ncls; ++c)
    if (start[c + 1] > start[c]) segs.push_back(c);
  std::stable_sort(segs.begin(), segs.end(),
                   [&](int64_t a, int64_t b) { return start[a + 1] - start[a] > start[b + 1] - start[b]; });
  std::vector<uint8_t> kept(static_cast<size_t>(n), 0);
  const T thr = threshold_as<T>(p.iou_threshold);
  parallel_tasks<Columns<T>>(static_cast<int64_t>(segs.size()), [&](int64_t t, Columns<T>& cols) {
    const int64_t c = segs[t], b = start[c], len = start[c + 1] - b;
    cols.resize(len);
    for (int64_t k = 0; k < len; ++k) cols.set(k, boxes + 4 * order[slot[b + k]].id, slot[b + k]);
    std::vector<int64_t> keep(static_cast<size_t>(len));
    const int64_t nk = run_nms(cols, len, thr, len, keep.data());
    for (int64_t k = 0; k < nk; ++k) kept[keep[k]] = 1;  // distinct ranks: no two tasks write one byte
  });
  std::vector<int64_t> out;
  for (int64_t r = 0; r < n; ++r)
    if (kept[r]) out.push_back(order[r].id);
  return out;
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  NmsProblem p = prepare_batched_nms(boxes, scores, idxs, iou_threshold);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "batched_nms_cpu", [&] { keep = batched_nms_impl<scalar_t>(p); });
  return to_index_tensor(keep, boxes);
}

// ---- multiclass_nms, soft_nms: cpu/multiclass_nms.h and cpu/soft_nms.h over the column-wise boxes ----

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  return multiclass_nms_on_cpu<Columns>(prepare_multiclass(boxes, scores, score_threshold, iou_threshold,
                                                           max_detections, background_class, max_candidates_per_class));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold,
                                                double sigma, double score_threshold, c10::string_view method) {
  return soft_nms_on_cpu<Columns>(prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method));
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("nms", &detops::nms_cpu);
  m.impl("batched_nms", &detops::batched_nms_cpu);
  m.impl("multiclass_nms", &detops::multiclass_nms_cpu);
  m.impl("soft_nms", &detops::soft_nms_cpu);
}
