// CUDA kernels of box coding (CPU twin: cpu/coding.cpp; reference: detops/reference/coding.py).
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>

#include "box_math.h"
#include "cuda/launch.cuh"
#include "ops/coding.h"

namespace detops {
namespace {

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    encode_kernel(const T* __restrict__ g, const T* __restrict__ a, T* __restrict__ out, int64_t count, int64_t period,
                  CodingWeights w) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    encode_box(load_box(g + 4 * i), load_box(a + 4 * (i % period)), w, out + 4 * i);
}

template <typename T>
__global__ void __launch_bounds__(cuda::kThreads)
    decode_kernel(const T* __restrict__ d, const T* __restrict__ a, T* __restrict__ out, int64_t count, int64_t period,
                  CodingWeights w, T clamp) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    decode_box(d + 4 * i, load_box(a + 4 * (i % period)), w, clamp, out + 4 * i);
}

at::Tensor encode_boxes_cuda(const at::Tensor& boxes, const at::Tensor& anchors, at::ArrayRef<double> weights) {
  CodingProblem p = prepare_coding(boxes, "boxes", anchors, weights);
  const c10::cuda::CUDAGuard guard(p.x.device());  // after prepare_*'s device checks
  if (p.count > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "encode_boxes_cuda", [&] {
      encode_kernel<scalar_t><<<cuda::blocks_for(p.count), cuda::kThreads, 0, cuda::stream()>>>(
          p.x.data_ptr<scalar_t>(), p.anchors.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(), p.count, p.period,
          p.weights);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_coding(p);
}

at::Tensor decode_boxes_cuda(const at::Tensor& deltas, const at::Tensor& anchors, at::ArrayRef<double> weights,
                             std::optional<double> clamp) {
  CodingProblem p = prepare_coding(deltas, "deltas", anchors, weights);
  const c10::cuda::CUDAGuard guard(p.x.device());  // after prepare_*'s device checks
  if (p.count > 0) {
    AT_DISPATCH_FLOATING_TYPES(p.x.scalar_type(), "decode_boxes_cuda", [&] {
      const auto c = static_cast<scalar_t>(clamp ? *clamp : std::numeric_limits<double>::infinity());
      decode_kernel<scalar_t><<<cuda::blocks_for(p.count), cuda::kThreads, 0, cuda::stream()>>>(
          p.x.data_ptr<scalar_t>(), p.anchors.data_ptr<scalar_t>(), p.out.data_ptr<scalar_t>(), p.count, p.period,
          p.weights, c);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return finish_coding(p);
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("encode_boxes", &detops::encode_boxes_cuda);
  m.impl("decode_boxes", &detops::decode_boxes_cuda);
}
