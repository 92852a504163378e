// multiclass_nms on the GPU (CPU twin: cpu/multiclass_nms.h), written once over a box geometry
// (nms_geometry.h): multiclass_nms (cuda/nms.cu) and multiclass_nms_rotated (cuda/rotated.cu).
//
// One block per (image, class) runs the greedy loop directly on its score-sorted candidates (a warp resolves
// 32 candidates at a time with shuffles, then the whole block suppresses the rest), and a segmented sort
// picks each image's top K: every buffer has a fixed size, nothing is copied to the host, so the op can be
// captured in a CUDA graph.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>

#include <cstring>
#include <limits>
#include <tuple>

#include "cuda/launch.cuh"
#include "nms_geometry.h"
#include "ops/nms.h"

// Everything here has internal linkage: each .cu that includes it compiles its own instantiations.
namespace detops {
namespace {

template <typename T>
__device__ inline T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// A loaded box (a struct of T values) broadcast from lane src of the warp, one shuffle per value.
template <typename T, typename L>
__device__ inline L shfl_loaded(const L& v, int src) {
  static_assert(sizeof(L) % sizeof(T) == 0, "a loaded box is a whole number of values");
  constexpr int n = sizeof(L) / sizeof(T);
  T w[n];
  memcpy(w, &v, sizeof(L));
#pragma unroll
  for (int k = 0; k < n; ++k) w[k] = __shfl_sync(0xffffffffu, w[k], src);
  L out;
  memcpy(&out, w, sizeof(L));
  return out;
}

struct MulticlassDims {
  int64_t B, P, C, K, M;
  int64_t background;
  bool per_class_boxes;
};

template <class Geo, typename T>
__device__ inline const T* class_box(const T* boxes, const MulticlassDims& d, int64_t b, int64_t prior, int64_t c) {
  constexpr int D = Geo::kDim;
  return d.per_class_boxes ? boxes + ((b * d.P + prior) * d.C + c) * D : boxes + (b * d.P + prior) * D;
}

// key[b, c, p] = score if the candidate passes the threshold (and is valid, and c is not the background),
// else -inf; laid out class-major so one segmented sort orders every (image, class) row.
template <class Geo, typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    multiclass_keys_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, MulticlassDims d, T score_thr,
                           T* __restrict__ key) {
  const int64_t total = d.B * d.C * d.P;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t prior = e % d.P, c = (e / d.P) % d.C, b = e / (d.P * d.C);
    const T s = scores[(b * d.P + prior) * d.C + c];
    const bool ok = c != d.background && s > score_thr && Geo::valid(class_box<Geo>(boxes, d, b, prior, c), s);
    key[e] = ok ? s : neg_inf<T>();
  }
}

constexpr int kRowThreads = 256;
constexpr int kMaxChunkKept = 32;

