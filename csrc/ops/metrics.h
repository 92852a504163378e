// COCO-style detection evaluation (the `metrics` family): the two steps of pycocotools' COCOeval that loop in
// Python, as kernels. Argument checks and the layout both the CPU kernels (cpu/metrics.cpp) and the CUDA
// kernels (cuda/metrics.cu) receive; the Python side (detops/metrics/coco.py) groups and sorts the inputs.
//
// coco_match: per (image, class) group, per area range, per IoU threshold, pycocotools' greedy matching:
//   detections in score order (the caller sorts them, stable on ties, and keeps at most maxDets[-1] of a
//   group); each takes, among the group's ground truth visited non-ignored first (input order within each
//   kind), the box of largest IoU >= min(threshold, 1 - 1e-10), a later box winning a tie; a box already
//   taken is skipped unless it is a crowd; once a non-ignored box is matched, ignored boxes are not visited.
// coco_accumulate: per (threshold, class, area range, maxDets), the precision at the recall thresholds
//   (precision made non-increasing from the right, read at the first rank whose recall reaches each
//   threshold), the final recall and the score at each threshold; -1 where the class has no non-ignored
//   ground truth in that area range, as pycocotools' accumulate().
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "box_math.h"

namespace detops {

// pycocotools' box IoU (maskApi's bbIou) on (x, y, w, h) float64 boxes, operation for operation so the value
// is the same double: a crowd box divides by the detection's own area instead of the union.
DETOPS_HD double coco_box_iou(const double* d, const double* g, bool crowd) {
  const double w = fmin(d[2] + d[0], g[2] + g[0]) - fmax(d[0], g[0]);
  if (w <= 0) return 0.0;
  const double h = fmin(d[3] + d[1], g[3] + g[1]) - fmax(d[1], g[1]);
  if (h <= 0) return 0.0;
  const double inter = w * h;
  const double da = d[2] * d[3];
  const double ga = g[2] * g[3];
  const double u = crowd ? da : da + ga - inter;
  return inter / u;
}

// The IoU matrix [nd, ng] (row-major, into iou) of one group: detections d0 .. d0 + nd of db against boxes
// g0 .. g0 + ng of gb.
DETOPS_HD void coco_group_iou(const double* db, const double* gb, const bool* crowd, int64_t d0, int64_t nd, int64_t g0,
                              int64_t ng, double* iou) {
  for (int64_t d = 0; d < nd; ++d)
    for (int64_t g = 0; g < ng; ++g)
      iou[d * ng + g] = coco_box_iou(db + (d0 + d) * 4, gb + (g0 + g) * 4, crowd[g0 + g]);
}

// The greedy matching of one group at one area range and one threshold. iou: [nd, ng] row-major; crowd and
// ignore: [ng]; taken: [ng] zeroed scratch; matched: [nd] out, the matched box's index plus gt_base, or -1.
DETOPS_HD void coco_match_group(const double* iou, int64_t nd, int64_t ng, const bool* crowd, const bool* ignore,
                                double threshold, uint8_t* taken, int64_t* matched, int64_t gt_base) {
  const double start = threshold < 1.0 - 1e-10 ? threshold : 1.0 - 1e-10;
  for (int64_t d = 0; d < nd; ++d) {
    double best = start;
    int64_t m = -1;
    // Pass 0 visits the non-ignored boxes, pass 1 the ignored ones (pycocotools sorts them last, stably).
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1 && m >= 0) break;
      for (int64_t g = 0; g < ng; ++g) {
        if (static_cast<int>(ignore[g]) != pass) continue;
        if (taken[g] && !crowd[g]) continue;
        const double v = iou[d * ng + g];
        if (v < best) continue;
        best = v;
        m = g;
      }
    }
    if (m >= 0) {
      taken[m] = 1;
      matched[d] = gt_base + m;
    } else {
      matched[d] = -1;
    }
  }
}

// Detection status codes in coco_accumulate's `status`.
constexpr uint8_t kCocoFalsePositive = 0;
constexpr uint8_t kCocoTruePositive = 1;
constexpr uint8_t kCocoIgnored = 2;

