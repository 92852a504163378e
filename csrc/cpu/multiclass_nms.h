// multiclass_nms on the CPU (CUDA twin: cuda/multiclass_nms.cuh), written once over a candidate store:
// cpu/nms_sweep.h's Columns for axis-aligned boxes, cpu/rotated.cpp's RotatedCandidates for rotated ones.
// A store has resize(n), set(k, box, id), sweep(n, thr, max_keep, keep) (greedy NMS over its first n
// entries) and a geometry Geo (nms_geometry.h) that gives the box width and which boxes take part.
//
// Per (image, class) on the work queue: threshold, rank, cap, sweep (at most K kept); then per image the
// K best over all classes (decreasing score, then lower class, then lower prior index).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "cpu/nms_sweep.h"
#include "cpu/task_queue.h"
#include "ops/nms.h"

namespace detops {

template <class Store, typename T>
void multiclass_nms_impl(MulticlassProblem& p) {
  constexpr int D = Store::Geo::kDim;
  const int64_t B = p.batch, P = p.priors, C = p.classes, K = p.max_detections, M = p.max_candidates;
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  const T score_thr = threshold_as<T>(p.score_threshold);
  const T iou_thr = threshold_as<T>(p.iou_threshold);
  auto box_of = [&](int64_t b, int64_t prior, int64_t c) {
    return p.per_class_boxes ? boxes + ((b * P + prior) * C + c) * D : boxes + (b * P + prior) * D;
  };
  // Per (image, class): the kept prior indices and their scores, at most K of them (only the K best of a
  // class can reach its image's top K).
  std::vector<std::vector<Cand<T>>> kept(static_cast<size_t>(B * C));
  parallel_tasks<Store>(K > 0 ? B * C : 0, [&](int64_t t, Store& cols) {
    const int64_t b = t / C, c = t % C;
    if (c == p.background_class) return;
    std::vector<Cand<T>> cand;
    const T* s = scores + b * P * C + c;
    for (int64_t prior = 0; prior < P; ++prior) {
      const T v = s[prior * C];
      if (v > score_thr && Store::Geo::valid(box_of(b, prior, c), v)) cand.push_back({v, prior});
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
    const int64_t nk = cols.sweep(n, iou_thr, K, keep.data());
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
        T* box = ob + (b * K + k) * D;
        if (k < cnt) {
          const T* src = box_of(b, dets[k].prior, dets[k].cls);
          for (int d = 0; d < D; ++d) box[d] = src[d];
          os[b * K + k] = dets[k].score;
          ol[b * K + k] = dets[k].cls;
        } else {
          for (int d = 0; d < D; ++d) box[d] = T(0);
          os[b * K + k] = T(0);
          ol[b * K + k] = -1;
        }
      }
      oc[b] = cnt;
    }
  });
}

// The whole op for a store template (Columns or RotatedCandidates): p from prepare_multiclass.
template <template <typename> class Store>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_on_cpu(MulticlassProblem p) {
  AT_DISPATCH_FLOATING_TYPES(p.scores.scalar_type(), "multiclass_nms_cpu",
                             [&] { multiclass_nms_impl<Store<scalar_t>, scalar_t>(p); });
  return finish_multiclass(p);
}

}  // namespace detops
