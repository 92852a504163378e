// Input checks shared by every op: one sentence a user understands, naming the argument and what it got.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>
#include <string>

namespace detops {

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

// boxes[..., 4] with at least `min_dim` dimensions.
inline void check_boxes(const at::Tensor& t, const char* name, int64_t min_dim = 1) {
  TORCH_CHECK(t.dim() >= min_dim && t.size(-1) == 4, name, " must have shape [", (min_dim > 1 ? "..., N, " : "..., "),
              "4], got ", shape_str(t));
}

// A count the kernels index with int32: `name` has `n` `what` (e.g. "priors"), at most 2^31 - 2.
inline void check_int32_count(int64_t n, const char* name, const char* what) {
  TORCH_CHECK(n < std::numeric_limits<int32_t>::max(), name, " has ", n, " ", what, "; at most 2^31 - 2 are supported");
}

inline void check_same_device(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.device() == b.device(), a_name, " and ", b_name, " must be on the same device, got ", a.device(),
              " and ", b.device());
}

inline void check_same_dtype(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), a_name, " and ", b_name, " must have the same dtype, got ",
              a.scalar_type(), " and ", b.scalar_type());
}

inline void check_floating(const at::Tensor& t, const char* name) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), name, " must be a floating-point tensor, got ", t.scalar_type());
}

// The type the arithmetic runs in (docs/ops.md, "Dtypes"): float32 for half and bfloat16, float64 for
// integer boxes (exact products up to 2^53, rounded once to float32 at the end), otherwise the input's own.
inline at::ScalarType compute_dtype(at::ScalarType t) {
  if (t == at::kHalf || t == at::kBFloat16) return at::kFloat;
  if (at::isIntegralType(t, /*includeBool=*/true)) return at::kDouble;
  return t;
}

}  // namespace detops
