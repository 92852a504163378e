// Function multiversioning for the CPU kernels' hot loops. The default build flags allow only SSE2 on
// x86-64; a loop marked DETOPS_TARGET_CLONES is also compiled for AVX2, and the loader picks the clone the
// CPU supports. The loops it marks are branch-free so either clone vectorises.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DETOPS_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DETOPS_TARGET_CLONES
#endif