// One block per (image, class) row: greedy NMS over the row's first M sorted candidates, at most K kept.
// kept_pos[row, k] = rank position of the k-th kept candidate; kept_n[row] = how many.
template <class Geo, typename T>
__global__ void __launch_bounds__(kRowThreads)
    multiclass_rows_kernel(const T* __restrict__ boxes, const T* __restrict__ sorted_key,
                           const int64_t* __restrict__ sorted_prior, MulticlassDims d, T iou_thr,
                           uint8_t* __restrict__ removed_all, int32_t* __restrict__ kept_pos,
                           int32_t* __restrict__ kept_n) {
  using Loaded = typename Geo::Loaded;
  const int64_t row = blockIdx.x;
  const int64_t b = row / d.C, c = row % d.C;
  const T* key = sorted_key + row * d.P;
  const int64_t* prior = sorted_prior + row * d.P;
  uint8_t* removed = removed_all + row * d.M;
  __shared__ int64_t n_valid_s;
  __shared__ Loaded kb[kMaxChunkKept];
  __shared__ int chunk_kept_s, total_kept_s;
  if (threadIdx.x == 0) n_valid_s = 0, total_kept_s = 0;
  __syncthreads();
  // Valid candidates are a prefix of the sorted row: count them.
  for (int64_t j = threadIdx.x; j < d.M; j += blockDim.x) {
    removed[j] = 0;
    if (key[j] > neg_inf<T>() && (j + 1 == d.M || !(key[j + 1] > neg_inf<T>()))) n_valid_s = j + 1;
  }
  __syncthreads();
  const int64_t n = n_valid_s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t c0 = 0; c0 < n; c0 += 32) {
    if (warp == 0) {
      const int64_t i = c0 + lane;
      bool alive = i < n && !removed[i];
      Loaded bx{};
      if (i < n) bx = Geo::load(class_box<Geo>(boxes, d, b, prior[i], c));
      int total = total_kept_s, ck = 0;
      for (int u = 0; u < 32 && total < d.K; ++u) {
        const bool alive_u = __shfl_sync(0xffffffffu, alive, u);
        if (!alive_u) continue;
        const Loaded bu = shfl_loaded<T>(bx, u);
        if (lane == 0) {
          kept_pos[row * d.K + total] = static_cast<int32_t>(c0 + u);
          kb[ck] = bu;
        }
        ++total, ++ck;
        if (lane > u && alive && Geo::overlap(bu, bx) > iou_thr) alive = false;
      }
      if (lane == 0) chunk_kept_s = ck, total_kept_s = total;
    }
    __syncthreads();
    const int ck = chunk_kept_s;
    if (total_kept_s >= d.K) break;
    if (ck > 0) {
      for (int64_t j = c0 + 32 + threadIdx.x; j < n; j += blockDim.x) {
        if (removed[j]) continue;
        const Loaded bj = Geo::load(class_box<Geo>(boxes, d, b, prior[j], c));
        for (int q = 0; q < ck; ++q) {
          if (Geo::overlap(kb[q], bj) > iou_thr) {
            removed[j] = 1;
            break;
          }
        }
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) kept_n[row] = total_kept_s;
}

// sel[b, c * K + k] = score of the k-th kept candidate of (b, c), -inf past kept_n.
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    multiclass_select_keys_kernel(const T* __restrict__ sorted_key, const int32_t* __restrict__ kept_pos,
                                  const int32_t* __restrict__ kept_n, MulticlassDims d, T* __restrict__ sel) {
  const int64_t total = d.B * d.C * d.K;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = e / d.K, k = e % d.K;
    sel[e] = k < kept_n[row] ? sorted_key[row * d.P + kept_pos[e]] : neg_inf<T>();
  }
}

// out[b, k] from the k-th entry of image b's sorted selection; padding past the valid ones; counts[b].
template <class Geo, typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    multiclass_write_kernel(const T* __restrict__ boxes, const T* __restrict__ sel_sorted,
                            const int64_t* __restrict__ sel_order, const int32_t* __restrict__ kept_pos,
                            const int64_t* __restrict__ sorted_prior, MulticlassDims d, int64_t sel_len,
                            T* __restrict__ out_boxes, T* __restrict__ out_scores, int64_t* __restrict__ out_labels,
                            int64_t* __restrict__ out_counts) {
  const int64_t total = d.B * d.K;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / d.K, k = e % d.K;
    constexpr int D = Geo::kDim;
    T* ob = out_boxes + D * e;
    const bool ok = k < sel_len && sel_sorted[b * sel_len + k] > neg_inf<T>();
    if (ok) {
      const int64_t flat = sel_order[b * sel_len + k];
      const int64_t c = flat / d.K;
      const int64_t row = b * d.C + c;
      const int64_t prior = sorted_prior[row * d.P + kept_pos[row * d.K + flat % d.K]];
      const T* src = class_box<Geo>(boxes, d, b, prior, c);
      for (int k2 = 0; k2 < D; ++k2) ob[k2] = src[k2];
      out_scores[e] = sel_sorted[b * sel_len + k];
      out_labels[e] = c;
    } else {
      for (int k2 = 0; k2 < D; ++k2) ob[k2] = T(0);
      out_scores[e] = T(0);
      out_labels[e] = -1;
    }
    // The valid entries are a prefix: the last valid one (or k = 0 with none) writes the count.
    const bool next_ok = k + 1 < d.K && k + 1 < sel_len && sel_sorted[b * sel_len + k + 1] > neg_inf<T>();
    if (ok && !next_ok) out_counts[b] = k + 1;
    if (k == 0 && !ok) out_counts[b] = 0;
  }
}

