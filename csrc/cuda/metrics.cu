// CUDA kernels of COCO-style evaluation (CPU twin: cpu/metrics.cpp; semantics in ops/metrics.h). Matching
// runs in two launches: one thread per (image, class) group writes the group's IoU matrix into a flat buffer
// (offsets from a prefix sum of nd * ng), then one thread per (group, area range, threshold) runs the greedy
// matching over it with its own slice of a zeroed "taken" buffer [A, T, G]. Accumulation: one thread per
// (threshold, class, area range, maxDets). The arithmetic is ops/metrics.h's, built with --fmad=false, so the
// IoUs and precisions are the same doubles as on the CPU.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/launch.cuh"
#include "ops/metrics.h"

namespace detops {
namespace {

constexpr int kMaxThresholds = 64;

constexpr int kMaxDetectionCaps = 16;

// Small per-call parameters, passed by value in the kernel's argument space.
struct Thresholds {
  double v[kMaxThresholds];
};
struct MaxDets {
  int64_t v[kMaxDetectionCaps];
};

__global__ void __launch_bounds__(cuda::kThreads)
    coco_iou_kernel(const double* __restrict__ db, const double* __restrict__ gb, const bool* __restrict__ crowd,
                    const int64_t* __restrict__ doff, const int64_t* __restrict__ goff,
                    const int64_t* __restrict__ pair_end, double* __restrict__ iou, int64_t groups) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < groups;
       n += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t d0 = doff[n], nd = doff[n + 1] - d0, g0 = goff[n], ng = goff[n + 1] - g0;
    if (nd <= 0 || ng <= 0) continue;
    coco_group_iou(db, gb, crowd, d0, nd, g0, ng, iou + (pair_end[n] - nd * ng));
  }
}

__global__ void __launch_bounds__(cuda::kThreads)
    coco_match_kernel(const double* __restrict__ iou, const bool* __restrict__ crowd, const bool* __restrict__ ignore,
                      const int64_t* __restrict__ doff, const int64_t* __restrict__ goff,
                      const int64_t* __restrict__ pair_end, uint8_t* __restrict__ taken, int64_t* __restrict__ matched,
                      Thresholds thr, int64_t groups, int64_t A, int64_t T, int64_t D, int64_t G) {
  const int64_t jobs = groups * A * T;
  for (int64_t job = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; job < jobs;
       job += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t t = job % T, a = (job / T) % A, n = job / (T * A);
    const int64_t d0 = doff[n], nd = doff[n + 1] - d0, g0 = goff[n], ng = goff[n + 1] - g0;
    if (nd <= 0 || ng <= 0) continue;
    coco_match_group(iou + (pair_end[n] - nd * ng), nd, ng, crowd + g0, ignore + a * G + g0, thr.v[t],
                     taken + (a * T + t) * G + g0, matched + (a * T + t) * D + d0, g0);
  }
}

__global__ void __launch_bounds__(cuda::kThreads)
    coco_accumulate_kernel(const uint8_t* __restrict__ st, const double* __restrict__ sc,
                           const int64_t* __restrict__ rk, const int64_t* __restrict__ off,
                           const int64_t* __restrict__ pos, const double* __restrict__ thr, MaxDets max_dets,
                           double* __restrict__ prec, double* __restrict__ rec, double* __restrict__ outs, int64_t T,
                           int64_t K, int64_t A, int64_t M, int64_t R, int64_t D) {
  const int64_t jobs = T * K * A * M;
  for (int64_t job = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; job < jobs;
       job += static_cast<int64_t>(blockDim.x) * gridDim.x)
    coco_accumulate_job(job, st, sc, rk, off, pos, thr, max_dets.v, prec, rec, outs, T, K, A, M, R, D);
}

