// CUDA kernels of the overlap ops (CPU twin: cpu/boxes.cpp; reference: detops/reference/boxes.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "box_math.h"
#include "cuda/launch.cuh"
#include "ops/boxes.h"

namespace detops {
namespace {

constexpr int kTileM = 128;  // columns (boxes2) per block: consecutive threads write consecutive outputs
constexpr int kTileN = 2;    // rows (boxes1) per block: 256 threads, so ptxas may give a CIoU thread 255 registers
constexpr int kTileThreads = kTileM * kTileN;

// One output per thread; blocks stride over rows and batch entries so any N and batch fit the grid. T is the
// compute type, O the output's (float32 for integer boxes computed in float64).
template <typename T, typename O, IouMode kMode>
__global__ void __launch_bounds__(kTileThreads)
    pairwise_kernel(const T* __restrict__ a, const T* __restrict__ b, O* __restrict__ out, BoxFormat fmt, int64_t a_bs,
                    int64_t b_bs, int64_t batch, int64_t n, int64_t m, T eps) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kTileM + threadIdx.x;
  if (j >= m) return;
  for (int64_t e = blockIdx.z; e < batch; e += gridDim.z) {
    T area_b;
    const Box<T> bj = load_corners(b + e * b_bs + 4 * j, fmt, area_b);
    const T angle_b = kMode == IouMode::CIoU ? aspect_angle(bj) : T(0);
    for (int64_t i = static_cast<int64_t>(blockIdx.y) * kTileN + threadIdx.y; i < n;
         i += static_cast<int64_t>(gridDim.y) * kTileN) {
      T area_a;
      const Box<T> ai = load_corners(a + e * a_bs + 4 * i, fmt, area_a);  // one address per warp: a broadcast
      const T angle_a = kMode == IouMode::CIoU ? aspect_angle(ai) : T(0);
      out[(e * n + i) * m + j] = static_cast<O>(pairwise_overlap(kMode, ai, bj, area_a, area_b, angle_a, angle_b, eps));
    }
  }
}

template <typename T, typename O, IouMode kMode>
void launch_pairwise(PairwiseProblem& p) {
  const dim3 threads(kTileM, kTileN);
  const dim3 blocks(static_cast<unsigned int>((p.m + kTileM - 1) / kTileM),
                    static_cast<unsigned int>(std::min<int64_t>((p.n + kTileN - 1) / kTileN, 65535)),
                    static_cast<unsigned int>(std::min<int64_t>(p.batch, 65535)));
  pairwise_kernel<T, O, kMode><<<blocks, threads, 0, cuda::stream()>>>(
      p.a.data_ptr<T>(), p.b.data_ptr<T>(), p.out.data_ptr<O>(), p.fmt, p.a_batch_stride, p.b_batch_stride, p.batch,
      p.n, p.m, static_cast<T>(p.eps));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    aligned_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t count, IouMode mode,
                   T eps) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = aligned_overlap(mode, load_box(a + 4 * i), load_box(b + 4 * i), eps);
}

at::Tensor box_overlap_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps,
                            c10::string_view fmt) {
  PairwiseProblem p = prepare_pairwise(boxes1, boxes2, mode, eps, fmt);
  const c10::cuda::CUDAGuard guard(p.a.device());  // after prepare_*'s device checks
  if (p.out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_overlap_cuda", [&] {
      dispatch_iou_mode(p.mode, [&](auto mode) {
        if (p.out_dtype == p.a.scalar_type())
          launch_pairwise<scalar_t, scalar_t, decltype(mode)::value>(p);
        else  // integer boxes: float64 arithmetic, float32 output
          launch_pairwise<scalar_t, float, decltype(mode)::value>(p);
      });
    });
  }
  return finish_pairwise(p);
}

at::Tensor box_iou_aligned_cuda(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps) {
  AlignedProblem p = prepare_aligned(boxes1, boxes2, mode, eps);
  const c10::cuda::CUDAGuard guard(p.a.device());  // after prepare_*'s device checks
  if (p.count > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_iou_aligned_cuda", [&] {
      aligned_kernel<scalar_t><<<cuda::blocks_for(p.count), cuda::kThreads, 0, cuda::stream()>>>(
          p.a.data_ptr<scalar_t>(), p.b.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(), p.count, p.mode,
          static_cast<scalar_t>(p.eps));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_aligned(p);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("box_overlap", &detops::box_overlap_cuda);
  m.impl("box_iou_aligned", &detops::box_iou_aligned_cuda);
}
