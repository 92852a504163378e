// Unsigned integer keys that sort as the floating-point values they come from: selection and radix sorts run
// on them (hard negative mining's nth_element and radix select, the NMS rank sort).
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>
#include <cstring>

namespace detops {

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
