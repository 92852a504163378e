// soft_nms on the CPU (CUDA twin: cuda/soft_nms.cuh), written once over a candidate store (cpu/nms_sweep.h's
// Columns or cpu/rotated.cpp's RotatedCandidates): besides resize and set, a store gives get(k) (entry k as
// one loaded box), overlap(box, j) and move(w, j) (entry j to slot w <= j).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <cstring>
#include <tuple>
#include <vector>

#include "ops/nms.h"

namespace detops {

template <class Store, typename T>
void soft_nms_impl(const SoftNmsProblem& p, std::vector<int64_t>& keep, std::vector<T>& kept_scores) {
  constexpr int D = Store::Geo::kDim;
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  Store c;
  c.resize(p.n);
  std::vector<T> cur;
  int64_t n = 0;
  for (int64_t i = 0; i < p.n; ++i)
    if (Store::Geo::valid(boxes + D * i, scores[i])) {
      c.set(n, boxes + D * i, i);
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
    const auto a = c.get(best);  // a copy: the compaction below may write over slot best
    int64_t w = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == best) continue;
      const T s = cur[j] * soft_nms_weight(p.method, c.overlap(a, j), thr, sigma);
      if (!(s >= min_score)) continue;  // dropped for good: scores only decay
      c.move(w, j);
      cur[w] = s;
      ++w;
    }
    n = w;
  }
}

// The whole op for a store template: p from prepare_soft_nms.
template <template <typename> class Store>
std::tuple<at::Tensor, at::Tensor> soft_nms_on_cpu(const SoftNmsProblem& p) {
  at::Tensor keep_t, scores_t;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "soft_nms_cpu", [&] {
    std::vector<int64_t> keep;
    std::vector<scalar_t> ks;
    soft_nms_impl<Store<scalar_t>, scalar_t>(p, keep, ks);
    keep_t = at::empty({static_cast<int64_t>(keep.size())}, p.boxes.options().dtype(at::kLong));
    if (!keep.empty()) std::memcpy(keep_t.data_ptr<int64_t>(), keep.data(), keep.size() * sizeof(int64_t));
    scores_t = at::empty({static_cast<int64_t>(ks.size())}, p.scores.options());
    if (!ks.empty()) std::memcpy(scores_t.data_ptr<scalar_t>(), ks.data(), ks.size() * sizeof(scalar_t));
  });
  return {keep_t, scores_t.to(p.out_dtype)};
}

}  // namespace detops
