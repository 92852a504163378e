// CPU kernel of YOLO candidate scoring (CUDA twin: cuda/yolo.cu; reference: detops/reference/yolo.py).
// Two passes over chunks of rows, both parallel: score every row of a chunk (best class or -1) and count its
// candidates; then, with each chunk's output offset from the prefix sum of the counts, write the candidates
// in row order. A row that fails objectness costs one load; only candidates' boxes are read.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/yolo.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cpu/target_clones.h"

namespace detops {
namespace {

// Rows per chunk: 66 chunks for 16 x 8400 rows, enough for the threads to balance, few enough that the
// per-chunk counts cost nothing.
constexpr int64_t kChunk = 2048;

typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Ints8 __attribute__((vector_size(32)));

// best_class_of_row (ops/yolo.h) for a float row whose class scores are contiguous (the v5 layout), eight
// classes per vector step: the same eight (max, first index) lanes, so the same answer, without the scalar
// loop's dependent selects. GCC lowers the vector types to AVX2 or to SSE2 pairs, per clone.
__attribute__((always_inline)) inline int64_t best_class_contiguous(const float* row, int64_t C, int64_t first_class,
                                                                    bool objectness, float thr, float& best_out) {
  float obj = 1;
  if (objectness) {
    obj = row[4];
    if (!(obj > thr)) return -1;
  }
  const float* p = row + first_class;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  Floats8 lane_max = {neg_inf, neg_inf, neg_inf, neg_inf, neg_inf, neg_inf, neg_inf, neg_inf};
  Ints8 lane_at = {0, 0, 0, 0, 0, 0, 0, 0}, at = {0, 1, 2, 3, 4, 5, 6, 7}, nan = lane_at;
  int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    Floats8 s;
    std::memcpy(&s, p + c, sizeof(s));
    s = s * obj;
    nan |= s != s;
    const Ints8 above = s > lane_max;
    lane_max = above ? s : lane_max;
    lane_at = above ? at : lane_at;
    at += 8;
  }
  float best = lane_max[0];
  int64_t label = lane_at[0];
  bool any_nan = nan[0] != 0;
  for (int l = 1; l < 8; ++l) {
    any_nan |= nan[l] != 0;
    if (lane_max[l] > best || (lane_max[l] == best && lane_at[l] < label)) {
      best = lane_max[l];
      label = lane_at[l];
    }
  }
  for (; c < C; ++c) {
    const float s = p[c] * obj;
    any_nan |= s != s;
    if (s > best) {
      best = s;
      label = c;
    }
  }
  if (any_nan || !(best > thr)) return -1;
  best_out = best;
  return label;
}

// best_class_of_row for kAcross consecutive float rows whose values are contiguous across rows (the v8
// layout: channel-major, a row's class scores N apart), a row per vector lane: the class loop is the
// scalar rule's (a strictly larger score moves the index, so ties keep the first), and two vectors of
// eight rows use each loaded cache line whole. Returns how many of the rows are candidates.
constexpr int64_t kAcross = 16;
__attribute__((always_inline)) inline int64_t best_class_across(const float* row0, int64_t stride, int64_t C,
                                                                int64_t first_class, bool objectness, float thr,
                                                                float* best_out, int64_t* label_out) {
  constexpr int kVectors = kAcross / 8;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  Floats8 obj[kVectors], best[kVectors];
  Ints8 at[kVectors], nan[kVectors];
  for (int v = 0; v < kVectors; ++v) {
    obj[v] = Floats8{} + 1.0f;
    if (objectness) std::memcpy(&obj[v], row0 + 4 * stride + 8 * v, sizeof(Floats8));
    best[v] = Floats8{} + neg_inf;
    at[v] = Ints8{};
    nan[v] = Ints8{};
  }
  for (int32_t c = 0; c < C; ++c) {
    const float* p = row0 + (first_class + c) * stride;
    for (int v = 0; v < kVectors; ++v) {
      Floats8 s;
      std::memcpy(&s, p + 8 * v, sizeof(s));
      s = s * obj[v];
      nan[v] |= s != s;
      const Ints8 above = s > best[v];
      best[v] = above ? s : best[v];
      at[v] = above ? (Ints8{} + c) : at[v];
    }
  }
  int64_t found = 0;
  for (int v = 0; v < kVectors; ++v)
    for (int l = 0; l < 8; ++l) {
      const bool candidate = (!objectness || obj[v][l] > thr) && nan[v][l] == 0 && best[v][l] > thr;
      const int64_t i = 8 * v + l;
      label_out[i] = candidate ? at[v][l] : -1;
      if (candidate) best_out[i] = best[v][l];
      found += candidate;
    }
  return found;
}

// Scores rows [first, last): best score and class of each (class -1: not a candidate); returns how many are.
template <typename T>
DETOPS_TARGET_CLONES int64_t score_rows(const T* pred, const YoloProblem& p, int64_t first, int64_t last, T thr,
                                        T* best, int64_t* label) {
  int64_t b = first / p.N, n = first % p.N, found = 0;
  for (int64_t r = first; r < last; ++r) {
    const T* row = pred + b * p.stride_b + n * p.stride_n;
    if constexpr (std::is_same_v<T, float>) {
      if (p.stride_n == 1 && p.stride_d != 1 && r + kAcross <= last && n + kAcross <= p.N) {
        found += best_class_across(row, p.stride_d, p.C, p.first_class, p.objectness, thr, best + r, label + r);
        r += kAcross - 1;  // with the loop's ++r: the row after the block
        n += kAcross;
        if (n == p.N) n = 0, ++b;
        continue;
      }
      label[r] = p.stride_d == 1 ? best_class_contiguous(row, p.C, p.first_class, p.objectness, thr, best[r])
                                 : best_class_of_row(row, p.stride_d, p.C, p.first_class, p.objectness, thr, best[r]);
    } else {
      label[r] = best_class_of_row(row, p.stride_d, p.C, p.first_class, p.objectness, thr, best[r]);
    }
    found += label[r] >= 0;
    if (++n == p.N) n = 0, ++b;
  }
  return found;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> yolo_candidates_cpu(const at::Tensor& prediction,
                                                                               double conf_thres, bool objectness) {
  const YoloProblem p = prepare_yolo_candidates(prediction, conf_thres, objectness);
  const int64_t rows = p.B * p.N;
  const int64_t chunks = (rows + kChunk - 1) / kChunk;
  std::vector<int64_t> offset(chunks + 1, 0);
  at::Tensor best = at::empty({rows}, prediction.options());
  at::Tensor label = at::empty({rows}, prediction.options().dtype(at::kLong));
  at::Tensor out_rows, boxes, scores, labels;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, prediction.scalar_type(), "yolo_candidates_cpu", [&] {
    const scalar_t* pred = p.prediction.data_ptr<scalar_t>();
    scalar_t* best_of = best.data_ptr<scalar_t>();
    int64_t* label_of = label.data_ptr<int64_t>();
    const scalar_t thr = static_cast<scalar_t>(p.conf_thres);  // as `scores > conf_thres` compares, in T
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k)
        offset[k + 1] = score_rows(pred, p, k * kChunk, std::min(rows, (k + 1) * kChunk), thr, best_of, label_of);
    });
    for (int64_t k = 0; k < chunks; ++k) offset[k + 1] += offset[k];
    const int64_t K = offset[chunks];
    out_rows = at::empty({K}, label.options());
    boxes = at::empty({K, 4}, prediction.options());
    scores = at::empty({K}, prediction.options());
    labels = at::empty({K}, label.options());
    int64_t* rows_out = out_rows.data_ptr<int64_t>();
    scalar_t* box_out = boxes.data_ptr<scalar_t>();
    scalar_t* score_out = scores.data_ptr<scalar_t>();
    int64_t* label_out = labels.data_ptr<int64_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        int64_t i = offset[k];
        for (int64_t r = k * kChunk; r < std::min(rows, (k + 1) * kChunk); ++r) {
          if (label_of[r] < 0) continue;
          const scalar_t* row = pred + (r / p.N) * p.stride_b + (r % p.N) * p.stride_n;  // candidates only
          rows_out[i] = r;
          score_out[i] = best_of[r];
          label_out[i] = label_of[r];
          center_size_to_corners<scalar_t, at::opmath_type<scalar_t>>(row, p.stride_d, box_out + 4 * i);
          ++i;
        }
      }
    });
  });
  return {out_rows, boxes, scores, labels};
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) { m.impl("yolo_candidates", &detops::yolo_candidates_cpu); }
