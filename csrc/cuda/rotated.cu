// CUDA kernels of the rotated-box ops (CPU twin: cpu/rotated.cpp; reference: detops/reference/rotated.py).
//
// box_iou_rotated: one output per thread, the row box broadcast to the warp. nms_rotated and
// batched_nms_rotated: the NMS family's bit-mask sweep (cuda/mask_nms.cuh) over rotated boxes; the only
// host synchronisation is the size of the returned index tensor. multiclass_nms_rotated and soft_nms_rotated:
// the NMS family's kernels (cuda/multiclass_nms.cuh, cuda/soft_nms.cuh) over rotated boxes.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>

#include "cuda/launch.cuh"
#include "cuda/mask_nms.cuh"
#include "cuda/multiclass_nms.cuh"
#include "cuda/soft_nms.cuh"
#include "nms_geometry.h"
#include "ops/nms.h"
#include "ops/rotated.h"
#include "rotated_math.h"

namespace detops {
namespace {

constexpr int kTileM = 128;  // columns (boxes2) per block: consecutive threads write consecutive outputs
constexpr int kTileN = 2;    // rows (boxes1) per block

template <typename T>
__global__ void __launch_bounds__(kTileM* kTileN)
    rotated_pairwise_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t a_bs,
                            int64_t b_bs, int64_t batch, int64_t n, int64_t m) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kTileM + threadIdx.x;
  if (j >= m) return;
  for (int64_t e = blockIdx.z; e < batch; e += gridDim.z) {
    const RotatedBox<T> bj = load_rotated(b + e * b_bs + 5 * j);
    for (int64_t i = static_cast<int64_t>(blockIdx.y) * kTileN + threadIdx.y; i < n;
         i += static_cast<int64_t>(gridDim.y) * kTileN) {
      const RotatedBox<T> ai = load_rotated(a + e * a_bs + 5 * i);
      out[(e * n + i) * m + j] = rotated_iou(ai, bj);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    rotated_aligned_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t count) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = rotated_iou(load_rotated(a + 5 * i), load_rotated(b + 5 * i));
}

at::Tensor box_iou_rotated_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  RotatedPairwiseProblem p = prepare_rotated_pairwise(boxes1, boxes2);
  const c10::cuda::CUDAGuard guard(p.a.device());  // after prepare_*'s device checks
  if (p.out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_iou_rotated_cuda", [&] {
      const dim3 threads(kTileM, kTileN);
      const dim3 blocks(static_cast<unsigned int>((p.m + kTileM - 1) / kTileM),
                        static_cast<unsigned int>(std::min<int64_t>((p.n + kTileN - 1) / kTileN, 65535)),
                        static_cast<unsigned int>(std::min<int64_t>(p.batch, 65535)));
      rotated_pairwise_kernel<scalar_t><<<blocks, threads, 0, cuda::stream()>>>(
          p.a.data_ptr<scalar_t>(), p.b.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(), p.a_batch_stride,
          p.b_batch_stride, p.batch, p.n, p.m);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_rotated(p.out, p.out_shape, p.out_dtype);
}

at::Tensor box_iou_rotated_aligned_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  RotatedAlignedProblem p = prepare_rotated_aligned(boxes1, boxes2);
  const c10::cuda::CUDAGuard guard(p.a.device());
  if (p.count > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_iou_rotated_aligned_cuda", [&] {
      rotated_aligned_kernel<scalar_t><<<cuda::blocks_for(p.count), cuda::kThreads, 0, cuda::stream()>>>(
          p.a.data_ptr<scalar_t>(), p.b.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(), p.count);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_rotated(p.out, p.out_shape, p.out_dtype);
}

// ---- nms_rotated, batched_nms_rotated: the bit-mask sweep of cuda/mask_nms.cuh ----

at::Tensor nms_rotated_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return mask_nms<Rotated>(prepare_nms(boxes, scores, iou_threshold, /*box_dim=*/5), "nms_rotated");
}

at::Tensor batched_nms_rotated_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                                    double iou_threshold) {
  return mask_nms<Rotated>(prepare_batched_nms(boxes, scores, idxs, iou_threshold, /*box_dim=*/5),
                           "batched_nms_rotated");
}

// ---- multiclass_nms_rotated, soft_nms_rotated: cuda/multiclass_nms.cuh and cuda/soft_nms.cuh ----

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_rotated_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  return multiclass_nms_on_cuda<Rotated>(prepare_multiclass(boxes, scores, score_threshold, iou_threshold,
                                                            max_detections, background_class, max_candidates_per_class,
                                                            /*box_dim=*/5));
}

std::tuple<at::Tensor, at::Tensor> soft_nms_rotated_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                         double iou_threshold, double sigma, double score_threshold,
                                                         c10::string_view method) {
  return soft_nms_on_cuda<Rotated>(
      prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method, /*box_dim=*/5));
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("box_iou_rotated", &detops::box_iou_rotated_cuda);
  m.impl("box_iou_rotated_aligned", &detops::box_iou_rotated_aligned_cuda);
  m.impl("nms_rotated", &detops::nms_rotated_cuda);
  m.impl("batched_nms_rotated", &detops::batched_nms_rotated_cuda);
  m.impl("multiclass_nms_rotated", &detops::multiclass_nms_rotated_cuda);
  m.impl("soft_nms_rotated", &detops::soft_nms_rotated_cuda);
}