// precision / scores [T, R, K, A, M] and recall [T, K, A, M] for one (t, k, a, m): the detections of class k
// are status[lo:hi] (ranked: score descending, then image, then rank in the image), those with
// rank >= max_det left out.
DETOPS_HD void coco_accumulate_one(const uint8_t* status, const double* scores, const int64_t* rank, int64_t lo,
                                   int64_t hi, int64_t max_det, int64_t positives, const double* rec_thr, int64_t R,
                                   double* precision, double* score_out, int64_t r_stride, double* recall) {
  if (positives == 0) return;  // stays -1
  const double npig = static_cast<double>(positives);
  const double eps = 2.220446049250313e-16;  // numpy.spacing(1)
  double tp = 0, fp = 0;
  int64_t nd = 0;
  for (int64_t i = lo; i < hi; ++i) {
    if (rank[i] >= max_det) continue;
    tp += status[i] == kCocoTruePositive;
    fp += status[i] == kCocoFalsePositive;
    ++nd;
  }
  *recall = nd ? tp / npig : 0.0;
  int64_t ri = R - 1;
  // Thresholds above the final recall are never reached: precision 0.
  const double last = nd ? tp / npig : 0.0;
  while (ri >= 0 && (nd == 0 || rec_thr[ri] > last)) {
    precision[ri * r_stride] = 0.0;
    score_out[ri * r_stride] = 0.0;
    --ri;
  }
  // Walk back from the last rank, carrying the running maximum of precision; a threshold r is read at rank j
  // when recall(j - 1) < r <= recall(j).
  double envelope = 0.0;
  int64_t j = nd - 1;
  for (int64_t i = hi - 1; i >= lo && ri >= 0; --i) {
    if (rank[i] >= max_det) continue;
    const double pr = tp / ((fp + tp) + eps);
    if (pr > envelope) envelope = pr;
    const double tp_prev = tp - (status[i] == kCocoTruePositive);
    const double fp_prev = fp - (status[i] == kCocoFalsePositive);
    const double rc_prev = tp_prev / npig;
    while (ri >= 0 && (j == 0 || rec_thr[ri] > rc_prev)) {
      precision[ri * r_stride] = envelope;
      score_out[ri * r_stride] = scores[i];
      --ri;
    }
    tp = tp_prev;
    fp = fp_prev;
    --j;
  }
}

// One of coco_accumulate's T * K * A * M jobs, job = ((t * K + k) * A + a) * M + m: coco_accumulate_one on the
// arrays prepare_coco_accumulate lays out (status [A, T, D], positives [K, A], outputs as it allocates them).
DETOPS_HD void coco_accumulate_job(int64_t job, const uint8_t* status, const double* scores, const int64_t* rank,
                                   const int64_t* class_offsets, const int64_t* positives, const double* rec_thr,
                                   const int64_t* max_dets, double* precision, double* recall, double* score_out,
                                   int64_t T, int64_t K, int64_t A, int64_t M, int64_t R, int64_t D) {
  const int64_t m = job % M, a = (job / M) % A, k = (job / (M * A)) % K, t = job / (M * A * K);
  const int64_t r_stride = K * A * M;
  const int64_t cell = (k * A + a) * M + m;  // offset of (k, a, m) within one (t, r) slice
  coco_accumulate_one(status + (a * T + t) * D, scores, rank, class_offsets[k], class_offsets[k + 1], max_dets[m],
                      positives[k * A + a], rec_thr, R, precision + t * R * r_stride + cell,
                      score_out + t * R * r_stride + cell, r_stride, recall + t * K * A * M + cell);
}

struct CocoMatchProblem {
  at::Tensor dt_boxes;    // [D, 4] float64 xywh, contiguous
  at::Tensor gt_boxes;    // [G, 4] float64 xywh, contiguous
  at::Tensor gt_crowd;    // [G] bool
  at::Tensor gt_ignore;   // [A, G] bool
  at::Tensor dt_offsets;  // [NG + 1] int64: group n's detections are dt_offsets[n] .. dt_offsets[n + 1]
  at::Tensor gt_offsets;  // [NG + 1] int64
  std::vector<double> thresholds;
  int64_t groups = 0, A = 0, T = 0, D = 0, G = 0;
  at::Tensor matched;  // [A, T, D] int64, filled with -1
};
CocoMatchProblem prepare_coco_match(const at::Tensor& dt_boxes, const at::Tensor& gt_boxes, const at::Tensor& gt_crowd,
                                    const at::Tensor& gt_ignore, const at::Tensor& dt_offsets,
                                    const at::Tensor& gt_offsets, at::ArrayRef<double> iou_thresholds);

struct CocoAccumulateProblem {
  at::Tensor status;          // [A, T, D] uint8
  at::Tensor scores;          // [D] float64
  at::Tensor rank;            // [D] int64
  at::Tensor class_offsets;   // [K + 1] int64
  at::Tensor positives;       // [K, A] int64
  at::Tensor rec_thresholds;  // [R] float64, on the device
  std::vector<int64_t> max_dets;
  int64_t A = 0, T = 0, D = 0, K = 0, R = 0, M = 0;
  at::Tensor precision, recall, out_scores;  // [T, R, K, A, M], [T, K, A, M], [T, R, K, A, M] float64, -1
};
CocoAccumulateProblem prepare_coco_accumulate(const at::Tensor& status, const at::Tensor& scores,
                                              const at::Tensor& rank, const at::Tensor& class_offsets,
                                              const at::Tensor& positives, const at::Tensor& rec_thresholds,
                                              at::IntArrayRef max_detections);

}  // namespace detops
