// YOLO candidate scoring (yolo_candidates): argument checks, and the per-row rule both kernels apply, written
// once so the CPU and CUDA kernels pick the same class for the same row.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <limits>

#include "box_math.h"

namespace detops {

// prediction [B, N, D] with any strides (a v8 head's transposed view needs no copy): per row cx, cy, w, h,
// then the objectness when `objectness`, then C class scores.
struct YoloProblem {
  at::Tensor prediction;
  int64_t B, N, C, first_class;
  int64_t stride_b, stride_n, stride_d;
  bool objectness;
  double conf_thres;
};
YoloProblem prepare_yolo_candidates(const at::Tensor& prediction, double conf_thres, bool objectness);

// The product rounded to T, as `scores = cls * obj` stores it (no rounding for float: acc_t is T).
template <typename T>
DETOPS_HD at::opmath_type<T> class_score(T p, at::opmath_type<T> obj) {
  using acc_t = at::opmath_type<T>;
  return static_cast<acc_t>(static_cast<T>(static_cast<acc_t>(p) * obj));
}

// One row's best class, as scores.max(-1) finds it after `scores = cls * obj` (class_score): the largest
// product, its first index on ties. Returns that index, or -1 when the row is not a candidate: objectness or
// best score not above `thr`, or a NaN among the products (max would return the NaN, and NaN > thr is false).
// Eight independent (max, first index) lanes break the dependency chain of a running max; a lane keeps the
// first index of its own maximum, so the smallest index among the lanes holding the overall maximum is the
// row's first.
template <typename T>
DETOPS_HD int64_t best_class_of_row(const T* row, int64_t stride, int64_t C, int64_t first_class, bool objectness,
                                    T thr, T& best_out) {
  using acc_t = at::opmath_type<T>;
  const acc_t threshold = static_cast<acc_t>(thr);
  acc_t obj = 1;
  if (objectness) {
    obj = static_cast<acc_t>(row[4 * stride]);
    if (!(obj > threshold)) return -1;
  }
  const T* p = row + first_class * stride;
  constexpr int kLanes = 8;
  acc_t lane_max[kLanes];
  int64_t lane_at[kLanes];
  for (int l = 0; l < kLanes; ++l) {
    lane_max[l] = -std::numeric_limits<acc_t>::infinity();
    lane_at[l] = 0;
  }
  bool nan = false;
  int64_t c = 0;
  for (; c + kLanes <= C; c += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const acc_t s = class_score(p[(c + l) * stride], obj);
      nan |= s != s;
      const bool above = s > lane_max[l];
      lane_max[l] = above ? s : lane_max[l];
      lane_at[l] = above ? c + l : lane_at[l];
    }
  acc_t best = lane_max[0];
  int64_t label = lane_at[0];
  for (int l = 1; l < kLanes; ++l)
    if (lane_max[l] > best || (lane_max[l] == best && lane_at[l] < label)) {
      best = lane_max[l];
      label = lane_at[l];
    }
  for (; c < C; ++c) {  // the tail's indices come after every lane's: strictly larger wins
    const acc_t s = class_score(p[c * stride], obj);
    nan |= s != s;
    if (s > best) {
      best = s;
      label = c;
    }
  }
  if (nan || !(best > threshold)) return -1;
  best_out = static_cast<T>(best);
  return label;
}

}  // namespace detops
