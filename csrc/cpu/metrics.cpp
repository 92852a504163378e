// CPU kernels of COCO-style evaluation (CUDA twin: cuda/metrics.cu; semantics in ops/metrics.h; checked
// against pycocotools in tests/test_metrics_coco.py). Matching: one task per (image, class) group, whose IoU
// matrix is computed once and shared by every area range and threshold. Accumulation: one task per
// (threshold, class, area range, maxDets).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/metrics.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

namespace detops {
namespace {

at::Tensor coco_match_cpu(const at::Tensor& dt_boxes, const at::Tensor& gt_boxes, const at::Tensor& gt_crowd,
                          const at::Tensor& gt_ignore, const at::Tensor& dt_offsets, const at::Tensor& gt_offsets,
                          at::ArrayRef<double> iou_thresholds) {
  CocoMatchProblem p =
      prepare_coco_match(dt_boxes, gt_boxes, gt_crowd, gt_ignore, dt_offsets, gt_offsets, iou_thresholds);
  if (p.groups == 0 || p.D == 0 || p.G == 0) return p.matched;
  const double* db = p.dt_boxes.const_data_ptr<double>();
  const double* gb = p.gt_boxes.const_data_ptr<double>();
  const bool* crowd = p.gt_crowd.const_data_ptr<bool>();
  const bool* ignore = p.gt_ignore.const_data_ptr<bool>();
  const int64_t* doff = p.dt_offsets.const_data_ptr<int64_t>();
  const int64_t* goff = p.gt_offsets.const_data_ptr<int64_t>();
  int64_t* out = p.matched.mutable_data_ptr<int64_t>();
  const int64_t A = p.A, T = p.T, D = p.D, G = p.G;
  const double* thr = p.thresholds.data();
  at::parallel_for(0, p.groups, 64, [&](int64_t begin, int64_t end) {
    std::vector<double> iou;
    std::vector<uint8_t> taken;
    for (int64_t n = begin; n < end; ++n) {
      const int64_t d0 = doff[n], nd = doff[n + 1] - d0, g0 = goff[n], ng = goff[n + 1] - g0;
      TORCH_CHECK(nd >= 0 && ng >= 0 && d0 >= 0 && g0 >= 0 && d0 + nd <= D && g0 + ng <= G,
                  "coco_match: offsets of group ", n, " are out of range");
      if (nd == 0 || ng == 0) continue;
      iou.resize(static_cast<size_t>(nd * ng));
      coco_group_iou(db, gb, crowd, d0, nd, g0, ng, iou.data());
      taken.resize(static_cast<size_t>(ng));
      for (int64_t a = 0; a < A; ++a) {
        for (int64_t t = 0; t < T; ++t) {
          std::fill(taken.begin(), taken.end(), uint8_t{0});
          coco_match_group(iou.data(), nd, ng, crowd + g0, ignore + a * G + g0, thr[t], taken.data(),
                           out + (a * T + t) * D + d0, g0);
        }
      }
    }
  });
  return p.matched;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coco_accumulate_cpu(
    const at::Tensor& status, const at::Tensor& scores, const at::Tensor& rank, const at::Tensor& class_offsets,
    const at::Tensor& positives, const at::Tensor& rec_thresholds, at::IntArrayRef max_detections) {
  CocoAccumulateProblem p =
      prepare_coco_accumulate(status, scores, rank, class_offsets, positives, rec_thresholds, max_detections);
  const int64_t T = p.T, K = p.K, A = p.A, M = p.M, R = p.R, D = p.D;
  const uint8_t* st = p.status.const_data_ptr<uint8_t>();
  const double* sc = p.scores.const_data_ptr<double>();
  const int64_t* rk = p.rank.const_data_ptr<int64_t>();
  const int64_t* off = p.class_offsets.const_data_ptr<int64_t>();
  const int64_t* pos = p.positives.const_data_ptr<int64_t>();
  const double* thr = p.rec_thresholds.const_data_ptr<double>();
  double* prec = p.precision.mutable_data_ptr<double>();
  double* rec = p.recall.mutable_data_ptr<double>();
  double* outs = p.out_scores.mutable_data_ptr<double>();
  for (int64_t k = 0; k < K; ++k)
    TORCH_CHECK(off[k] >= 0 && off[k] <= off[k + 1] && off[k + 1] <= D, "coco_accumulate: class_offsets of class ", k,
                " are out of range");
  const int64_t* max_dets = p.max_dets.data();
  at::parallel_for(0, T * K * A * M, 16, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job)
      coco_accumulate_job(job, st, sc, rk, off, pos, thr, max_dets, prec, rec, outs, T, K, A, M, R, D);
  });
  return {p.precision, p.recall, p.out_scores};
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("coco_match", &detops::coco_match_cpu);
  m.impl("coco_accumulate", &detops::coco_accumulate_cpu);
}
