// CUDA kernels of the rotated-box ops (CPU twin: cpu/rotated.cpp; reference: detops/reference/rotated.py).
//
// box_iou_rotated: one output per thread, the row box broadcast to the warp. nms_rotated and
// batched_nms_rotated: boxes sorted on the GPU, a bit mask of "row box suppresses column box" built in
// 64 x 64 tiles, then one block walks the mask in rank order; the only host synchronisation is the size of
// the returned index tensor.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/masked_select.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <limits>

#include "cuda/launch.cuh"
#include "ops/nms.h"
#include "ops/rotated.h"
#include "rotated_math.h"

namespace detops {
namespace {

constexpr int kTileM = 128;  // columns (boxes2) per block: consecutive threads write consecutive outputs
constexpr int kTileN = 2;    // rows (boxes1) per block

template <typename T>
__global__ void __launch_bounds__(kTileM * kTileN)
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

// ---- nms_rotated, batched_nms_rotated ----

constexpr int kBlockBits = 64;
constexpr int kScanThreads = 256;

// key[i] = score for boxes that take part, -inf for the others (NaN score, non-finite value); valid[i].
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    rotated_keys_kernel(const T* __restrict__ boxes, const T* __restrict__ scores, T* __restrict__ key,
                        uint8_t* __restrict__ valid, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool v = nms_rotated_valid(load_rotated(boxes + 5 * i), scores[i]);
    key[i] = v ? scores[i] : -std::numeric_limits<T>::infinity();
    valid[i] = v;
  }
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    rotated_gather_kernel(const T* __restrict__ boxes, const uint8_t* __restrict__ valid,
                          const int64_t* __restrict__ idxs, const int64_t* __restrict__ order, T* __restrict__ sboxes,
                          uint8_t* __restrict__ svalid, int64_t* __restrict__ scls, int64_t n) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = order[k];
    for (int d = 0; d < 5; ++d) sboxes[5 * k + d] = boxes[5 * i + d];
    svalid[k] = valid[i];
    scls[k] = idxs != nullptr ? idxs[i] : 0;
  }
}

// mask[i][w] bit t: box i (rank order) suppresses box j = 64 w + t, j > i, of the same category. Tiles left
// of the diagonal are never read and not computed.
template <typename T>
__global__ void __launch_bounds__(kBlockBits)
    rotated_mask_kernel(const T* __restrict__ sboxes, const uint8_t* __restrict__ svalid,
                        const int64_t* __restrict__ scls, int64_t n, int64_t col_blocks, T thr,
                        uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (col_block < row_block) return;
  const int64_t row0 = row_block * kBlockBits, col0 = col_block * kBlockBits;
  const int64_t rows = min(static_cast<int64_t>(kBlockBits), n - row0);
  const int64_t cols = min(static_cast<int64_t>(kBlockBits), n - col0);
  __shared__ RotatedBox<T> cb[kBlockBits];
  __shared__ int64_t cc[kBlockBits];
  if (threadIdx.x < cols) {
    cb[threadIdx.x] = load_rotated(sboxes + 5 * (col0 + threadIdx.x));
    cc[threadIdx.x] = scls[col0 + threadIdx.x];
  }
  __syncthreads();
  if (threadIdx.x >= rows) return;
  const int64_t i = row0 + threadIdx.x;
  uint64_t bits = 0;
  if (svalid[i]) {
    const RotatedBox<T> a = load_rotated(sboxes + 5 * i);
    const int64_t ci = scls[i];
    const int start = col_block == row_block ? static_cast<int>(threadIdx.x) + 1 : 0;
    for (int t = start; t < cols; ++t)
      if (cc[t] == ci && rotated_iou(a, cb[t]) > thr) bits |= 1ULL << t;
  }
  mask[i * col_blocks + col_block] = bits;
}

