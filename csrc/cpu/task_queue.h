// A dynamic work queue over ATen's CPU threads, for many tasks of uneven size (the NMS kernels' categories:
// one crowded class among many sparse ones), where at::parallel_for's static ranges would leave threads idle.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace detops {

// Runs f(task, state) for every task in [0, num_tasks), each worker thread taking the next task as it
// finishes one. State is default-constructed once per worker and handed to each of its tasks, so scratch
// buffers are reused across tasks instead of allocated per task.
template <typename State, typename F>
void parallel_tasks(int64_t num_tasks, const F& f) {
  if (num_tasks <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), num_tasks));
  at::parallel_for(0, workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t w = wb; w < we; ++w) {
      State state;
      for (int64_t t = next.fetch_add(1); t < num_tasks; t = next.fetch_add(1)) f(t, state);
    }
  });
}

}  // namespace detops
