// CPU kernels of prior matching (CUDA twin: cuda/matching.cu; reference: detops/reference/matching.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <tuple>
#include <vector>

#include "box_math.h"
#include "ops/matching.h"

namespace detops {
namespace {

// One image: pass 1 finds each prior's best object (first object on ties) and each object's best prior (first
// prior on ties) from IoUs computed on the fly; the forced matches are applied in object order (a later object
// takes a shared best prior, as the tutorial's `object_for_each_prior[prior_for_each_object] = range(G)`);
// then threshold and encode. The prior's overlap lives in targets[p][0] until it is encoded.
// Per-thread scratch: the image's objects as structure-of-arrays (so the IoU loop over objects vectorises), each
// object's best prior so far, and one prior's IoUs with every object.
template <typename T>
struct ImageScratch {
  std::vector<T> x1, y1, x2, y2, area, best, ious;
  std::vector<int64_t> best_prior;
  void resize(int64_t n) {
    for (auto* v : {&x1, &y1, &x2, &y2, &area, &best, &ious}) v->resize(n);
    best_prior.resize(n);
  }
};

template <typename T>
void match_image(const T* gt, const int64_t* gt_labels, int64_t n_obj, const T* priors_xy, const T* priors_cxcy,
                 const T* prior_area, int64_t P, T threshold, CodingWeights w, int64_t* labels, int64_t* matched,
                 T* targets, ImageScratch<T>& s) {
  if (n_obj == 0 || P == 0) {
    for (int64_t p = 0; p < P; ++p) {
      labels[p] = 0;
      matched[p] = -1;
      for (int k = 0; k < 4; ++k) targets[4 * p + k] = T(0);
    }
    return;
  }
  s.resize(n_obj);
  for (int64_t g = 0; g < n_obj; ++g) {
    const Box<T> b = load_box(gt + 4 * g);
    s.x1[g] = b.x1;
    s.y1[g] = b.y1;
    s.x2[g] = b.x2;
    s.y2[g] = b.y2;
    s.area[g] = area(b);
    s.best[g] = -std::numeric_limits<T>::infinity();
    s.best_prior[g] = 0;
  }
  T* ious = s.ious.data();
  for (int64_t p = 0; p < P; ++p) {
    const Box<T> pb = load_box(priors_xy + 4 * p);
    const T pa = prior_area[p];
    // The tutorial's find_jaccard_overlap(boxes, priors): union = area(box) + area(prior) - inter.
    for (int64_t g = 0; g < n_obj; ++g) ious[g] = iou(Box<T>{s.x1[g], s.y1[g], s.x2[g], s.y2[g]}, pb, s.area[g], pa);
    T best = ious[0];
    int64_t best_g = 0;
    for (int64_t g = 1; g < n_obj; ++g) {
      if (ious[g] > best) {
        best = ious[g];
        best_g = g;
      }
    }
    for (int64_t g = 0; g < n_obj; ++g) {
      if (ious[g] > s.best[g]) {
        s.best[g] = ious[g];
        s.best_prior[g] = p;
      }
    }
    targets[4 * p] = best;
    matched[p] = best_g;
  }
  for (int64_t g = 0; g < n_obj; ++g) {
    matched[s.best_prior[g]] = g;
    targets[4 * s.best_prior[g]] = T(1);
  }
  for (int64_t p = 0; p < P; ++p) {
    const T* pc = priors_cxcy + 4 * p;
    if (targets[4 * p] < threshold) {
      labels[p] = 0;
      matched[p] = -1;
      for (int k = 0; k < 4; ++k) targets[4 * p + k] = T(0);
    } else {
      const int64_t g = matched[p];
      labels[p] = gt_labels[g];
      encode_box_center(load_box(gt + 4 * g), pc[0], pc[1], pc[2], pc[3], w, targets + 4 * p);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> match_priors_cpu(const at::Tensor& gt_boxes,
                                                                const at::Tensor& gt_labels, const at::Tensor& counts,
                                                                const at::Tensor& priors_cxcy, double threshold,
                                                                at::ArrayRef<double> weights) {
  MatchProblem p = prepare_match_priors(gt_boxes, gt_labels, counts, priors_cxcy, threshold, weights);
  check_match_values_cpu(p);
  at::Tensor labels = at::empty({p.B, p.P}, p.labels.options());
  at::Tensor matched = at::empty({p.B, p.P}, p.labels.options());
  at::Tensor targets = at::empty({p.B, p.P, 4}, p.boxes.options());
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "match_priors_cpu", [&] {
    const scalar_t* pxy = p.priors_xy.data_ptr<scalar_t>();
    std::vector<scalar_t> prior_area(p.P);
    for (int64_t i = 0; i < p.P; ++i) prior_area[i] = area(load_box(pxy + 4 * i));
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
        match_image<scalar_t>(gt + 4 * b * p.G, gl + b * p.G, cnt[b], pxy, pc, prior_area.data(), p.P, thr, p.weights,
                              lab + b * p.P, mat + b * p.P, tgt + 4 * b * p.P, scratch);
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
        for (int64_t p = 0; p < m.P; ++p) {
          // torch.max(dim=0): the first maximum; a NaN is the maximum (the first NaN).
          scalar_t best = qn[p];
          int64_t best_g = 0;
          for (int64_t g = 1; g < m.G && best == best; ++g) {
            const scalar_t v = qn[g * m.P + p];
            if (v > best || v != v) {
              best = v;
              best_g = g;
            }
          }
          int64_t r = best_g;
          if (best < lo)
            r = -1;
          else if (best < hi)
            r = -2;
          if (r < 0 && m.allow_low_quality) {
            for (int64_t g = 0; g < m.G; ++g)
              if (qn[g * m.P + p] == row_max[g]) {
                r = best_g;
                break;
              }
          }
          on[p] = r;
        }
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
