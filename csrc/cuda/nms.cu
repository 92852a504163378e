// CUDA kernels of the NMS family (CPU twin: cpu/nms.cpp; reference: detops/reference/nms.py).
//
// nms / batched_nms: boxes sorted on the GPU, a bit mask of "row box suppresses column box" built in 64x64
// tiles (one bit per pair, as in the classic GPU NMS), then one single-block kernel walks the mask in rank
// order and writes the keep flags: no per-box host round trip; the only host synchronisation is the final
// size of the index tensor.
// multiclass_nms: one block per (image, class) runs the greedy loop directly on its score-sorted candidates
// (a warp resolves 32 candidates at a time with shuffles, then the whole block suppresses the rest), and a
// segmented sort picks each image's top K: every buffer has a fixed size, nothing is copied to the host, so
// the op can be captured in a CUDA graph.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/masked_select.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>

#include "box_math.h"
#include "cuda/launch.cuh"
#include "ops/nms.h"

namespace detops {
namespace {

constexpr int kBlockBits = 64;
constexpr int kScanThreads = 256;

template <typename T>
__device__ inline T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// key[i] = score for boxes that take part, -inf for those that do not (NaN score or coordinate); valid[i].
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads) nms_keys_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, T* __restrict__ key,
                                uint8_t* __restrict__ valid, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool v = nms_valid(boxes + 4 * i, scores[i]);
    key[i] = v ? scores[i] : neg_inf<T>();
    valid[i] = v;
  }
}

// Boxes, validity and (optionally) categories gathered into rank order.
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads) gather_sorted_kernel(const T* __restrict__ boxes, const uint8_t* __restrict__ valid,
                                     const int64_t* __restrict__ idxs, const int64_t* __restrict__ order,
                                     T* __restrict__ sboxes, uint8_t* __restrict__ svalid, int64_t* __restrict__ scls,
                                     int64_t n) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = order[k];
    for (int d = 0; d < 4; ++d) sboxes[4 * k + d] = boxes[4 * i + d];
    svalid[k] = valid[i];
    if (idxs != nullptr) scls[k] = idxs[i];
  }
}

// mask[i][w] bit t: box i (rank order) suppresses box j = 64 w + t, j > i (same category when cls is given).
// Tiles left of the diagonal are never read and not launched; tiles with no common category are zeroed.
template <typename T>
__global__ void __launch_bounds__(kBlockBits) nms_mask_kernel(const T* __restrict__ sboxes, const uint8_t* __restrict__ svalid,
                                const int64_t* __restrict__ scls, int64_t n, int64_t col_blocks, T thr,
                                uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block) return;
  const int64_t row0 = row_block * kBlockBits, col0 = col_block * kBlockBits;
  const int64_t rows = min(static_cast<int64_t>(kBlockBits), n - row0);
  const int64_t cols = min(static_cast<int64_t>(kBlockBits), n - col0);
  __shared__ T cb[kBlockBits * 4];
  __shared__ T ca[kBlockBits];
  __shared__ int64_t cc[kBlockBits];
  if (threadIdx.x < cols) {
    const Box<T> b = load_box(sboxes + 4 * (col0 + threadIdx.x));
    cb[4 * threadIdx.x + 0] = b.x1, cb[4 * threadIdx.x + 1] = b.y1;
    cb[4 * threadIdx.x + 2] = b.x2, cb[4 * threadIdx.x + 3] = b.y2;
    ca[threadIdx.x] = area(b);
    cc[threadIdx.x] = scls != nullptr ? scls[col0 + threadIdx.x] : 0;
  }
  __syncthreads();
  if (threadIdx.x >= rows) return;
  const int64_t i = row0 + threadIdx.x;
  uint64_t bits = 0;
  if (svalid[i]) {
    const Box<T> a = load_box(sboxes + 4 * i);
    const T aa = area(a);
    const int64_t ci = scls != nullptr ? scls[i] : 0;
    // Categories are sorted: a row whose category is below the tile's first column one matches nothing.
    if (ci >= cc[0]) {
      const int start = col_block == row_block ? static_cast<int>(threadIdx.x) + 1 : 0;
      for (int t = start; t < cols; ++t) {
        const Box<T> b{cb[4 * t], cb[4 * t + 1], cb[4 * t + 2], cb[4 * t + 3]};
        if (cc[t] == ci && iou(a, b, aa, ca[t]) > thr) bits |= 1ULL << t;
      }
    }
  }
  mask[i * col_blocks + col_block] = bits;
}