// One block walks the mask in rank order: thread 0 resolves each 64-box word (its rows' own words staged
// in shared memory), then every thread ORs the kept rows into the later words it owns.
__global__ void __launch_bounds__(kScanThreads)
    rotated_scan_kernel(const uint64_t* __restrict__ mask, const uint8_t* __restrict__ svalid, int64_t n,
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

at::Tensor run_nms_rotated_cuda(const RotatedNmsProblem& p) {
  const c10::cuda::CUDAGuard guard(p.boxes.device());
  const int64_t n = p.n;
  if (n == 0) return at::empty({0}, p.boxes.options().dtype(at::kLong));
  TORCH_CHECK(n <= std::numeric_limits<int32_t>::max() / 2, "nms_rotated supports at most 2^30 boxes, got ", n);
  at::Tensor order;
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_rotated_cuda", [&] {
    using T = scalar_t;
    const auto u8 = p.boxes.options().dtype(at::kByte);
    at::Tensor key = at::empty({n}, p.scores.options());
    at::Tensor valid = at::empty({n}, u8);
    rotated_keys_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        p.boxes.data_ptr<T>(), p.scores.data_ptr<T>(), key.data_ptr<T>(), valid.data_ptr<uint8_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    // A stable descending sort keeps equal scores in index order: ties go to the lower index.
    order = std::get<1>(at::sort(key, /*stable=*/true, /*dim=*/0, /*descending=*/true));
    at::Tensor sboxes = at::empty({n, 5}, p.boxes.options());
    at::Tensor svalid = at::empty({n}, u8);
    at::Tensor scls = at::empty({n}, p.boxes.options().dtype(at::kLong));
    rotated_gather_kernel<T><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::stream()>>>(
        p.boxes.data_ptr<T>(), valid.data_ptr<uint8_t>(), p.idxs.defined() ? p.idxs.data_ptr<int64_t>() : nullptr,
        order.data_ptr<int64_t>(), sboxes.data_ptr<T>(), svalid.data_ptr<uint8_t>(), scls.data_ptr<int64_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t col_blocks = (n + kBlockBits - 1) / kBlockBits;
    TORCH_CHECK(col_blocks <= 65535, "nms_rotated supports at most ", 65535 * kBlockBits, " boxes, got ", n);
    at::Tensor mask = at::empty({n, col_blocks}, p.boxes.options().dtype(at::kLong));
    const dim3 grid(static_cast<unsigned int>(col_blocks), static_cast<unsigned int>(col_blocks));
    rotated_mask_kernel<T><<<grid, kBlockBits, 0, cuda::stream()>>>(
        sboxes.data_ptr<T>(), svalid.data_ptr<uint8_t>(), scls.data_ptr<int64_t>(), n, col_blocks,
        threshold_as<T>(p.iou_threshold), reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor removed = at::zeros({col_blocks}, p.boxes.options().dtype(at::kLong));
    keep = at::empty({n}, u8);
    rotated_scan_kernel<<<1, kScanThreads, 0, cuda::stream()>>>(
        reinterpret_cast<const uint64_t*>(mask.data_ptr<int64_t>()), svalid.data_ptr<uint8_t>(), n, col_blocks,
        reinterpret_cast<uint64_t*>(removed.data_ptr<int64_t>()), keep.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return at::masked_select(order, keep.to(at::kBool));
}

at::Tensor nms_rotated_cuda(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  return run_nms_rotated_cuda(prepare_nms_rotated(boxes, scores, iou_threshold));
}

at::Tensor batched_nms_rotated_cuda(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                                    double iou_threshold) {
  return run_nms_rotated_cuda(prepare_batched_nms_rotated(boxes, scores, idxs, iou_threshold));
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("box_iou_rotated", &detops::box_iou_rotated_cuda);
  m.impl("box_iou_rotated_aligned", &detops::box_iou_rotated_aligned_cuda);
  m.impl("nms_rotated", &detops::nms_rotated_cuda);
  m.impl("batched_nms_rotated", &detops::batched_nms_rotated_cuda);
}