template <class Geo, typename T>
void multiclass_nms_impl(MulticlassProblem& p) {
  MulticlassDims d{p.batch,          p.priors,           p.classes,        p.max_detections,
                   p.max_candidates, p.background_class, p.per_class_boxes};
  const auto opts = p.scores.options();
  const T* boxes = p.boxes.data_ptr<T>();
  if (d.B == 0) return;
  if (d.K == 0 || d.C == 0 || d.P == 0 || d.M == 0) {
    p.out_boxes.zero_();
    p.out_scores.zero_();
    p.out_labels.fill_(-1);
    p.out_counts.zero_();
    return;
  }
  at::Tensor key = at::empty({d.B, d.C, d.P}, opts);
  multiclass_keys_kernel<Geo, T><<<cuda::blocks_for(key.numel()), cuda::kThreads, 0, cuda::stream()>>>(
      boxes, p.scores.data_ptr<T>(), d, threshold_as<T>(p.score_threshold), key.data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Each (image, class) row in rank order: decreasing score, ties by lower prior index.
  auto sorted = at::sort(key, /*stable=*/true, /*dim=*/-1, /*descending=*/true);
  at::Tensor skey = std::get<0>(sorted).contiguous();
  at::Tensor sprior = std::get<1>(sorted).contiguous();
  const int64_t rows = d.B * d.C;
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "multiclass_nms: too many (image, class) pairs");
  at::Tensor removed = at::empty({rows, d.M}, opts.dtype(at::kByte));
  at::Tensor kept_pos = at::empty({rows, d.K}, opts.dtype(at::kInt));
  at::Tensor kept_n = at::empty({rows}, opts.dtype(at::kInt));
  multiclass_rows_kernel<Geo, T><<<static_cast<unsigned int>(rows), kRowThreads, 0, cuda::stream()>>>(
      boxes, skey.data_ptr<T>(), sprior.data_ptr<int64_t>(), d, threshold_as<T>(p.iou_threshold),
      removed.data_ptr<uint8_t>(), kept_pos.data_ptr<int32_t>(), kept_n.data_ptr<int32_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t sel_len = d.C * d.K;
  at::Tensor sel = at::empty({d.B, sel_len}, opts);
  multiclass_select_keys_kernel<T><<<cuda::blocks_for(sel.numel()), cuda::kThreads, 0, cuda::stream()>>>(
      skey.data_ptr<T>(), kept_pos.data_ptr<int32_t>(), kept_n.data_ptr<int32_t>(), d, sel.data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Image rank: decreasing score; ties by the flat position c * K + k: lower class, then lower prior index.
  auto sel_sorted = at::sort(sel, /*stable=*/true, /*dim=*/-1, /*descending=*/true);
  at::Tensor ssel = std::get<0>(sel_sorted).contiguous();
  at::Tensor sorder = std::get<1>(sel_sorted).contiguous();
  multiclass_write_kernel<Geo, T><<<cuda::blocks_for(d.B * d.K), cuda::kThreads, 0, cuda::stream()>>>(
      boxes, ssel.data_ptr<T>(), sorder.data_ptr<int64_t>(), kept_pos.data_ptr<int32_t>(), sprior.data_ptr<int64_t>(),
      d, sel_len, p.out_boxes.data_ptr<T>(), p.out_scores.data_ptr<T>(), p.out_labels.data_ptr<int64_t>(),
      p.out_counts.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The whole op for a geometry template (AxisAligned or Rotated): p from prepare_multiclass.
template <template <typename> class G>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_on_cuda(MulticlassProblem p) {
  const c10::cuda::CUDAGuard guard(p.scores.device());  // after prepare_multiclass's device checks
  AT_DISPATCH_FLOATING_TYPES(p.scores.scalar_type(), "multiclass_nms_cuda",
                             [&] { multiclass_nms_impl<G<scalar_t>, scalar_t>(p); });
  return finish_multiclass(p);
}

}  // namespace
}  // namespace detops
