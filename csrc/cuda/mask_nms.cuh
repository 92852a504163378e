// The bit-mask NMS of nms / batched_nms (cuda/nms.cu) and nms_rotated / batched_nms_rotated
// (cuda/rotated.cu), written once over a box geometry (nms_geometry.h).
//
// Boxes are sorted on the GPU (by category, then rank, when there are categories), a bit mask of "row box
// suppresses column box" is built in 64 x 64 tiles (one bit per pair, as in the classic GPU NMS), then one
// single-block kernel walks the mask in rank order and writes the keep flags: no per-box host round trip;
// the only host synchronisation is the final size of the index tensor.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/masked_select.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>

#include <limits>

#include "cuda/launch.cuh"
#include "nms_geometry.h"
#include "ops/nms.h"

// Everything here has internal linkage: each .cu that includes it compiles its own instantiations.
namespace detops {
namespace {

constexpr int kBlockBits = 64;
constexpr int kScanThreads = 256;

// key[i] = score for boxes that take part, -inf for those that do not (Geo::valid); valid[i].
template <class Geo, typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    nms_keys_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, T* __restrict__ key,
                    uint8_t* __restrict__ valid, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool v = Geo::valid(boxes + Geo::kDim * i, scores[i]);
    key[i] = v ? scores[i] : -std::numeric_limits<T>::infinity();
    valid[i] = v;
  }
}

// Boxes, validity and (optionally) categories gathered into rank order.
template <class Geo, typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    gather_sorted_kernel(const T* __restrict__ boxes, const uint8_t* __restrict__ valid,
                         const int64_t* __restrict__ idxs, const int64_t* __restrict__ order, T* __restrict__ sboxes,
                         uint8_t* __restrict__ svalid, int64_t* __restrict__ scls, int64_t n) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = order[k];
    for (int d = 0; d < Geo::kDim; ++d) sboxes[Geo::kDim * k + d] = boxes[Geo::kDim * i + d];
    svalid[k] = valid[i];
    if (idxs != nullptr) scls[k] = idxs[i];
  }
}

// mask[i][w] bit t: box i (rank order) suppresses box j = 64 w + t, j > i (same category when cls is given).
// Tiles left of the diagonal are never read and not computed; tiles with no common category are zeroed.
template <class Geo, typename T>
__global__ void __launch_bounds__(kBlockBits)
    nms_mask_kernel(const T* __restrict__ sboxes, const uint8_t* __restrict__ svalid, const int64_t* __restrict__ scls,
                    int64_t n, int64_t col_blocks, T thr, uint64_t* __restrict__ mask) {
  using Loaded = typename Geo::Loaded;
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block) return;
  const int64_t row0 = row_block * kBlockBits, col0 = col_block * kBlockBits;
  const int64_t rows = min(static_cast<int64_t>(kBlockBits), n - row0);
  const int64_t cols = min(static_cast<int64_t>(kBlockBits), n - col0);
  __shared__ Loaded cb[kBlockBits];
  __shared__ int64_t cc[kBlockBits];
  if (threadIdx.x < cols) {
    cb[threadIdx.x] = Geo::load(sboxes + Geo::kDim * (col0 + threadIdx.x));
    cc[threadIdx.x] = scls != nullptr ? scls[col0 + threadIdx.x] : 0;
  }
  __syncthreads();
  if (threadIdx.x >= rows) return;
  const int64_t i = row0 + threadIdx.x;
  uint64_t bits = 0;
  if (svalid[i]) {
    const Loaded a = Geo::load(sboxes + Geo::kDim * i);
    const int64_t ci = scls != nullptr ? scls[i] : 0;
    // Categories are sorted: a row whose category is below the tile's first column one matches nothing.
    if (ci >= cc[0]) {
      const int start = col_block == row_block ? static_cast<int>(threadIdx.x) + 1 : 0;
      for (int t = start; t < cols; ++t)
        if (cc[t] == ci && Geo::overlap(a, cb[t]) > thr) bits |= 1ULL << t;
    }
  }
  mask[i * col_blocks + col_block] = bits;
}

