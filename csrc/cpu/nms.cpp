// CPU kernels of the NMS family (CUDA twin: cuda/nms.cu; reference: detops/reference/nms.py).
//
// Every op ranks its candidates, then runs the greedy sweep of cpu/nms_sweep.h: nms once, batched_nms and
// multiclass_nms once per category on the work queue of cpu/task_queue.h, soft_nms its own decaying loop.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "box_math.h"
#include "cpu/nms_sweep.h"
#include "cpu/task_queue.h"
#include "ops/nms.h"

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

// ---- multiclass_nms ----

template <typename T>
void multiclass_impl(MulticlassProblem& p) {
  const int64_t B = p.batch, P = p.priors, C = p.classes, K = p.max_detections, M = p.max_candidates;
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  const T score_thr = threshold_as<T>(p.score_threshold);
  const T iou_thr = threshold_as<T>(p.iou_threshold);
  auto box_of = [&](int64_t b, int64_t prior, int64_t c) {
    return p.per_class_boxes ? boxes + ((b * P + prior) * C + c) * 4 : boxes + (b * P + prior) * 4;
  };
  // Per (image, class): the kept prior indices and their scores, at most K of them (only the K best of a
  // class can reach its image's top K).
  std::vector<std::vector<Cand<T>>> kept(static_cast<size_t>(B * C));
  parallel_tasks<Columns<T>>(K > 0 ? B * C : 0, [&](int64_t t, Columns<T>& cols) {
    const int64_t b = t / C, c = t % C;
    if (c == p.background_class) return;
    std::vector<Cand<T>> cand;
    const T* s = scores + b * P * C + c;
    for (int64_t prior = 0; prior < P; ++prior) {
      const T v = s[prior * C];
      if (v > score_thr && nms_valid(box_of(b, prior, c), v)) cand.push_back({v, prior});
    }
    if (cand.empty()) return;
    if (static_cast<int64_t>(cand.size()) > M) {
      std::nth_element(cand.begin(), cand.begin() + M, cand.end(), RankBefore<T>{});
      cand.resize(static_cast<size_t>(M));
      std::sort(cand.begin(), cand.end(), RankBefore<T>{});
    } else {
      sort_by_rank(cand);  // still in increasing prior order, as sort_by_rank needs
    }
    const int64_t n = static_cast<int64_t>(cand.size());
    cols.resize(n);
    for (int64_t k = 0; k < n; ++k) cols.set(k, box_of(b, cand[k].id, c), k);
    std::vector<int64_t> keep(static_cast<size_t>(std::min(n, K)));
    const int64_t nk = run_nms(cols, n, iou_thr, K, keep.data());
    auto& out = kept[t];
    out.resize(static_cast<size_t>(nk));
    for (int64_t k = 0; k < nk; ++k) out[k] = cand[keep[k]];
  });
  T* ob = p.out_boxes.data_ptr<T>();
  T* os = p.out_scores.data_ptr<T>();
  int64_t* ol = p.out_labels.data_ptr<int64_t>();
  int64_t* oc = p.out_counts.data_ptr<int64_t>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      // Image-level rank: decreasing score, then lower class, then lower prior index.
      struct Det {
        T score;
        int64_t cls, prior;
      };
      std::vector<Det> dets;
      for (int64_t c = 0; c < C; ++c)
        for (const auto& e : kept[b * C + c]) dets.push_back({e.score, c, e.id});
      auto before = [](const Det& x, const Det& y) {
        if (x.score != y.score) return x.score > y.score;
        return x.cls != y.cls ? x.cls < y.cls : x.prior < y.prior;
      };
      const int64_t cnt = std::min<int64_t>(K, static_cast<int64_t>(dets.size()));
      std::partial_sort(dets.begin(), dets.begin() + cnt, dets.end(), before);
      for (int64_t k = 0; k < K; ++k) {
        T* box = ob + (b * K + k) * 4;
        if (k < cnt) {
          const T* src = box_of(b, dets[k].prior, dets[k].cls);
          box[0] = src[0], box[1] = src[1], box[2] = src[2], box[3] = src[3];
          os[b * K + k] = dets[k].score;
          ol[b * K + k] = dets[k].cls;
        } else {
          box[0] = box[1] = box[2] = box[3] = T(0);
          os[b * K + k] = T(0);
          ol[b * K + k] = -1;
        }
      }
      oc[b] = cnt;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  MulticlassProblem p = prepare_multiclass(boxes, scores, score_threshold, iou_threshold, max_detections,
                                           background_class, max_candidates_per_class);
  AT_DISPATCH_FLOATING_TYPES(p.scores.scalar_type(), "multiclass_nms_cpu", [&] { multiclass_impl<scalar_t>(p); });
  return finish_multiclass(p);
}

// ---- soft_nms ----

template <typename T>
void soft_nms_impl(const SoftNmsProblem& p, std::vector<int64_t>& keep, std::vector<T>& kept_scores) {
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  Columns<T> c;
  c.resize(p.n);
  std::vector<T> cur;
  int64_t n = 0;
  for (int64_t i = 0; i < p.n; ++i)
    if (nms_valid(boxes + 4 * i, scores[i])) {
      c.set(n, boxes + 4 * i, i);
      cur.push_back(scores[i]);
      ++n;
    }
  const T thr = static_cast<T>(p.iou_threshold), sigma = static_cast<T>(p.sigma);
  const T min_score = static_cast<T>(p.score_threshold);
  // The remaining boxes stay in index order, so the first maximum found is the lowest index among ties.
  while (n > 0) {
    int64_t best = 0;
    for (int64_t j = 1; j < n; ++j)
      if (cur[j] > cur[best]) best = j;
    if (!(cur[best] >= min_score)) break;
    keep.push_back(c.id[best]);
    kept_scores.push_back(cur[best]);
    const Box<T> a{c.x1[best], c.y1[best], c.x2[best], c.y2[best]};
    const T aa = c.ar[best];
    int64_t w = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == best) continue;
      const Box<T> b{c.x1[j], c.y1[j], c.x2[j], c.y2[j]};
      const T ov = iou(a, b, aa, c.ar[j]);
      const T s = cur[j] * soft_nms_weight(p.method, ov, thr, sigma);
      if (!(s >= min_score)) continue;  // dropped for good: scores only decay
      c.x1[w] = c.x1[j], c.y1[w] = c.y1[j], c.x2[w] = c.x2[j], c.y2[w] = c.y2[j], c.ar[w] = c.ar[j];
      c.id[w] = c.id[j];
      cur[w] = s;
      ++w;
    }
    n = w;
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                double iou_threshold, double sigma, double score_threshold,
                                                c10::string_view method) {
  SoftNmsProblem p = prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method);
  at::Tensor keep_t, scores_t;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "soft_nms_cpu", [&] {
    std::vector<int64_t> keep;
    std::vector<scalar_t> ks;
    soft_nms_impl<scalar_t>(p, keep, ks);
    keep_t = to_index_tensor(keep, boxes);
    scores_t = at::empty({static_cast<int64_t>(ks.size())}, p.scores.options());
    if (!ks.empty()) std::memcpy(scores_t.data_ptr<scalar_t>(), ks.data(), ks.size() * sizeof(scalar_t));
  });
  return {keep_t, scores_t.to(p.out_dtype)};
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("nms", &detops::nms_cpu);
  m.impl("batched_nms", &detops::batched_nms_cpu);
  m.impl("multiclass_nms", &detops::multiclass_nms_cpu);
  m.impl("soft_nms", &detops::soft_nms_cpu);
}
