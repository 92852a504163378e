// CPU kernels of hard negative mining and of the softmax cross-entropy that ranks the negatives (CUDA twin:
// cuda/hard_negatives.cu; reference: detops/reference/matching.py). Mining: per row, nth_element on
// order-preserving keys finds the k-th largest negative loss t; every negative above t is selected, and of
// those equal to t the first ones by index.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/hard_negatives.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <limits>
#include <vector>

#include "box_math.h"
#include "cpu/target_clones.h"
#include "cpu/vector_math.h"

namespace detops {
namespace {

template <typename T>
void mine_row(const T* loss, const bool* pos, bool* out, int64_t P, int64_t ratio,
              std::vector<typename OrderedKey<T>::type>& keys) {
  using K = typename OrderedKey<T>::type;
  int64_t n_pos = 0;
  for (int64_t p = 0; p < P; ++p) n_pos += pos[p];
  const int64_t n_neg = P - n_pos;
  const int64_t k = std::min(ratio * n_pos, n_neg);
  if (k == 0 || k == n_neg) {
    for (int64_t p = 0; p < P; ++p) out[p] = k != 0 && !pos[p];
    return;
  }
  keys.clear();
  for (int64_t p = 0; p < P; ++p)
    if (!pos[p]) keys.push_back(OrderedKey<T>::of(loss[p]));
  std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end(), std::greater<K>());
  const K t = keys[k - 1];
  int64_t above = 0;
  for (int64_t i = 0; i < k - 1; ++i) above += keys[i] > t;  // the first k-1 are >= t after nth_element
  int64_t ties_left = k - above;
  for (int64_t p = 0; p < P; ++p) {
    bool sel = false;
    if (!pos[p]) {
      const K key = OrderedKey<T>::of(loss[p]);
      if (key > t) {
        sel = true;
      } else if (key == t && ties_left > 0) {
        sel = true;
        --ties_left;
      }
    }
    out[p] = sel;
  }
}

at::Tensor hard_negative_mining_cpu(const at::Tensor& conf_loss, const at::Tensor& positives, int64_t neg_pos_ratio) {
  MiningProblem m = prepare_hard_negative_mining(conf_loss, positives, neg_pos_ratio);
  AT_DISPATCH_FLOATING_TYPES(m.loss.scalar_type(), "hard_negative_mining_cpu", [&] {
    const scalar_t* loss = m.loss.data_ptr<scalar_t>();
    const bool* pos = m.positives.data_ptr<bool>();
    bool* out = m.mask.data_ptr<bool>();
    at::parallel_for(0, m.B, 1, [&](int64_t begin, int64_t end) {
      std::vector<typename OrderedKey<scalar_t>::type> keys;
      for (int64_t b = begin; b < end; ++b)
        mine_row<scalar_t>(loss + b * m.P, pos + b * m.P, out + b * m.P, m.P, m.ratio, keys);
    });
  });
  return m.mask;
}

// Cross-entropy of `rows` rows of C logits: loss = log(sum_c exp(x_c - max)) - (x_target - max), the value
// F.cross_entropy computes. The block is first transposed class-major into `cols` (cols[c * rows + r]), so every
// later loop runs over rows: the max, the exponentials and the sums vectorise across rows, and each row's
// sum still adds its classes in order 0..C-1 (as the CUDA kernel does). Summing along a row instead would
// be a chain of dependent adds. A row whose target is `ignore` has loss 0. Returns false if another target is
// outside [0, C) (its loss is NaN).
template <typename T>
DETOPS_TARGET_CLONES bool cross_entropy_block(const T* __restrict__ x, const int64_t* __restrict__ target,
                                              T* __restrict__ out, int64_t rows, int64_t C, int64_t ignore,
                                              T* __restrict__ cols, T* __restrict__ row_max, T* __restrict__ row_sum) {
  // The transpose goes 8 rows at a time so its stores fill whole lines of `cols` (one row at a time, each
  // store lands on a different line: a third of the kernel's time).
  int64_t r0 = 0;
  for (; r0 + 8 <= rows; r0 += 8)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < 8; ++i) cols[c * rows + r0 + i] = x[(r0 + i) * C + c];
  for (int64_t r = r0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) cols[c * rows + r] = x[r * C + c];
  for (int64_t r = 0; r < rows; ++r) row_max[r] = cols[r];
  for (int64_t c = 1; c < C; ++c)
    for (int64_t r = 0; r < rows; ++r) row_max[r] = nan_max(row_max[r], cols[c * rows + r]);
  for (int64_t r = 0; r < rows; ++r) row_sum[r] = 0;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < rows; ++r) row_sum[r] += vmath::exp(cols[c * rows + r] - row_max[r]);
  for (int64_t r = 0; r < rows; ++r) row_sum[r] = vmath::log(row_sum[r]);
  bool targets_ok = true;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = target[r];
    const bool ignored = t == ignore;
    const bool ok = t >= 0 && t < C && !ignored;
    targets_ok = targets_ok && (ok || ignored);
    out[r] = ok ? row_sum[r] - (x[r * C + t] - row_max[r]) : ignored ? T(0) : std::numeric_limits<T>::quiet_NaN();
  }
  return targets_ok;
}

at::Tensor softmax_cross_entropy_cpu(const at::Tensor& logits, const at::Tensor& targets, int64_t ignore_index) {
  CrossEntropyProblem p = prepare_softmax_cross_entropy(logits, targets, ignore_index);
  std::atomic<bool> targets_ok{true};
  AT_DISPATCH_FLOATING_TYPES(p.logits.scalar_type(), "softmax_cross_entropy_cpu", [&] {
    const scalar_t* x = p.logits.data_ptr<scalar_t>();
    const int64_t* t = p.targets.data_ptr<int64_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    const int64_t C = p.C;
    const int64_t block = std::max<int64_t>(1, 4096 / C);  // rows per block: ~16 KiB of logits, in L1
    at::parallel_for(0, p.rows, std::max<int64_t>(block, 16384 / C), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> cols(static_cast<size_t>(block * C)), row_max(block), row_sum(block);
      for (int64_t r = begin; r < end; r += block) {
        const int64_t n = std::min(block, end - r);
        if (!cross_entropy_block(x + r * C, t + r, out + r, n, C, p.ignore_index, cols.data(), row_max.data(),
                                 row_sum.data()))
          targets_ok.store(false, std::memory_order_relaxed);
      }
    });
  });
  if (!targets_ok.load()) bad_cross_entropy_target(p);
  return finish_cross_entropy(p);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("hard_negative_mining", &detops::hard_negative_mining_cpu);
  m.impl("softmax_cross_entropy", &detops::softmax_cross_entropy_cpu);
}
