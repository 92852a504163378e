// CUDA kernels of the sigmoid focal loss and its closed-form backward (CPU twin: cpu/focal_loss.cpp; formulas:
// ops/focal_loss.h; reference: detops/reference/focal_loss.py). Elementwise grid-stride loops; a reduction
// writes one double per kFocalBlock elements and a one-block kernel adds them in index order: deterministic
// (no atomics) and without a host synchronisation.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/launch.cuh"
#include "ops/focal_loss.h"

namespace detops {
namespace {

template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    focal_loss_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ t, scalar_t* __restrict__ out,
                      int64_t n, double alpha, double gamma) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t a = static_cast<acc_t>(alpha), g = static_cast<acc_t>(gamma);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = static_cast<scalar_t>(focal_loss_value<acc_t>(x[i], t[i], a, g));
}

// One block per kFocalBlock elements: each thread adds a strided slice in double, then a fixed tree in shared
// memory adds the threads, so a block's sum is the same on every run.
template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    focal_partial_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ t, double* __restrict__ partial,
                         int64_t n, double alpha, double gamma) {
  using acc_t = at::opmath_type<scalar_t>;
  __shared__ double s[cuda::kThreads];
  const acc_t a = static_cast<acc_t>(alpha), g = static_cast<acc_t>(gamma);
  const int64_t begin = blockIdx.x * kFocalBlock;
  const int64_t end = min(n, begin + kFocalBlock);
  double sum = 0;
  for (int64_t i = begin + threadIdx.x; i < end; i += cuda::kThreads) sum += focal_loss_value<acc_t>(x[i], t[i], a, g);
  s[threadIdx.x] = sum;
  __syncthreads();
  for (int half = cuda::kThreads / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) s[threadIdx.x] += s[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

// The blocks' sums in index order (one thread: there are n / 4096 of them), divided by n for the mean
// (NaN for n = 0, as torch.mean gives).
template <typename scalar_t>
__global__ void __launch_bounds__(1) focal_total_kernel(const double* __restrict__ partial, int64_t blocks, int64_t n,
                                                        bool mean, scalar_t* __restrict__ out) {
  double total = 0;
  for (int64_t b = 0; b < blocks; ++b) total += partial[b];
  if (mean) total /= static_cast<double>(n);
  out[0] = static_cast<scalar_t>(total);
}

template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    focal_backward_kernel(const scalar_t* __restrict__ go, const scalar_t* __restrict__ x,
                          const scalar_t* __restrict__ t, scalar_t* __restrict__ out, int64_t n, double alpha,
                          double gamma, bool each, bool mean) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t a = static_cast<acc_t>(alpha), g = static_cast<acc_t>(gamma);
  // The one output gradient of a reduction is read on the device: no host round trip.
  acc_t scale = 0;
  if (!each) {
    scale = static_cast<acc_t>(go[0]);
    if (mean) scale /= static_cast<acc_t>(n);
  }
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const acc_t gi = each ? static_cast<acc_t>(go[i]) : scale;
    out[i] = static_cast<scalar_t>(gi * focal_loss_grad<acc_t>(x[i], t[i], a, g));
  }
}

at::Tensor sigmoid_focal_loss_cuda(const at::Tensor& inputs, const at::Tensor& targets, double alpha, double gamma,
                                   c10::string_view reduction) {
  FocalProblem p = prepare_sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction);
  const c10::cuda::CUDAGuard guard(p.inputs.device());  // after prepare_*'s device checks
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.inputs.scalar_type(), "sigmoid_focal_loss_cuda", [&] {
    const scalar_t* x = p.inputs.data_ptr<scalar_t>();
    const scalar_t* t = p.targets.data_ptr<scalar_t>();
    scalar_t* out = p.out.data_ptr<scalar_t>();
    if (p.reduction == Reduction::kNone) {
      if (p.n == 0) return;
      focal_loss_kernel<scalar_t>
          <<<cuda::blocks_for(p.n), cuda::kThreads, 0, cuda::stream()>>>(x, t, out, p.n, p.alpha, p.gamma);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    const int64_t blocks = (p.n + kFocalBlock - 1) / kFocalBlock;
    TORCH_CHECK(blocks <= 2147483647LL, "inputs has too many elements: ", p.n);
    at::Tensor partial = at::empty({std::max<int64_t>(blocks, 1)}, p.inputs.options().dtype(at::kDouble));
    if (blocks > 0) {
      focal_partial_kernel<scalar_t><<<static_cast<unsigned>(blocks), cuda::kThreads, 0, cuda::stream()>>>(
          x, t, partial.data_ptr<double>(), p.n, p.alpha, p.gamma);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    focal_total_kernel<scalar_t>
        <<<1, 1, 0, cuda::stream()>>>(partial.data_ptr<double>(), blocks, p.n, p.reduction == Reduction::kMean, out);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.out;
}

at::Tensor sigmoid_focal_loss_backward_cuda(const at::Tensor& grad, const at::Tensor& inputs, const at::Tensor& targets,
                                            double alpha, double gamma, c10::string_view reduction) {
  FocalBackwardProblem p = prepare_sigmoid_focal_loss_backward(grad, inputs, targets, alpha, gamma, reduction);
  const c10::cuda::CUDAGuard guard(p.inputs.device());  // after prepare_*'s device checks
  if (p.n == 0) return p.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.inputs.scalar_type(), "sigmoid_focal_loss_backward_cuda",
                                  [&] {
    focal_backward_kernel<scalar_t><<<cuda::blocks_for(p.n), cuda::kThreads, 0, cuda::stream()>>>(
        p.grad.data_ptr<scalar_t>(), p.inputs.data_ptr<scalar_t>(), p.targets.data_ptr<scalar_t>(),
        p.out.data_ptr<scalar_t>(), p.n, p.alpha, p.gamma, p.reduction == Reduction::kNone,
        p.reduction == Reduction::kMean);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.out;
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CUDA, m) {
  m.impl("sigmoid_focal_loss", &detops::sigmoid_focal_loss_cuda);
  m.impl("sigmoid_focal_loss_backward", &detops::sigmoid_focal_loss_backward_cuda);
}