// One block walks the mask in rank order: within a 64-box word one thread resolves the chain (the rows' own
// words are staged in shared memory first), then every thread ORs the kept rows into the words it owns.
__global__ void __launch_bounds__(kScanThreads) nms_scan_kernel(const uint64_t* __restrict__ mask, const uint8_t* __restrict__ svalid, int64_t n,
                                int64_t col_blocks, uint64_t* __restrict__ removed, uint8_t* __restrict__ keep) {
  __shared__ uint64_t diag[kBlockBits];
  __shared__ uint64_t kept_bits;
  for (int64_t w = 0; w < col_blocks; ++w) {
    const int64_t row0 = w * kBlockBits;
    const int rows = static_cast<int>(min(static_cast<int64_t>(kBlockBits), n - row0));
    if (threadIdx.x < rows) diag[threadIdx.x] = mask[(row0 + threadIdx.x) * col_blocks + w];
    __syncthreads();
    if (threadIdx.x == 0) {
      uint64_t r = removed[w], kb = 0;
      for (int t = 0; t < rows; ++t) {
        if (((r >> t) & 1ULL) || !svalid[row0 + t]) continue;
        kb |= 1ULL << t;
        r |= diag[t];
      }
      kept_bits = kb;
    }
    __syncthreads();
    const uint64_t kb = kept_bits;
    if (threadIdx.x < rows) keep[row0 + threadIdx.x] = static_cast<uint8_t>((kb >> threadIdx.x) & 1ULL);
    for (int64_t w2 = w + 1 + threadIdx.x; w2 < col_blocks; w2 += blockDim.x) {
      uint64_t acc = removed[w2];
      for (uint64_t m = kb; m != 0; m &= m - 1)
        acc |= mask[(row0 + __ffsll(static_cast<long long>(m)) - 1) * col_blocks + w2];
      removed[w2] = acc;
    }
    __syncthreads();
  }
}

