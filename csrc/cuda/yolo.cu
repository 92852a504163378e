// CUDA kernels of YOLO candidate scoring (CPU twin: cpu/yolo.cpp; reference: detops/reference/yolo.py).
// One thread per row scores it with the shared best_class_of_row (ops/yolo.h); nonzero compacts the
// candidates in row order (its one host synchronisation sizes the output, as any data-dependent shape must);
// a second kernel writes each candidate's box, score and class.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/nonzero.h>
#include <torch/library.h>

#include <tuple>

#include "cuda/launch.cuh"
#include "ops/yolo.h"

namespace detops {
namespace {

// The row layout of YoloProblem, without its tensor: what the kernels take by value.
struct RowLayout {
  int64_t N, C, first_class, stride_b, stride_n, stride_d;
  bool objectness;

  __device__ int64_t offset(int64_t r) const { return (r / N) * stride_b + (r % N) * stride_n; }
};

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    score_rows_kernel(const T* __restrict__ pred, RowLayout layout, int64_t rows, T thr, T* __restrict__ best,
                      int64_t* __restrict__ label, bool* __restrict__ candidate) {
  for (int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    label[r] = best_class_of_row(pred + layout.offset(r), layout.stride_d, layout.C, layout.first_class,
                                 layout.objectness, thr, best[r]);
    candidate[r] = label[r] >= 0;
  }
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    write_candidates_kernel(const T* __restrict__ pred, RowLayout layout, const int64_t* __restrict__ rows, int64_t K,
                            const T* __restrict__ best, const int64_t* __restrict__ label, T* __restrict__ boxes,
                            T* __restrict__ scores, int64_t* __restrict__ labels) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < K;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = rows[i];
    scores[i] = best[r];
    labels[i] = label[r];
    center_size_to_corners<T, at::opmath_type<T>>(pred + layout.offset(r), layout.stride_d, boxes + 4 * i);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> yolo_candidates_cuda(const at::Tensor& prediction,
                                                                                double conf_thres, bool objectness) {
  const YoloProblem p = prepare_yolo_candidates(prediction, conf_thres, objectness);
  const c10::cuda::CUDAGuard guard(p.prediction.device());  // after prepare_*'s device checks
  const RowLayout layout{p.N, p.C, p.first_class, p.stride_b, p.stride_n, p.stride_d, p.objectness};
  const int64_t rows = p.B * p.N;
  at::Tensor best = at::empty({rows}, prediction.options());
  at::Tensor label = at::empty({rows}, prediction.options().dtype(at::kLong));
  at::Tensor candidate = at::empty({rows}, prediction.options().dtype(at::kBool));
  at::Tensor out_rows, boxes, scores, labels;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, prediction.scalar_type(), "yolo_candidates_cuda", [&] {
    const scalar_t thr = static_cast<scalar_t>(p.conf_thres);  // as `scores > conf_thres` compares, in T
    if (rows > 0) {
      score_rows_kernel<scalar_t><<<cuda::blocks_for(rows), cuda::kThreads, 0, cuda::stream()>>>(
          p.prediction.data_ptr<scalar_t>(), layout, rows, thr, best.data_ptr<scalar_t>(), label.data_ptr<int64_t>(),
          candidate.data_ptr<bool>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    out_rows = at::nonzero(candidate).view({-1});
    const int64_t K = out_rows.size(0);
    boxes = at::empty({K, 4}, prediction.options());
    scores = at::empty({K}, prediction.options());
    labels = at::empty({K}, label.options());
    if (K > 0) {
      write_candidates_kernel<scalar_t><<<cuda::blocks_for(K), cuda::kThreads, 0, cuda::stream()>>>(
          p.prediction.data_ptr<scalar_t>(), layout, out_rows.data_ptr<int64_t>(), K, best.data_ptr<scalar_t>(),
          label.data_ptr<int64_t>(), boxes.data_ptr<scalar_t>(), scores.data_ptr<scalar_t>(),
          labels.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {out_rows, boxes, scores, labels};
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) { m.impl("yolo_candidates", &detops::yolo_candidates_cuda); }
