// soft_nms on the GPU (CPU twin: cpu/soft_nms.h), written once over a box geometry (nms_geometry.h):
// soft_nms (cuda/nms.cu) and soft_nms_rotated (cuda/rotated.cu). One block; each step a block-wide argmax
// (ties: lower index), then a decay sweep.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <limits>
#include <tuple>

#include "cuda/launch.cuh"
#include "nms_geometry.h"
#include "ops/nms.h"

// Everything here has internal linkage: each .cu that includes it compiles its own instantiations.
namespace detops {
namespace {

// 512 rather than 1024 threads: at 1024 a thread may hold only 64 registers, and the float64 rotated IoU
// needs more (it would spill). The result does not depend on the block size.
constexpr int kSoftThreads = 512;

template <class Geo, typename T>
__global__ void __launch_bounds__(kSoftThreads)
    soft_nms_kernel(const T* __restrict__ boxes, T* __restrict__ cur, uint8_t* __restrict__ alive, int64_t n, T iou_thr,
                    T sigma, T min_score, SoftNmsMethod method, int64_t* __restrict__ keep, T* __restrict__ kept_scores,
                    int64_t* __restrict__ count) {
  __shared__ T best_v[kSoftThreads / 32];
  __shared__ int64_t best_i[kSoftThreads / 32];
  __shared__ int64_t sel_s;
  int64_t kept = 0;
  for (int64_t step = 0; step < n; ++step) {
    T v = -std::numeric_limits<T>::infinity();
    int64_t bi = -1;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
      if (alive[j] && cur[j] >= min_score && (bi < 0 || cur[j] > v)) v = cur[j], bi = j;
    for (int off = 16; off > 0; off >>= 1) {
      const T ov = __shfl_down_sync(0xffffffffu, v, off);
      const int64_t oi = __shfl_down_sync(0xffffffffu, bi, off);
      if (oi >= 0 && (bi < 0 || ov > v || (ov == v && oi < bi))) v = ov, bi = oi;
    }
    if ((threadIdx.x & 31) == 0) best_v[threadIdx.x >> 5] = v, best_i[threadIdx.x >> 5] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
      T bv = -std::numeric_limits<T>::infinity();
      int64_t b = -1;
      for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w)
        if (best_i[w] >= 0 && (b < 0 || best_v[w] > bv || (best_v[w] == bv && best_i[w] < b)))
          bv = best_v[w], b = best_i[w];
      sel_s = b;
      if (b >= 0) {
        keep[kept] = b;
        kept_scores[kept] = bv;
        alive[b] = 0;
      }
    }
    __syncthreads();
    const int64_t s = sel_s;
    if (s < 0) break;
    ++kept;
    const typename Geo::Loaded a = Geo::load(boxes + Geo::kDim * s);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      if (!alive[j]) continue;
      cur[j] *= soft_nms_weight(method, Geo::overlap(a, Geo::load(boxes + Geo::kDim * j)), iou_thr, sigma);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = kept;
}

template <class Geo, typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    soft_nms_init_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, T* __restrict__ cur,
                         uint8_t* __restrict__ alive, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    cur[i] = scores[i];
    alive[i] = Geo::valid(boxes + Geo::kDim * i, scores[i]);
  }
}

// The whole op for a geometry template (AxisAligned or Rotated): p from prepare_soft_nms.
template <template <typename> class G>
std::tuple<at::Tensor, at::Tensor> soft_nms_on_cuda(const SoftNmsProblem& p) {
  const c10::cuda::CUDAGuard guard(p.boxes.device());  // after prepare_*'s device checks
  const auto opts = p.scores.options();
  at::Tensor keep = at::empty({p.n}, opts.dtype(at::kLong));
  at::Tensor ks = at::empty({p.n}, opts);
  at::Tensor count = at::zeros({1}, opts.dtype(at::kLong));
  if (p.n > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "soft_nms_cuda", [&] {
      at::Tensor cur = at::empty({p.n}, opts);
      at::Tensor alive = at::empty({p.n}, opts.dtype(at::kByte));
      soft_nms_init_kernel<G<scalar_t>, scalar_t><<<cuda::blocks_for(p.n), cuda::kThreads, 0, cuda::stream()>>>(
          p.boxes.data_ptr<scalar_t>(), p.scores.data_ptr<scalar_t>(), cur.data_ptr<scalar_t>(),
          alive.data_ptr<uint8_t>(), p.n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      soft_nms_kernel<G<scalar_t>, scalar_t><<<1, kSoftThreads, 0, cuda::stream()>>>(
          p.boxes.data_ptr<scalar_t>(), cur.data_ptr<scalar_t>(), alive.data_ptr<uint8_t>(), p.n,
          static_cast<scalar_t>(p.iou_threshold), static_cast<scalar_t>(p.sigma),
          static_cast<scalar_t>(p.score_threshold), p.method, keep.data_ptr<int64_t>(), ks.data_ptr<scalar_t>(),
          count.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  const int64_t k = count.item<int64_t>();  // the result's size: one synchronisation
  return {keep.narrow(0, 0, k), ks.narrow(0, 0, k).to(p.out_dtype)};
}

}  // namespace
}  // namespace detops
