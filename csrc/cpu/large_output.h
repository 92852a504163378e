// Output buffers for CPU kernels that write many megabytes once (pairwise matrices).
//
// A fresh 64 MB tensor costs more in page faults (16k pages of 4 KiB, each zeroed by the kernel on first
// touch) than the IoU kernel takes to fill it. Backing large outputs with transparent huge pages (2 MiB)
// makes the faults 512 times fewer. torch does this for every allocation when THP_MEM_ALLOC_ENABLE=1; here
// it is done for these outputs only. Where huge pages are unavailable madvise is a no-op: ordinary pages.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/accumulate.h>

#include <cstdlib>

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace detops {

inline at::Tensor empty_large_cpu(at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t nbytes = static_cast<size_t>(c10::multiply_integers(sizes)) * options.dtype().itemsize();
#ifdef __linux__
  if (nbytes >= 4 * kHugePage) {
    const size_t len = (nbytes + kHugePage - 1) / kHugePage * kHugePage;
    void* ptr = nullptr;
    if (posix_memalign(&ptr, kHugePage, len) == 0) {
      madvise(ptr, len, MADV_HUGEPAGE);
      return at::from_blob(ptr, sizes, [](void* p) { std::free(p); }, options);
    }
  }
#endif
  return at::empty(sizes, options);
}

}  // namespace detops
