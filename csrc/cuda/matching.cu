// CUDA kernels of prior matching (CPU twin: cpu/matching.cpp; reference: detops/reference/matching.py).
//
// match_priors runs three kernels on the current stream, none waiting on the host:
//   1. grid (prior blocks, images): each thread takes one prior, loops over the image's objects (staged in
//      shared memory) computing IoUs on the fly, keeps its best object (first on ties) and writes its overlap
//      into targets[b, p, 0]; per object, a warp then block argmax of (IoU, lowest prior) is written as one
//      partial per block.
//   2. one thread per image: for each object in order, the argmax over the block partials (lowest block on
//      ties) is its best prior, forced to it with overlap 1; a later object overwrites an earlier one.
//   3. elementwise: threshold, label, encode.
// Every reduction has a fixed order, so results are deterministic and equal the CPU kernel's.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "box_math.h"
#include "cuda/launch.cuh"
#include "ops/matching.h"

namespace detops {
namespace {

constexpr int kMatchThreads = 256;
constexpr int kWarps = kMatchThreads / 32;
constexpr int kForceThreads = 128;

// (value, index) argmax: the larger value, the lower index on ties.
template <typename T>
__device__ inline void argmax_combine(T& v, int& i, T ov, int oi) {
  if (ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

template <typename T>
__global__ void __launch_bounds__(kMatchThreads)
    match_pass1_kernel(const T* __restrict__ gt, const int64_t* __restrict__ counts, const T* __restrict__ priors_xy,
                       int64_t G, int64_t P, T* __restrict__ targets, int64_t* __restrict__ matched,
                       T* __restrict__ part_val, int* __restrict__ part_idx) {
  __shared__ Box<T> s_box[kMatchThreads];
  __shared__ T s_area[kMatchThreads];
  __shared__ T s_wval[kWarps][kMatchThreads];
  __shared__ int s_widx[kWarps][kMatchThreads];
  const int64_t b = blockIdx.y;
  const int64_t n_obj = min(max(counts[b], int64_t(0)), G);
  if (n_obj == 0) return;  // kernel 3 makes the image background
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kMatchThreads + tid;
  const bool active = p < P;
  Box<T> pb{T(0), T(0), T(0), T(0)};
  T pa = T(0);
  if (active) {
    pb = load_box(priors_xy + 4 * p);
    pa = area(pb);
  }
  const T neg_inf = -std::numeric_limits<T>::infinity();
  T best = neg_inf;
  int64_t best_g = 0;
  const T* gt_b = gt + 4 * b * G;
  const int64_t nblk = gridDim.x;
  for (int64_t base = 0; base < n_obj; base += kMatchThreads) {
    const int64_t rest = n_obj - base;
    const int tile = rest < kMatchThreads ? static_cast<int>(rest) : kMatchThreads;
    __syncthreads();
    if (tid < tile) {
      s_box[tid] = load_box(gt_b + 4 * (base + tid));
      s_area[tid] = area(s_box[tid]);
    }
    __syncthreads();
    for (int j = 0; j < tile; ++j) {
      T v = neg_inf;
      int idx = std::numeric_limits<int>::max();
      if (active) {
        v = iou(s_box[j], pb, s_area[j], pa);
        idx = static_cast<int>(p);
        if (v > best) {
          best = v;
          best_g = base + j;
        }
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) {
        const T ov = __shfl_down_sync(0xffffffffu, v, off);
        const int oi = __shfl_down_sync(0xffffffffu, idx, off);
        argmax_combine(v, idx, ov, oi);
      }
      if (lane == 0) {
        s_wval[warp][j] = v;
        s_widx[warp][j] = idx;
      }
    }
    __syncthreads();
    if (tid < tile) {
      T v = s_wval[0][tid];
      int idx = s_widx[0][tid];
      for (int w = 1; w < kWarps; ++w) argmax_combine(v, idx, s_wval[w][tid], s_widx[w][tid]);
      const int64_t o = (b * nblk + blockIdx.x) * G + base + tid;
      part_val[o] = v;
      part_idx[o] = idx;
    }
  }
  if (active) {
    targets[4 * (b * P + p)] = best;
    matched[b * P + p] = best_g;
  }
}

template <typename T>
__global__ void __launch_bounds__(kForceThreads)
    match_force_kernel(const int64_t* __restrict__ counts, int64_t B, int64_t G, int64_t P, int64_t nblk,
                       const T* __restrict__ part_val, const int* __restrict__ part_idx, T* __restrict__ targets,
                       int64_t* __restrict__ matched) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  const int64_t n_obj = min(max(counts[b], int64_t(0)), G);
  for (int64_t g = 0; g < n_obj; ++g) {
    T v = part_val[(b * nblk) * G + g];
    int idx = part_idx[(b * nblk) * G + g];
    for (int64_t k = 1; k < nblk; ++k) {
      const int64_t o = (b * nblk + k) * G + g;
      argmax_combine(v, idx, part_val[o], part_idx[o]);
    }
    matched[b * P + idx] = g;
    targets[4 * (b * P + idx)] = T(1);
  }
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    match_finish_kernel(const T* __restrict__ gt, const int64_t* __restrict__ gt_labels,
                        const int64_t* __restrict__ counts, const T* __restrict__ priors_cxcy, int64_t B, int64_t G,
                        int64_t P, T threshold, CodingWeights w, int64_t* __restrict__ labels,
                        int64_t* __restrict__ matched, T* __restrict__ targets) {
  const int64_t total = B * P;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / P, p = i - b * P;
    const int64_t n_obj = min(max(counts[b], int64_t(0)), G);
    T* t = targets + 4 * i;
    if (n_obj == 0 || t[0] < threshold) {
      labels[i] = 0;
      matched[i] = -1;
      t[0] = t[1] = t[2] = t[3] = T(0);
    } else {
      const int64_t g = matched[i];
      labels[i] = gt_labels[b * G + g];
      const T* pc = priors_cxcy + 4 * p;
      encode_box_center(load_box(gt + 4 * (b * G + g)), pc[0], pc[1], pc[2], pc[3], w, t);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> match_priors_cuda(const at::Tensor& gt_boxes,
                                                                 const at::Tensor& gt_labels, const at::Tensor& counts,
                                                                 const at::Tensor& priors_cxcy, double threshold,
                                                                 at::ArrayRef<double> weights) {
  MatchProblem p = prepare_match_priors(gt_boxes, gt_labels, counts, priors_cxcy, threshold, weights);
  const c10::cuda::CUDAGuard guard(p.boxes.device());  // after prepare_*'s device checks
  at::Tensor labels = at::empty({p.B, p.P}, p.labels.options());
  at::Tensor matched = at::empty({p.B, p.P}, p.labels.options());
  at::Tensor targets = at::empty({p.B, p.P, 4}, p.boxes.options());
  if (p.B == 0 || p.P == 0) return {labels, matched, targets.to(p.out_dtype)};
  const int64_t nblk = (p.P + kMatchThreads - 1) / kMatchThreads;
  TORCH_CHECK(p.B <= 65535, "match_priors on CUDA supports at most 65535 images per call, got ", p.B);
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "match_priors_cuda", [&] {
    const auto thr = static_cast<scalar_t>(p.threshold);
    if (p.G > 0) {
      at::Tensor part_val = at::empty({p.B, nblk, p.G}, p.boxes.options());
      at::Tensor part_idx = at::empty({p.B, nblk, p.G}, p.labels.options().dtype(at::kInt));
      match_pass1_kernel<scalar_t>
          <<<dim3(static_cast<unsigned>(nblk), static_cast<unsigned>(p.B)), kMatchThreads, 0, cuda::stream()>>>(
              p.boxes.data_ptr<scalar_t>(), p.counts.data_ptr<int64_t>(), p.priors_xy.data_ptr<scalar_t>(), p.G, p.P,
              targets.data_ptr<scalar_t>(), matched.data_ptr<int64_t>(), part_val.data_ptr<scalar_t>(),
              part_idx.data_ptr<int>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      match_force_kernel<scalar_t><<<cuda::blocks_for(p.B, kForceThreads), kForceThreads, 0, cuda::stream()>>>(
          p.counts.data_ptr<int64_t>(), p.B, p.G, p.P, nblk, part_val.data_ptr<scalar_t>(), part_idx.data_ptr<int>(),
          targets.data_ptr<scalar_t>(), matched.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    match_finish_kernel<scalar_t><<<cuda::blocks_for(p.B * p.P), cuda::kThreads, 0, cuda::stream()>>>(
        p.boxes.data_ptr<scalar_t>(), p.labels.data_ptr<int64_t>(), p.counts.data_ptr<int64_t>(),
        p.priors_cxcy.data_ptr<scalar_t>(), p.B, p.G, p.P, thr, p.weights, labels.data_ptr<int64_t>(),
        matched.data_ptr<int64_t>(), targets.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {labels, matched, targets.to(p.out_dtype)};
}

// ---- torchvision's Matcher rule ----

template <typename T>
__global__ void __launch_bounds__(kMatchThreads)
    row_max_kernel(const T* __restrict__ q, int64_t P, T* __restrict__ row_max) {
  __shared__ T s[kMatchThreads];
  const int64_t row = blockIdx.x;  // n * G + g
  const T* r = q + row * P;
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t p = threadIdx.x; p < P; p += kMatchThreads) m = nan_max(m, r[p]);
  s[threadIdx.x] = m;
  __syncthreads();
  for (int stride = kMatchThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) s[threadIdx.x] = nan_max(s[threadIdx.x], s[threadIdx.x + stride]);
    __syncthreads();
  }
  if (threadIdx.x == 0) row_max[row] = s[0];
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    matcher_kernel(const T* __restrict__ q, const T* __restrict__ row_max, int64_t N, int64_t G, int64_t P, T high,
                   T low, bool allow_low, int64_t* __restrict__ out) {
  const int64_t total = N * P;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t n = i / P, p = i - n * P;
    if (G == 0) {
      out[i] = -1;
      continue;
    }
    out[i] = matcher_decision(q + n * G * P, G, P, p, row_max + n * G, high, low, allow_low);
  }
}

at::Tensor match_boxes_cuda(const at::Tensor& quality, double high, double low, bool allow_low_quality) {
  MatcherProblem m = prepare_match_boxes(quality, high, low, allow_low_quality);
  const c10::cuda::CUDAGuard guard(m.quality.device());  // after prepare_*'s device checks
  at::Tensor matches = at::empty({m.N, m.P}, quality.options().dtype(at::kLong));
  if (m.N * m.P == 0) return matches.view(m.out_shape);
  AT_DISPATCH_FLOATING_TYPES(m.quality.scalar_type(), "match_boxes_cuda", [&] {
    at::Tensor row_max = at::empty({m.N, m.G}, m.quality.options());
    if (m.allow_low_quality && m.G > 0) {
      TORCH_CHECK(m.N * m.G <= std::numeric_limits<int32_t>::max(), "match_quality_matrix has too many rows");
      row_max_kernel<scalar_t><<<static_cast<unsigned>(m.N * m.G), kMatchThreads, 0, cuda::stream()>>>(
          m.quality.data_ptr<scalar_t>(), m.P, row_max.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    matcher_kernel<scalar_t><<<cuda::blocks_for(m.N * m.P), cuda::kThreads, 0, cuda::stream()>>>(
        m.quality.data_ptr<scalar_t>(), row_max.data_ptr<scalar_t>(), m.N, m.G, m.P, static_cast<scalar_t>(m.high),
        static_cast<scalar_t>(m.low), m.allow_low_quality && m.G > 0, matches.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return matches.view(m.out_shape);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("match_priors", &detops::match_priors_cuda);
  m.impl("match_boxes", &detops::match_boxes_cuda);
}
