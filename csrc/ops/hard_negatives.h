// Hard negative mining (SPEC "Hard negative mining"): argument checks and the order-preserving keys both
// kernels select on; and the per-prior softmax cross-entropy that ranks the negatives.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace detops {

// conf_loss [B, P] (float or double, contiguous), positives [B, P] bool (contiguous), mask [B, P] bool.
struct MiningProblem {
  at::Tensor loss, positives, mask;
  int64_t B, P, ratio;
};
MiningProblem prepare_hard_negative_mining(const at::Tensor& conf_loss, const at::Tensor& positives,
                                           int64_t neg_pos_ratio);

// softmax_cross_entropy: logits [rows, C] (float or double, contiguous), targets [rows] int64 (contiguous),
// out [rows] in the compute dtype; finish_cross_entropy gives it the targets' shape and the logits' dtype.
struct CrossEntropyProblem {
  at::Tensor logits, targets, out;
  int64_t rows, C;
  std::vector<int64_t> out_shape;
  at::ScalarType out_dtype;
};
CrossEntropyProblem prepare_softmax_cross_entropy(const at::Tensor& logits, const at::Tensor& targets);
at::Tensor finish_cross_entropy(const CrossEntropyProblem& p);

// Unsigned keys in the order of the floating values (a larger loss, a larger key); every NaN is the largest key,
// as torch.sort(descending=True) puts NaN first. Selection (nth_element, radix select) runs on these keys.
template <typename T>
struct OrderedKey;

template <>
struct OrderedKey<float> {
  using type = uint32_t;
  static constexpr int kBits = 32;
  C10_HOST_DEVICE static inline type of(float v) {
    if (v != v) return 0xFFFFFFFFu;
    uint32_t u;
#ifdef __CUDA_ARCH__
    u = __float_as_uint(v);
#else
    std::memcpy(&u, &v, sizeof(u));
#endif
    if (u == 0x80000000u) u = 0;  // -0 == +0
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  }
};

template <>
struct OrderedKey<double> {
  using type = uint64_t;
  static constexpr int kBits = 64;
  C10_HOST_DEVICE static inline type of(double v) {
    if (v != v) return ~uint64_t(0);
    uint64_t u;
#ifdef __CUDA_ARCH__
    u = static_cast<uint64_t>(__double_as_longlong(v));
#else
    std::memcpy(&u, &v, sizeof(u));
#endif
    const uint64_t sign = uint64_t(1) << 63;
    if (u == sign) u = 0;
    return (u & sign) ? ~u : (u | sign);
  }
};

}  // namespace detops
