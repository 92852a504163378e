// CUDA kernels of hard negative mining and of the softmax cross-entropy that ranks the negatives (CPU twin:
// cpu/hard_negatives.cpp; reference: detops/reference/matching.py).
//
// Mining: one block per row, no host round trip: count the positives, then a most-significant-digit-first radix select
// (8 bits a pass, shared-memory histograms) on order-preserving keys finds the k-th largest negative loss t and
// how many of the negatives equal to t are needed; a block-wide prefix sum in index order takes those ties
// from the lowest indices, as the CPU kernel does. Deterministic.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>

#include "box_math.h"
#include "cuda/launch.cuh"
#include "ops/hard_negatives.h"

namespace detops {
namespace {

constexpr int kMineThreads = 512;
constexpr int kMineWarps = kMineThreads / 32;

// Block-wide sum; every thread gets the result. s_warp holds kMineWarps ints.
__device__ inline int block_sum(int v, int* s_warp) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  __syncthreads();
  if (lane == 0) s_warp[warp] = v;
  __syncthreads();
  int total = 0;
  for (int w = 0; w < kMineWarps; ++w) total += s_warp[w];
  return total;
}

// Block-wide exclusive prefix sum in thread order; `total` gets the block's sum. s_warp holds kMineWarps ints.
__device__ inline int block_exclusive_sum(int v, int* s_warp, int& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = v;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const int o = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += o;
  }
  __syncthreads();
  if (lane == 31) s_warp[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
  for (int w = 0; w < kMineWarps; ++w) {
    if (w < warp) before += s_warp[w];
    total += s_warp[w];
  }
  return before + incl - v;
}

template <typename T>
__global__ void __launch_bounds__(kMineThreads)
    hard_negative_kernel(const T* __restrict__ loss, const bool* __restrict__ pos, bool* __restrict__ out, int64_t P,
                         int64_t ratio) {
  using Key = OrderedKey<T>;
  using K = typename Key::type;
  __shared__ int s_hist[256];
  __shared__ int s_warp[kMineWarps];
  __shared__ int s_digit, s_rank;
  const int64_t row = blockIdx.x;
  loss += row * P;
  pos += row * P;
  out += row * P;
  const int tid = threadIdx.x;

  int local = 0;
  for (int64_t i = tid; i < P; i += kMineThreads) local += pos[i] ? 1 : 0;
  const int64_t n_pos = block_sum(local, s_warp);
  const int64_t n_neg = P - n_pos;
  const int64_t k = min(ratio * n_pos, n_neg);
  if (k == 0 || k == n_neg) {  // uniform across the block
    for (int64_t i = tid; i < P; i += kMineThreads) out[i] = k != 0 && !pos[i];
    return;
  }

  // Radix select of the k-th largest key among the negatives.
  K prefix = 0, mask = 0;
  int rank = static_cast<int>(k);  // 1-based rank from the top within the current bucket
  for (int shift = Key::kBits - 8; shift >= 0; shift -= 8) {
    for (int d = tid; d < 256; d += kMineThreads) s_hist[d] = 0;
    __syncthreads();
    for (int64_t i = tid; i < P; i += kMineThreads) {
      if (pos[i]) continue;
      const K key = Key::of(loss[i]);
      if ((key & mask) == prefix) atomicAdd(&s_hist[static_cast<int>((key >> shift) & K(0xFF))], 1);
    }
    __syncthreads();
    if (tid == 0) {
      int cum = 0;
      for (int d = 255; d >= 0; --d) {
        if (cum + s_hist[d] >= rank) {
          s_digit = d;
          s_rank = rank - cum;
          break;
        }
        cum += s_hist[d];
      }
    }
    __syncthreads();
    prefix |= static_cast<K>(s_digit) << shift;
    mask |= static_cast<K>(0xFF) << shift;
    rank = s_rank;
  }
  const K t = prefix;
  const int ties = rank;  // how many of the negatives equal to t are selected, the lowest indices first

  int taken = 0;
  for (int64_t base = 0; base < P; base += kMineThreads) {
    const int64_t i = base + tid;
    const bool neg = i < P && !pos[i];
    const K key = neg ? Key::of(loss[i]) : K(0);
    const int is_tie = (neg && key == t) ? 1 : 0;
    int tile_total;
    const int before = block_exclusive_sum(is_tie, s_warp, tile_total);
    if (i < P) out[i] = neg && (key > t || (is_tie && taken + before < ties));
    taken += tile_total;
  }
}

at::Tensor hard_negative_mining_cuda(const at::Tensor& conf_loss, const at::Tensor& positives, int64_t neg_pos_ratio) {
  MiningProblem m = prepare_hard_negative_mining(conf_loss, positives, neg_pos_ratio);
  const c10::cuda::CUDAGuard guard(m.loss.device());  // after prepare_*'s device checks
  if (m.B == 0 || m.P == 0) return m.mask;
  TORCH_CHECK(m.B <= std::numeric_limits<int32_t>::max(), "conf_loss has too many rows: ", m.B);
  AT_DISPATCH_FLOATING_TYPES(m.loss.scalar_type(), "hard_negative_mining_cuda", [&] {
    hard_negative_kernel<scalar_t><<<static_cast<unsigned>(m.B), kMineThreads, 0, cuda::stream()>>>(
        m.loss.data_ptr<scalar_t>(), m.positives.data_ptr<bool>(), m.mask.data_ptr<bool>(), m.P, m.ratio);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return m.mask;
}

// One thread per row (SSD's rows are short: 21 classes), two passes over the row in the same order as the CPU
// kernel. A target equal to `ignore` gives 0; any other target outside [0, C) gives NaN: raising would need a
// host synchronisation.
template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    cross_entropy_kernel(const T* __restrict__ x, const int64_t* __restrict__ target, T* __restrict__ out, int64_t rows,
                         int64_t C, int64_t ignore) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    const T* row = x + r * C;
    T m = row[0];
    for (int64_t c = 1; c < C; ++c) m = nan_max(m, row[c]);
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += exp(row[c] - m);
    const int64_t t = target[r];
    out[r] = t == ignore ? T(0) : (t >= 0 && t < C) ? log(sum) - (row[t] - m) : std::numeric_limits<T>::quiet_NaN();
  }
}

at::Tensor softmax_cross_entropy_cuda(const at::Tensor& logits, const at::Tensor& targets, int64_t ignore_index) {
  CrossEntropyProblem p = prepare_softmax_cross_entropy(logits, targets, ignore_index);
  const c10::cuda::CUDAGuard guard(p.logits.device());  // after prepare_*'s device checks
  if (p.rows > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.logits.scalar_type(), "softmax_cross_entropy_cuda", [&] {
      cross_entropy_kernel<scalar_t><<<cuda::blocks_for(p.rows), cuda::kThreads, 0, cuda::stream()>>>(
          p.logits.data_ptr<scalar_t>(), p.targets.data_ptr<int64_t>(), p.out.data_ptr<scalar_t>(), p.rows, p.C,
          p.ignore_index);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_cross_entropy(p);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("hard_negative_mining", &detops::hard_negative_mining_cuda);
  m.impl("softmax_cross_entropy", &detops::softmax_cross_entropy_cuda);
}
