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

// Threads per block of the grid-stride kernels. Every kernel declares __launch_bounds__ with the block size
// it is launched with, so ptxas never gives it more registers than that block may use (65536 per SM on
// sm_70 to sm_90); scripts/kernel_resources.py checks the ptxas report (csrc/cuda/ptxas_sm90.log).
constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items, capped so huge n keeps a bounded grid.
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(b, 65535LL * 8)));
}

// Every entry point guards the device only after its prepare_* step: the dispatcher sends a call that mixes
// CPU and CUDA tensors to the CUDA kernel, and a guard built from a CPU argument would throw c10's
// "CUDAGuardImpl initialized with non-CUDA DeviceType" before the op's own "must be on the same device".
inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace cuda
}  // namespace detops
