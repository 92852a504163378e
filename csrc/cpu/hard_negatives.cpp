// CPU kernel of hard negative mining (CUDA twin: cuda/hard_negatives.cu; reference:
// detops/reference/matching.py). Per row, nth_element on order-preserving keys finds the k-th largest
// negative loss t; every negative above t is selected, and of those equal to t the first ones by index.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "ops/hard_negatives.h"

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

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) { m.impl("hard_negative_mining", &detops::hard_negative_mining_cpu); }