// One block walks the mask in rank order: within a 64-box word one thread resolves the chain (the rows' own
// words are staged in shared memory first), then every thread ORs the kept rows into the words it owns.
__global__ void __launch_bounds__(kScanThreads)
    nms_scan_kernel(const uint64_t* __restrict__ mask, const uint8_t* __restrict__ svalid, int64_t n,
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
template <class Geo, typename T>
at::Tensor keep_flags(const at::Tensor& sboxes, const at::Tensor& svalid, const int64_t* scls, int64_t n,
                      double iou_threshold, const char* op) {
  const int64_t col_blocks = (n + kBlockBits - 1) / kBlockBits;
  TORCH_CHECK(col_blocks <= 65535, op, " on CUDA supports at most ", 65535 * kBlockBits, " boxes, got ", n);
  at::Tensor mask = at::empty({n, col_blocks}, sboxes.options().dtype(at::kLong));
  const dim3 grid(static_cast<unsigned int>(col_blocks), static_cast<unsigned int>(col_blocks));
  nms_mask_kernel<Geo, T><<<grid, kBlockBits, 0, cuda::stream()>>>(
      sboxes.data_ptr<T>(), svalid.data_ptr<uint8_t>(), scls, n, col_blocks, threshold_as<T>(iou_threshold),
      reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor removed = at::zeros({col_blocks}, sboxes.options().dtype(at::kLong));
  at::Tensor keep = at::empty({n}, sboxes.options().dtype(at::kBool));
  nms_scan_kernel<<<1, kScanThreads, 0, cuda::stream()>>>(
      reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()), svalid.data_ptr<uint8_t>(), n, col_blocks,
      reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()), reinterpret_cast<uint8_t*>(keep.data_ptr<bool>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return keep;
}

// Greedy NMS of p (p.idxs defined: within each category) on the GPU: the kept indices by decreasing score,
// ties by lower index. p.n > 0; the caller guards the device.
template <class Geo, typename T>
at::Tensor mask_nms_impl(const NmsProblem& p, const char* op) {
  const bool batched = p.idxs.defined();
  const int64_t n = p.n;
  const auto opts = p.boxes.options();
  at::Tensor key = at::empty({n}, opts);
  at::Tensor valid = at::empty({n}, opts.dtype(at::kByte));
  const auto blocks = cuda::blocks_for(n);
  nms_keys_kernel<Geo, T><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(
      p.boxes.data_ptr<T>(), p.scores.data_ptr<T>(), key.data_ptr<T>(), valid.data_ptr<uint8_t>(), n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // Rank order: decreasing score, ties by lower index (stable sort); batched: then category, stably.
  at::Tensor order = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  if (batched) {
    at::Tensor cls = p.idxs.index_select(0, order);
    at::Tensor perm = std::get<1>(at::sort(cls, /*stable=*/true, /*dim=*/0, /*descending=*/false));
    order = order.index_select(0, perm);
  }
  at::Tensor sboxes = at::empty({n, Geo::kDim}, opts);
  at::Tensor svalid = at::empty({n}, opts.dtype(at::kByte));
  at::Tensor scls = batched ? at::empty({n}, opts.dtype(at::kLong)) : at::Tensor();
  gather_sorted_kernel<Geo, T><<<blocks, cuda::kThreads, 0, cuda::stream()>>>(
      p.boxes.data_ptr<T>(), valid.data_ptr<uint8_t>(), batched ? p.idxs.data_ptr<int64_t>() : nullptr,
      order.data_ptr<int64_t>(), sboxes.data_ptr<T>(), svalid.data_ptr<uint8_t>(),
      batched ? scls.data_ptr<int64_t>() : nullptr, n);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  at::Tensor keep =
      keep_flags<Geo, T>(sboxes, svalid, batched ? scls.data_ptr<int64_t>() : nullptr, n, p.iou_threshold, op);
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

// The entry of every op that runs mask_nms_impl: p comes from prepare_nms / prepare_batched_nms, which
// checked the devices; G is a geometry of nms_geometry.h.
template <template <typename> class G>
at::Tensor mask_nms(const NmsProblem& p, const char* op) {
  const c10::cuda::CUDAGuard guard(p.boxes.device());
  if (p.n == 0) return at::empty({0}, p.boxes.options().dtype(at::kLong));
  at::Tensor out;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "mask_nms_cuda",
                             [&] { out = mask_nms_impl<G<scalar_t>, scalar_t>(p, op); });
  return out;
}

}  // namespace
}  // namespace detops
