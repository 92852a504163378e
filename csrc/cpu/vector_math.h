// log and exp that a compiler can vectorise, for the CPU kernels' hot loops (box coding, cross-entropy).
//
// A libm call inside a loop keeps the loop scalar, and one logf/expf call costs more than the rest of a
// box's coding arithmetic. These float versions are branch-free (every special case is a select), so a loop
// calling them vectorises like plain arithmetic. The algorithm is the classic one (Cephes): split off the
// binary exponent, evaluate a short polynomial on the reduced argument; both are within 2 ulp of the
// correctly rounded result on the whole float range (tests/test_coding.py checks them through encode_boxes /
// decode_boxes against float64 log / exp). double goes to libm: no kernel's speed target is in float64.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace detops {
namespace vmath {

inline float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
inline int32_t float_to_bits(float f) {
  int32_t i;
  std::memcpy(&i, &f, sizeof i);
  return i;
}

// 2^n for n in [-126, 127], built from its exponent bits.
inline float pow2i(int32_t n) { return bits_to_float((n + 127) << 23); }

// round-to-nearest of x for |x| < 2^22 without SSE4.1's roundps: adding and subtracting 1.5 * 2^23
// leaves the integer part in the mantissa.
inline float round_nearest(float x) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23
  return (x + shifter) - shifter;
}

inline float log(float x) {
  // Subnormals: scale into the normal range first (2^23), remember the exponent offset.
  // (Every operand is computed unconditionally and then selected: a select the compiler can prove cheap and
  // trap-free is what lets it if-convert, and so vectorise, the loop.)
  const bool subnormal = x < std::numeric_limits<float>::min();
  const float scaled = x * 8388608.0f;
  const float xs = subnormal ? scaled : x;
  const int32_t bits = float_to_bits(xs);
  // x = m * 2^e with m in [sqrt(1/2), sqrt(2)): the polynomial is accurate around m = 1.
  int32_t e = ((bits >> 23) & 0xff) - 126 - (subnormal ? 23 : 0);
  float m = bits_to_float((bits & 0x007fffff) | 0x3f000000);  // in [0.5, 1)
  const bool small = m < 0.70710678118654752f;
  e -= small ? 1 : 0;
  const float doubled = m + m;
  m = (small ? doubled : m) - 1.0f;
  const float fe = static_cast<float>(e);
  const float z = m * m;
  // The degree-8 polynomial by Estrin's scheme: four independent pairs, then powers of m, so its dependency
  // chain is 5 operations deep rather than Horner's 16 (the loop is latency-bound otherwise).
  const float z2 = z * z;
  const float p01 = 7.0376836292e-2f * m - 1.1514610310e-1f;
  const float p23 = 1.1676998740e-1f * m - 1.2420140846e-1f;
  const float p45 = 1.4249322787e-1f * m - 1.6668057665e-1f;
  const float p67 = 2.0000714765e-1f * m - 2.4999993993e-1f;
  const float p = ((p01 * z + p23) * z2 + (p45 * z + p67)) * m + 3.3333331174e-1f;
  float y = m * z * p;
  // log(2) split in two parts so fe * log(2) adds without rounding away the polynomial's bits.
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  float r = m + y + 0.693359375f * fe;
  // Special values, as libm: log(0) = -inf, log(+inf) = +inf, log(x < 0) = log(NaN) = NaN.
  const float inf = std::numeric_limits<float>::infinity();
  r = x == 0.0f ? -inf : r;
  r = x == inf ? inf : r;
  r = ((x < 0.0f) | (x != x)) ? std::numeric_limits<float>::quiet_NaN() : r;
  return r;
}

inline float exp(float x) {
  // Outside [-104, 89] exp underflows to 0 or overflows to inf; clamping keeps the exponent arithmetic in
  // range, and the two-step scaling below makes the overflow and the (gradual) underflow happen naturally.
  const bool nan = x != x;
  float xc = nan ? 0.0f : x;
  xc = xc > 89.0f ? 89.0f : xc;
  xc = xc < -104.0f ? -104.0f : xc;
  const float n = round_nearest(xc * 1.44269504088896341f);
  // r = x - n log(2), with log(2) in two parts for an exact first product.
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  // Estrin's scheme, as for log.
  const float r2 = r * r;
  const float p01 = 1.9875691500e-4f * r + 1.3981999507e-3f;
  const float p23 = 8.3334519073e-3f * r + 4.1665795894e-2f;
  const float p45 = 1.6666665459e-1f * r + 5.0000001201e-1f;
  const float p = (p01 * r2 + p23) * r2 + p45;
  const float y = p * r * r + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1;  // 2^n as 2^n1 * 2^(n - n1): both factors stay representable
  const float out = y * pow2i(n1) * pow2i(ni - n1);
  return nan ? x : out;
}

inline double log(double x) { return std::log(x); }
inline double exp(double x) { return std::exp(x); }

}  // namespace vmath
}  // namespace detops