at::Tensor coco_match_cuda(const at::Tensor& dt_boxes, const at::Tensor& gt_boxes, const at::Tensor& gt_crowd,
                           const at::Tensor& gt_ignore, const at::Tensor& dt_offsets, const at::Tensor& gt_offsets,
                           at::ArrayRef<double> iou_thresholds) {
  CocoMatchProblem p =
      prepare_coco_match(dt_boxes, gt_boxes, gt_crowd, gt_ignore, dt_offsets, gt_offsets, iou_thresholds);
  const c10::cuda::CUDAGuard guard(p.dt_boxes.device());  // after prepare_*'s device checks
  TORCH_CHECK(p.T <= kMaxThresholds, "coco_match on CUDA takes at most ", kMaxThresholds, " IoU thresholds, got ", p.T);
  if (p.groups == 0 || p.D == 0 || p.G == 0) return p.matched;
  // Each group's IoU matrix ends at the inclusive prefix sum of nd * ng.
  const at::Tensor pair_end = p.dt_offsets.diff().mul(p.gt_offsets.diff()).cumsum(0);
  const int64_t pairs = pair_end[p.groups - 1].item<int64_t>();
  if (pairs == 0) return p.matched;
  at::Tensor iou = at::empty({pairs}, p.dt_boxes.options());
  at::Tensor taken = at::zeros({p.A, p.T, p.G}, p.dt_boxes.options().dtype(at::kByte));
  Thresholds thr{};
  for (int64_t t = 0; t < p.T; ++t) thr.v[t] = p.thresholds[t];
  coco_iou_kernel<<<cuda::blocks_for(p.groups), cuda::kThreads, 0, cuda::stream()>>>(
      p.dt_boxes.const_data_ptr<double>(), p.gt_boxes.const_data_ptr<double>(), p.gt_crowd.const_data_ptr<bool>(),
      p.dt_offsets.const_data_ptr<int64_t>(), p.gt_offsets.const_data_ptr<int64_t>(),
      pair_end.const_data_ptr<int64_t>(), iou.mutable_data_ptr<double>(), p.groups);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  coco_match_kernel<<<cuda::blocks_for(p.groups * p.A * p.T), cuda::kThreads, 0, cuda::stream()>>>(
      iou.const_data_ptr<double>(), p.gt_crowd.const_data_ptr<bool>(), p.gt_ignore.const_data_ptr<bool>(),
      p.dt_offsets.const_data_ptr<int64_t>(), p.gt_offsets.const_data_ptr<int64_t>(),
      pair_end.const_data_ptr<int64_t>(), taken.mutable_data_ptr<uint8_t>(), p.matched.mutable_data_ptr<int64_t>(), thr,
      p.groups, p.A, p.T, p.D, p.G);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return p.matched;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> coco_accumulate_cuda(
    const at::Tensor& status, const at::Tensor& scores, const at::Tensor& rank, const at::Tensor& class_offsets,
    const at::Tensor& positives, const at::Tensor& rec_thresholds, at::IntArrayRef max_detections) {
  CocoAccumulateProblem p =
      prepare_coco_accumulate(status, scores, rank, class_offsets, positives, rec_thresholds, max_detections);
  const c10::cuda::CUDAGuard guard(p.status.device());  // after prepare_*'s device checks
  const int64_t jobs = p.T * p.K * p.A * p.M;
  if (jobs == 0) return {p.precision, p.recall, p.out_scores};
  TORCH_CHECK(p.M <= kMaxDetectionCaps, "coco_accumulate on CUDA takes at most ", kMaxDetectionCaps,
              " max_detections values, got ", p.M);
  MaxDets caps{};
  for (int64_t m = 0; m < p.M; ++m) caps.v[m] = p.max_dets[m];
  coco_accumulate_kernel<<<cuda::blocks_for(jobs), cuda::kThreads, 0, cuda::stream()>>>(
      p.status.const_data_ptr<uint8_t>(), p.scores.const_data_ptr<double>(), p.rank.const_data_ptr<int64_t>(),
      p.class_offsets.const_data_ptr<int64_t>(), p.positives.const_data_ptr<int64_t>(),
      p.rec_thresholds.const_data_ptr<double>(), caps, p.precision.mutable_data_ptr<double>(),
      p.recall.mutable_data_ptr<double>(), p.out_scores.mutable_data_ptr<double>(), p.T, p.K, p.A, p.M, p.R, p.D);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {p.precision, p.recall, p.out_scores};
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("coco_match", &detops::coco_match_cuda);
  m.impl("coco_accumulate", &detops::coco_accumulate_cuda);
}
