// What every CUDA kernel file needs: the current stream, a device guard, block counts, launch checks.
// Kept to c10 headers: torch/extension.h costs minutes of compile time per .cu file.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace detops {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items, capped so huge n keeps a bounded grid.
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(b, 65535LL * 8)));
}

inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace cuda
}  // namespace detops