// Keep flags of boxes in rank order (sboxes, svalid, scls already gathered).
template <typename T>
at::Tensor nms_keep_flags(const at::Tensor& sboxes, const at::Tensor& svalid, const int64_t* scls, int64_t n,
                          double iou_threshold) {
  const int64_t col_blocks = (n + kBlockBits - 1) / kBlockBits;
  TORCH_CHECK(col_blocks <= 65535, "nms on CUDA supports at most ", 65535 * kBlockBits, " boxes, got ", n);
  at::Tensor mask = at::empty({n, col_blocks}, sboxes.options().dtype(at::kLong));
  const dim3 grid(static_cast<unsigned int>(col_blocks), static_cast<unsigned int>(col_blocks));
  nms_mask_kernel<T><<<grid, kBlockBits, 0, cuda::stream()>>>(
      sboxes.data_ptr<T>(), svalid.data_ptr<uint8_t>(), scls, n, col_blocks, threshold_as<T>(iou_threshold),
      reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor removed = at::zeros({col_blocks}, sboxes.options().dtype(at::kLong));
  at::Tensor keep = at::empty({n}, sboxes.options().dtype(at::kBool));
  nms_scan_kernel<<<1, kScanThreads, 0, cuda::stream()>>>(reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()),
                                                 svalid.data_ptr<uint8_t>(), n, col_blocks,
                                                 reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()),
                                                 reinterpret_cast<uint8_t*>(keep.data_ptr<bool>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

template <typename T>
at::Tensor nms_impl(const NmsProblem& p, bool batched) {
  const int64_t n = p.n;
  const auto opts = p.boxes.options();
  at::Tensor key = at::empty({n}, opts);
  at::Tensor valid = at::empty({n}, opts.dtype(at::kByte));
  const auto blocks = cuda::blocks_for(n);
  nms_keys_kernel<T><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(p.boxes.data_ptr<T>(), p.scores.data_ptr<T>(),
                                                                    key.data_ptr<T>(), valid.data_ptr<uint8_t>(), n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Rank order: decreasing score, ties by lower index (stable sort); batched: then category, stably.
  at::Tensor order = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  if (batched) {
    at::Tensor cls = p.idxs.index_select(0, order);
    at::Tensor perm = std::get<1>(at::sort(cls, /*stable=*/true, /*dim=*/0, /*descending=*/false));
    order = order.index_select(0, perm);
  }
  at::Tensor sboxes = at::empty({n, 4}, opts);
  at::Tensor svalid = at::empty({n}, opts.dtype(at::kByte));
  at::Tensor scls = batched ? at::empty({n}, opts.dtype(at::kLong)) : at::Tensor();
  gather_sorted_kernel<T><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(
      p.boxes.data_ptr<T>(), valid.data_ptr<uint8_t>(), batched ? p.idxs.data_ptr<int64_t>() : nullptr,
      order.data_ptr<int64_t>(), sboxes.data_ptr<T>(), svalid.data_ptr<uint8_t>(),
      batched ? scls.data_ptr<int64_t>() : nullptr, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor keep = nms_keep_flags<T>(sboxes, svalid, batched ? scls.data_ptr<int64_t>() : nullptr, n,
                                      p.iou_threshold);
  at::Tensor kept = at::masked_select(order, keep);  // the one host synchronisation: the result's size
  if (batched) {
    // Back to rank order over all categories: by index, then stably by decreasing score.
    kept = std::get<0>(at::sort(kept, /*stable=*/true, /*dim=*/0, /*descending=*/false));
    at::Tensor s = p.scores.index_select(0, kept);
    at::Tensor perm = std::get<1>(at::sort(s, /*stable=*/true, /*dim=*/0, /*descending=*/true));
    kept = kept.index_select(0, perm);
  }
  return kept;
}

at::Tensor nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  NmsProblem p = prepare_nms(boxes, scores, iou_threshold);
  const c10::cuda::CUDAGuard guard(p.boxes.device());  // after prepare_*'s device checks
  if (p.n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_cuda", [&] { out = nms_impl<scalar_t>(p, false); });
  return out;
}

at::Tensor batched_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                            double iou_threshold) {
  NmsProblem p = prepare_batched_nms(boxes, scores, idxs, iou_threshold);
  const c10::cuda::CUDAGuard guard(p.boxes.device());  // after prepare_*'s device checks
  if (p.n == 0) return at::empty({0}, boxes.options().dtype(at::kLong));
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "batched_nms_cuda", [&] { out = nms_impl<scalar_t>(p, true); });
  return out;
}

// ---- multiclass_nms ----

struct MulticlassDims {
  int64_t B, P, C, K, M;
  int64_t background;
  bool per_class_boxes;
};

template <typename T>
__device__ inline const T* class_box(const T* boxes, const MulticlassDims& d, int64_t b, int64_t prior, int64_t c) {
  return d.per_class_boxes ? boxes + ((b * d.P + prior) * d.C + c) * 4 : boxes + (b * d.P + prior) * 4;
}

// key[b, c, p] = score if the candidate passes the threshold (and is valid, and c is not the background),
// else -inf; laid out class-major so one segmented sort orders every (image, class) row.
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads) multiclass_keys_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, MulticlassDims d,
                                       T score_thr, T* __restrict__ key) {
  const int64_t total = d.B * d.C * d.P;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t prior = e % d.P, c = (e / d.P) % d.C, b = e / (d.P * d.C);
    const T s = scores[(b * d.P + prior) * d.C + c];
    const bool ok = c != d.background && s > score_thr && nms_valid(class_box(boxes, d, b, prior, c), s);
    key[e] = ok ? s : neg_inf<T>();
  }
}

constexpr int kRowThreads = 256;
constexpr int kMaxChunkKept = 32;

