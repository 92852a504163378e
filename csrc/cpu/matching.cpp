// CPU kernels of prior matching (CUDA twin: cuda/matching.cu; reference: detops/reference/matching.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/matching.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "box_math.h"

namespace detops {
namespace {

// One image: pass 1 finds each prior's best object (first object on ties) and each object's best prior (first
// prior on ties) from IoUs computed on the fly; the forced matches are applied in object order (a later object
// takes a shared best prior, as the tutorial's `object_for_each_prior[prior_for_each_object] = range(G)`);
// then threshold and encode. The prior's overlap lives in targets[p][0] until it is encoded.
// The priors as structure-of-arrays (xyxy corners and areas), shared by every image: the IoU loop runs over
// priors, contiguous, so the compiler vectorises it.
template <typename T>
struct PriorsSoA {
  std::vector<T> x1, y1, x2, y2, area;
  PriorsSoA(const T* xy, int64_t P) : x1(P), y1(P), x2(P), y2(P), area(P) {
    for (int64_t p = 0; p < P; ++p) {
      const Box<T> b = load_box(xy + 4 * p);
      x1[p] = b.x1;
      y1[p] = b.y1;
      x2[p] = b.x2;
      y2[p] = b.y2;
      area[p] = detops::area(b);
    }
  }
};

// Per-thread scratch of P entries: each prior's best overlap and object so far, one object's IoUs.
template <typename T>
struct ImageScratch {
  std::vector<T> best, ious;
  std::vector<int32_t> best_obj;
  void resize(int64_t P) {
    best.resize(P);
    ious.resize(P);
    best_obj.resize(P);
  }
};

template <typename T>
void match_image(const T* gt, const int64_t* gt_labels, int64_t n_obj, const PriorsSoA<T>& pr, const T* priors_cxcy,
                 int64_t P, T threshold, CodingWeights w, int64_t* labels, int64_t* matched, T* targets,
                 ImageScratch<T>& s) {
  if (n_obj == 0 || P == 0) {
    for (int64_t p = 0; p < P; ++p) {
      labels[p] = 0;
      matched[p] = -1;
      for (int k = 0; k < 4; ++k) targets[4 * p + k] = T(0);
    }
    return;
  }
  s.resize(P);
  T* __restrict__ best = s.best.data();
  T* __restrict__ ious = s.ious.data();
  int32_t* __restrict__ best_obj = s.best_obj.data();
  const T* __restrict__ px1 = pr.x1.data();
  const T* __restrict__ py1 = pr.y1.data();
  const T* __restrict__ px2 = pr.x2.data();
  const T* __restrict__ py2 = pr.y2.data();
  const T* __restrict__ pa = pr.area.data();
  std::fill(best, best + P, -std::numeric_limits<T>::infinity());
  std::fill(best_obj, best_obj + P, 0);
  for (int64_t g = 0; g < n_obj; ++g) {
    const Box<T> gb = load_box(gt + 4 * g);
    const T ga = area(gb);
    const auto gi = static_cast<int32_t>(g);
    // Objects in increasing order with a strict '>': a prior keeps the first object of highest IoU. The
    // tutorial's find_jaccard_overlap(boxes, priors): union = area(box) + area(prior) - inter.
    for (int64_t p = 0; p < P; ++p) {
      const T v = iou_no_nan(gb, Box<T>{px1[p], py1[p], px2[p], py2[p]}, ga, pa[p]);
      ious[p] = v;
      const T b = best[p];
      const int32_t better = -static_cast<int32_t>(v > b);  // all bits set when v > b: branch-free, vectorises
      best_obj[p] = (gi & better) | (best_obj[p] & ~better);
      best[p] = v > b ? v : b;
    }
    // This object's best prior: the first of highest IoU (torch.max(dim=1)).
    T ob = ious[0];
    int64_t op = 0;
    for (int64_t p = 1; p < P; ++p) {
      if (ious[p] > ob) {
        ob = ious[p];
        op = p;
      }
    }
    // Forced match, in object order: a later object takes over a best prior an earlier one had.
    best[op] = std::numeric_limits<T>::infinity();  // marks a forced prior; its overlap is 1
    best_obj[op] = gi;
  }
  for (int64_t p = 0; p < P; ++p) {
    const T* pc = priors_cxcy + 4 * p;
    // A forced prior has overlap 1 (the tutorial's overlap_for_each_prior[prior_for_each_object] = 1.).
    const T overlap = best[p] == std::numeric_limits<T>::infinity() ? T(1) : best[p];
    if (overlap < threshold) {
      labels[p] = 0;
      matched[p] = -1;
      for (int k = 0; k < 4; ++k) targets[4 * p + k] = T(0);
    } else {
      const int64_t g = best_obj[p];
      matched[p] = g;
      labels[p] = gt_labels[g];
      encode_box_center(load_box(gt + 4 * g), pc[0], pc[1], pc[2], pc[3], w, targets + 4 * p);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> match_priors_cpu(const at::Tensor& gt_boxes, const at::Tensor& gt_labels,
                                                                const at::Tensor& counts, const at::Tensor& priors_cxcy,
                                                                double threshold, at::ArrayRef<double> weights) {
  MatchProblem p = prepare_match_priors(gt_boxes, gt_labels, counts, priors_cxcy, threshold, weights);
  check_match_values_cpu(p);
  at::Tensor labels = at::empty({p.B, p.P}, p.labels.options());
  at::Tensor matched = at::empty({p.B, p.P}, p.labels.options());
  at::Tensor targets = at::empty({p.B, p.P, 4}, p.boxes.options());
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "match_priors_cpu", [&] {
    const PriorsSoA<scalar_t> priors(p.priors_xy.data_ptr<scalar_t>(), p.P);
    const scalar_t* gt = p.boxes.data_ptr<scalar_t>();
    const int64_t* gl = p.labels.data_ptr<int64_t>();
    const int64_t* cnt = p.counts.data_ptr<int64_t>();
    const scalar_t* pc = p.priors_cxcy.data_ptr<scalar_t>();
    int64_t* lab = labels.data_ptr<int64_t>();
    int64_t* mat = matched.data_ptr<int64_t>();
    scalar_t* tgt = targets.data_ptr<scalar_t>();
    const auto thr = static_cast<scalar_t>(p.threshold);
    at::parallel_for(0, p.B, 1, [&](int64_t begin, int64_t end) {
      ImageScratch<scalar_t> scratch;
      for (int64_t b = begin; b < end; ++b)
        match_image<scalar_t>(gt + 4 * b * p.G, gl + b * p.G, cnt[b], priors, pc, p.P, thr, p.weights, lab + b * p.P,
                              mat + b * p.P, tgt + 4 * b * p.P, scratch);
    });
  });
  return {labels, matched, targets.to(p.out_dtype)};
}

at::Tensor match_boxes_cpu(const at::Tensor& quality, double high, double low, bool allow_low_quality) {
  MatcherProblem m = prepare_match_boxes(quality, high, low, allow_low_quality);
  at::Tensor matches = at::empty({m.N, m.P}, quality.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(m.quality.scalar_type(), "match_boxes_cpu", [&] {
    const scalar_t* q = m.quality.data_ptr<scalar_t>();
    int64_t* out = matches.data_ptr<int64_t>();
    const auto hi = static_cast<scalar_t>(m.high), lo = static_cast<scalar_t>(m.low);
    at::parallel_for(0, m.N, 1, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> row_max(m.G);
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t* qn = q + n * m.G * m.P;
        int64_t* on = out + n * m.P;
        if (m.G == 0 || m.P == 0) {
          for (int64_t p = 0; p < m.P; ++p) on[p] = -1;
          continue;
        }
        if (m.allow_low_quality) {
          for (int64_t g = 0; g < m.G; ++g) {
            scalar_t best = qn[g * m.P];
            for (int64_t p = 1; p < m.P; ++p) best = nan_max(best, qn[g * m.P + p]);
            row_max[g] = best;
          }
        }
        for (int64_t p = 0; p < m.P; ++p)
          on[p] = matcher_decision(qn, m.G, m.P, p, row_max.data(), hi, lo, m.allow_low_quality);
      }
    });
  });
  return matches.view(m.out_shape);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("match_priors", &detops::match_priors_cpu);
  m.impl("match_boxes", &detops::match_boxes_cpu);
}
