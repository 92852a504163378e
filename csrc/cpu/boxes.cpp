// CPU kernels of the overlap ops (CUDA twin: cuda/boxes.cu; reference: detops/reference/boxes.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ops/boxes.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "box_math.h"
#include "cpu/large_output.h"

namespace detops {
namespace {

// Rows of a against all of b for one batch entry. b is given column-wise (x1, y1, x2, y2, area, aspect
// angle as six arrays) so the inner loop has no gathers and the compiler vectorises it. T is the compute
// type, O the output's: float64 arithmetic for integer boxes is rounded once, into the float32 output.
template <typename T, typename O, IouMode kMode>
void pairwise_rows(const T* a, BoxFormat fmt, const T* const* bcol, O* out, int64_t row_begin, int64_t row_end,
                   int64_t m, T eps) {
  const T *bx1 = bcol[0], *by1 = bcol[1], *bx2 = bcol[2], *by2 = bcol[3], *barea = bcol[4], *bangle = bcol[5];
  for (int64_t i = row_begin; i < row_end; ++i) {
    T area_a;
    const Box<T> ai = load_corners(a + 4 * i, fmt, area_a);
    const T angle_a = kMode == IouMode::CIoU ? aspect_angle(ai) : T(0);
    O* row = out + i * m;
    for (int64_t j = 0; j < m; ++j) {
      const Box<T> bj{bx1[j], by1[j], bx2[j], by2[j]};
      row[j] = static_cast<O>(pairwise_overlap(kMode, ai, bj, area_a, barea[j], angle_a, bangle[j], eps));
    }
  }
}

template <typename T, typename O, IouMode kMode>
void pairwise_all(PairwiseProblem& p) {
  const T* a = p.a.data_ptr<T>();
  const T* b = p.b.data_ptr<T>();
  O* out = p.out.data_ptr<O>();
  const int64_t n = p.n, m = p.m, batch = p.batch;
  const T eps = static_cast<T>(p.eps);
  const BoxFormat fmt = p.fmt;
  // b's columns for each distinct b batch entry (one when b is shared by the whole batch).
  const int64_t b_entries = p.b_batch_stride == 0 ? 1 : batch;
  std::vector<T> cols(static_cast<size_t>(b_entries * 6 * m));
  at::parallel_for(0, b_entries, 1, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      const T* be = b + e * p.b_batch_stride;
      T* c = cols.data() + e * 6 * m;
      for (int64_t j = 0; j < m; ++j) {
        T area_b;
        const Box<T> bj = load_corners(be + 4 * j, fmt, area_b);
        c[j] = bj.x1, c[m + j] = bj.y1, c[2 * m + j] = bj.x2, c[3 * m + j] = bj.y2, c[4 * m + j] = area_b;
        c[5 * m + j] = kMode == IouMode::CIoU ? aspect_angle(bj) : T(0);
      }
    }
  });
  // Parallel over (batch, row) pairs so a batch of few rows (SSD: 20 objects x 8732 priors) still uses
  // every thread; each task covers at least ~32k outputs to amortise scheduling.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(m, 1));
  at::parallel_for(0, batch * n, grain, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t e = begin / n, r0 = begin % n;
      const int64_t r1 = std::min(n, r0 + (end - begin));
      const T* ce = cols.data() + (p.b_batch_stride == 0 ? 0 : e) * 6 * m;
      const T* bcol[6] = {ce, ce + m, ce + 2 * m, ce + 3 * m, ce + 4 * m, ce + 5 * m};
      pairwise_rows<T, O, kMode>(a + e * p.a_batch_stride, fmt, bcol, out + e * n * m, r0, r1, m, eps);
      begin += r1 - r0;
    }
  });
}

at::Tensor box_overlap_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps,
                           c10::string_view fmt) {
  PairwiseProblem p = prepare_pairwise(boxes1, boxes2, mode, eps, fmt, /*allocate_out=*/false);
  p.out = empty_large_cpu({p.batch, p.n, p.m}, p.a.options().dtype(p.out_dtype));
  if (p.out.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_overlap_cpu", [&] {
      dispatch_iou_mode(p.mode, [&](auto mode) {
        if (p.out_dtype == p.a.scalar_type())
          pairwise_all<scalar_t, scalar_t, decltype(mode)::value>(p);
        else  // integer boxes: float64 arithmetic, float32 output
          pairwise_all<scalar_t, float, decltype(mode)::value>(p);
      });
    });
  }
  return finish_pairwise(p);
}

template <typename T, IouMode kMode>
void aligned_all(AlignedProblem& p) {
  const T* a = p.a.data_ptr<T>();
  const T* b = p.b.data_ptr<T>();
  T* out = p.out.data_ptr<T>();
  const T eps = static_cast<T>(p.eps);
  at::parallel_for(0, p.count, 16384, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = aligned_overlap(kMode, load_box(a + 4 * i), load_box(b + 4 * i), eps);
  });
}

at::Tensor box_iou_aligned_cpu(const at::Tensor& boxes1, const at::Tensor& boxes2, c10::string_view mode, double eps) {
  AlignedProblem p = prepare_aligned(boxes1, boxes2, mode, eps);
  AT_DISPATCH_FLOATING_TYPES(p.a.scalar_type(), "box_iou_aligned_cpu", [&] {
    dispatch_iou_mode(p.mode, [&](auto mode) { aligned_all<scalar_t, decltype(mode)::value>(p); });
  });
  return finish_aligned(p);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("box_overlap", &detops::box_overlap_cpu);
  m.impl("box_iou_aligned", &detops::box_iou_aligned_cpu);
}