// One block per (image, class) row: greedy NMS over the row's first M sorted candidates, at most K kept.
// kept_pos[row, k] = rank position of the k-th kept candidate; kept_n[row] = how many.
template <typename T>
__global__ void __launch_bounds__(kRowThreads) multiclass_rows_kernel(const T* __restrict__ boxes, const T* __restrict__ sorted_key,
                                       const int64_t* __restrict__ sorted_prior, MulticlassDims d, T iou_thr,
                                       uint8_t* __restrict__ removed_all, int32_t* __restrict__ kept_pos,
                                       int32_t* __restrict__ kept_n) {
  const int64_t row = blockIdx.x;
  const int64_t b = row / d.C, c = row % d.C;
  const T* key = sorted_key + row * d.P;
  const int64_t* prior = sorted_prior + row * d.P;
  uint8_t* removed = removed_all + row * d.M;
  __shared__ int64_t n_valid_s;
  __shared__ T kb[kMaxChunkKept * 4];
  __shared__ T ka[kMaxChunkKept];
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
      Box<T> bx{T(0), T(0), T(0), T(0)};
      if (i < n) bx = load_box(class_box(boxes, d, b, prior[i], c));
      const T ar = area(bx);
      int total = total_kept_s, ck = 0;
      for (int u = 0; u < 32 && total < d.K; ++u) {
        const bool alive_u = __shfl_sync(0xffffffffu, alive, u);
        if (!alive_u) continue;
        const Box<T> bu{__shfl_sync(0xffffffffu, bx.x1, u), __shfl_sync(0xffffffffu, bx.y1, u),
                        __shfl_sync(0xffffffffu, bx.x2, u), __shfl_sync(0xffffffffu, bx.y2, u)};
        const T au = __shfl_sync(0xffffffffu, ar, u);
        if (lane == 0) {
          kept_pos[row * d.K + total] = static_cast<int32_t>(c0 + u);
          kb[4 * ck] = bu.x1, kb[4 * ck + 1] = bu.y1, kb[4 * ck + 2] = bu.x2, kb[4 * ck + 3] = bu.y2;
          ka[ck] = au;
        }
        ++total, ++ck;
        if (lane > u && alive && iou(bu, bx, au, ar) > iou_thr) alive = false;
      }
      if (lane == 0) chunk_kept_s = ck, total_kept_s = total;
    }
    __syncthreads();
    const int ck = chunk_kept_s;
    if (total_kept_s >= d.K) break;
    if (ck > 0) {
      for (int64_t j = c0 + 32 + threadIdx.x; j < n; j += blockDim.x) {
        if (removed[j]) continue;
        const Box<T> bj = load_box(class_box(boxes, d, b, prior[j], c));
        const T aj = area(bj);
        for (int q = 0; q < ck; ++q) {
          const Box<T> bq{kb[4 * q], kb[4 * q + 1], kb[4 * q + 2], kb[4 * q + 3]};
          if (iou(bq, bj, ka[q], aj) > iou_thr) {
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
__global__ void __launch_bounds__(cuda::kThreads) multiclass_select_keys_kernel(const T* __restrict__ sorted_key, const int32_t* __restrict__ kept_pos,
                                              const int32_t* __restrict__ kept_n, MulticlassDims d,
                                              T* __restrict__ sel) {
  const int64_t total = d.B * d.C * d.K;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = e / d.K, k = e % d.K;
    sel[e] = k < kept_n[row] ? sorted_key[row * d.P + kept_pos[e]] : neg_inf<T>();
  }
}

// out[b, k] from the k-th entry of image b's sorted selection; padding past the valid ones; counts[b].
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads) multiclass_write_kernel(const T* __restrict__ boxes, const T* __restrict__ sel_sorted,
                                        const int64_t* __restrict__ sel_order, const int32_t* __restrict__ kept_pos,
                                        const int64_t* __restrict__ sorted_prior, MulticlassDims d, int64_t sel_len,
                                        T* __restrict__ out_boxes, T* __restrict__ out_scores,
                                        int64_t* __restrict__ out_labels, int64_t* __restrict__ out_counts) {
  const int64_t total = d.B * d.K;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = e / d.K, k = e % d.K;
    T* ob = out_boxes + 4 * e;
    const bool ok = k < sel_len && sel_sorted[b * sel_len + k] > neg_inf<T>();
    if (ok) {
      const int64_t flat = sel_order[b * sel_len + k];
      const int64_t c = flat / d.K;
      const int64_t row = b * d.C + c;
      const int64_t prior = sorted_prior[row * d.P + kept_pos[row * d.K + flat % d.K]];
      const T* src = class_box(boxes, d, b, prior, c);
      ob[0] = src[0], ob[1] = src[1], ob[2] = src[2], ob[3] = src[3];
      out_scores[e] = sel_sorted[b * sel_len + k];
      out_labels[e] = c;
    } else {
      ob[0] = ob[1] = ob[2] = ob[3] = T(0);
      out_scores[e] = T(0);
      out_labels[e] = -1;
    }
    // The valid entries are a prefix: the last valid one (or k = 0 with none) writes the count.
    const bool next_ok = k + 1 < d.K && k + 1 < sel_len && sel_sorted[b * sel_len + k + 1] > neg_inf<T>();
    if (ok && !next_ok) out_counts[b] = k + 1;
    if (k == 0 && !ok) out_counts[b] = 0;
  }
}

template <typename T>
void multiclass_impl(MulticlassProblem& p) {
  MulticlassDims d{p.batch, p.priors, p.classes, p.max_detections, p.max_candidates, p.background_class,
                   p.per_class_boxes};
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
  multiclass_keys_kernel<T><<<cuda::blocks_for(key.numel()), cuda::kThreads, 0, cuda::stream()>>>(
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
  multiclass_rows_kernel<T><<<static_cast<unsigned int>(rows), kRowThreads, 0, cuda::stream()>>>(
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
  multiclass_write_kernel<T><<<cuda::blocks_for(d.B * d.K), cuda::kThreads, 0, cuda::stream()>>>(
      boxes, ssel.data_ptr<T>(), sorder.data_ptr<int64_t>(), kept_pos.data_ptr<int32_t>(),
      sprior.data_ptr<int64_t>(), d, sel_len, p.out_boxes.data_ptr<T>(), p.out_scores.data_ptr<T>(),
      p.out_labels.data_ptr<int64_t>(), p.out_counts.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cuda(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  MulticlassProblem p = prepare_multiclass(boxes, scores, score_threshold, iou_threshold, max_detections,
                                           background_class, max_candidates_per_class);
  const c10::cuda::CUDAGuard guard(p.scores.device());  // after prepare_*'s device checks
  AT_DISPATCH_FLOATING_TYPES(p.scores.scalar_type(), "multiclass_nms_cuda", [&] { multiclass_impl<scalar_t>(p); });
  return finish_multiclass(p);
}

// ---- soft_nms: one block; each step a block-wide argmax (ties: lower index), then a decay sweep ----

constexpr int kSoftThreads = 1024;

template <typename T>
__global__ void __launch_bounds__(kSoftThreads) soft_nms_kernel(const T* __restrict__ boxes, T* __restrict__ cur, uint8_t* __restrict__ alive,
                                int64_t n, T iou_thr, T sigma, T min_score, SoftNmsMethod method,
                                int64_t* __restrict__ keep, T* __restrict__ kept_scores, int64_t* __restrict__ count) {
  __shared__ T best_v[kSoftThreads / 32];
  __shared__ int64_t best_i[kSoftThreads / 32];
  __shared__ int64_t sel_s;
  int64_t kept = 0;
  for (int64_t step = 0; step < n; ++step) {
    T v = neg_inf<T>();
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
      T bv = neg_inf<T>();
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
    const Box<T> a = load_box(boxes + 4 * s);
    const T aa = area(a);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      if (!alive[j]) continue;
      const Box<T> bj = load_box(boxes + 4 * j);
      cur[j] *= soft_nms_weight(method, iou(a, bj, aa, area(bj)), iou_thr, sigma);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = kept;
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads) soft_nms_init_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, T* __restrict__ cur,
                                     uint8_t* __restrict__ alive, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    cur[i] = scores[i];
    alive[i] = nms_valid(boxes + 4 * i, scores[i]);
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                 double iou_threshold, double sigma, double score_threshold,
                                                 c10::string_view method) {
  SoftNmsProblem p = prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method);
  const c10::cuda::CUDAGuard guard(p.boxes.device());  // after prepare_*'s device checks
  const auto opts = p.scores.options();
  at::Tensor keep = at::empty({p.n}, opts.dtype(at::kLong));
  at::Tensor ks = at::empty({p.n}, opts);
  at::Tensor count = at::zeros({1}, opts.dtype(at::kLong));
  if (p.n > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "soft_nms_cuda", [&] {
      at::Tensor cur = at::empty({p.n}, opts);
      at::Tensor alive = at::empty({p.n}, opts.dtype(at::kByte));
      soft_nms_init_kernel<scalar_t><<<cuda::blocks_for(p.n), cuda::kThreads, 0, cuda::stream()>>>(
          p.boxes.data_ptr<scalar_t>(), p.scores.data_ptr<scalar_t>(), cur.data_ptr<scalar_t>(),
          alive.data_ptr<uint8_t>(), p.n);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      soft_nms_kernel<scalar_t><<<1, kSoftThreads, 0, cuda::stream()>>>(
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

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("nms", &detops::nms_cuda);
  m.impl("batched_nms", &detops::batched_nms_cuda);
  m.impl("multiclass_nms", &detops::multiclass_nms_cuda);
  m.impl("soft_nms", &detops::soft_nms_cuda);
}
