// The greedy sweep at the heart of the CPU NMS kernels (cpu/nms.cpp), and the candidate order it runs in.
//
// Boxes already in rank order (decreasing score, ties by lower id) are stored column-wise (x1, y1, x2, y2,
// area); each kept box marks the later boxes it overlaps with a branch-free loop the compiler vectorises,
// and every few kept boxes the survivors are compacted so that clustered inputs (most boxes suppressed
// early) stop paying for the dead ones. For many boxes and a non-negative threshold a second sweep prunes
// in space (boxes sorted by x1) and gives the same answer. A single large sweep is split over the threads
// when the caller is not already parallel.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "box_math.h"
#include "cpu/radix_sort.h"
#include "cpu/target_clones.h"
#include "nms_geometry.h"
#include "ordered_key.h"

namespace detops {

// A candidate: its score and an id (the box index, a prior index, or a position in a sorted array).
template <typename T>
struct Cand {
  T score;
  int64_t id;
};

// Rank order: decreasing score, ties by lower id.
template <typename T>
inline bool rank_before(const Cand<T>& a, const Cand<T>& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}
// The same as a function object: std::sort inlines it (a function pointer costs an indirect call per
// comparison).
template <typename T>
struct RankBefore {
  bool operator()(const Cand<T>& a, const Cand<T>& b) const { return rank_before(a, b); }
};

// Sorts candidates (in increasing id order, no NaN score) by rank: stably by decreasing score, so equal scores
// keep increasing ids, which is the rank's tie rule.
template <typename T>
void sort_by_rank(std::vector<Cand<T>>& v) {
  if (v.size() < kRadixMin) {
    std::sort(v.begin(), v.end(), RankBefore<T>{});
    return;
  }
  using Key = typename OrderedKey<T>::type;
  radix_sort_stable<T>(v, [](const Cand<T>& c) { return static_cast<Key>(~OrderedKey<T>::of(c.score)); });
}

// A removed flag as wide as a coordinate: the sweeps then vectorise eight floats (or four doubles) with
// their flags in one register each, with no byte packing, and leave a scalar tail of at most 7. A byte
// flag would make the vector step 32 boxes wide, and small categories (a few hundred boxes) would spend a
// good part of their sweep in the scalar tail.
template <typename T>
using Flag = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// Column-wise boxes in rank order, with the id each one reports when kept; reused across calls of a thread.
// The candidate store of the axis-aligned geometry: the kernels of cpu/multiclass_nms.h and cpu/soft_nms.h
// take it or cpu/rotated.cpp's RotatedCandidates, which has the same members.
template <typename T>
struct Columns {
  using Geo = AxisAligned<T>;
  std::vector<T> x1, y1, x2, y2, ar;
  std::vector<int64_t> id;
  std::vector<Flag<T>> removed;
  void resize(int64_t n) {
    const size_t m = static_cast<size_t>(n);
    if (x1.size() < m)
      x1.resize(m), y1.resize(m), x2.resize(m), y2.resize(m), ar.resize(m), id.resize(m), removed.resize(m);
  }
  void set(int64_t k, const T* box, int64_t box_id) {
    x1[k] = box[0], y1[k] = box[1], x2[k] = box[2], y2[k] = box[3];
    ar[k] = area(Box<T>{box[0], box[1], box[2], box[3]});
    id[k] = box_id;
    removed[k] = 0;
  }
  // Greedy NMS over the first n entries (run_nms below).
  int64_t sweep(int64_t n, T thr, int64_t max_keep, int64_t* keep);
  // Soft-NMS' access: entry k as one box, its IoU with entry j, and entry j moved to slot w <= j.
  AreaBox<T> get(int64_t k) const { return {Box<T>{x1[k], y1[k], x2[k], y2[k]}, ar[k]}; }
  T overlap(const AreaBox<T>& a, int64_t j) const {
    return iou(a.box, Box<T>{x1[j], y1[j], x2[j], y2[j]}, a.area, ar[j]);
  }
  void move(int64_t w, int64_t j) {
    x1[w] = x1[j], y1[w] = y1[j], x2[w] = x2[j], y2[w] = y2[j], ar[w] = ar[j];
    id[w] = id[j];
  }
};

// Marks removed[j] for j in [begin, end) whose IoU with box a (area aa) is > thr. Branch-free, so it
// vectorises (an AVX2 clone too: cpu/target_clones.h).
template <typename T>
DETOPS_TARGET_CLONES int64_t suppress_sweep(const T* __restrict__ x1, const T* __restrict__ y1,
                                            const T* __restrict__ x2, const T* __restrict__ y2,
                                            const T* __restrict__ ar, Flag<T>* __restrict__ removed, T ax1, T ay1,
                                            T ax2, T ay2, T aa, T thr, int64_t begin, int64_t end) {
  const Box<T> a{ax1, ay1, ax2, ay2};
  Flag<T> dead = 0;
  for (int64_t j = begin; j < end; ++j) {
    const Box<T> b{x1[j], y1[j], x2[j], y2[j]};
    const Flag<T> r = removed[j] | static_cast<Flag<T>>(iou_no_nan(a, b, aa, ar[j]) > thr);
    removed[j] = r;
    dead += r;
  }
  return dead;  // how many of [begin, end) are removed now
}

template <typename T>
inline int64_t suppress_range(const Columns<T>& c, Flag<T>* removed, const Box<T>& a, T aa, T thr, int64_t begin,
                              int64_t end) {
  return suppress_sweep<T>(c.x1.data(), c.y1.data(), c.x2.data(), c.y2.data(), c.ar.data(), removed, a.x1, a.y1, a.x2,
                           a.y2, aa, thr, begin, end);
}

// Greedy NMS over the first n entries of c (rank order). Writes the ids of kept boxes, in order, to keep and
// returns how many; stops after max_keep. Sweeps longer than kParallelSweep are split over the threads
// (only when not already inside a parallel region: batched calls are parallel over categories instead).
constexpr int64_t kParallelSweep = 1 << 15;

template <typename T>
int64_t greedy_nms(Columns<T>& c, int64_t n, T thr, int64_t max_keep, int64_t* keep) {
  int64_t len = n, kept = 0;
  const bool may_split = !at::in_parallel_region() && at::get_num_threads() > 1;
  int64_t i = 0;
  while (i < len && kept < max_keep) {
    if (c.removed[i]) {
      ++i;
      continue;
    }
    keep[kept++] = c.id[i];
    const Box<T> a{c.x1[i], c.y1[i], c.x2[i], c.y2[i]};
    const T aa = c.ar[i];
    Flag<T>* removed = c.removed.data();
    int64_t dead = 0;
    if (may_split && len - i > kParallelSweep) {
      std::atomic<int64_t> dead_all{0};
      at::parallel_for(i + 1, len, kParallelSweep / 2,
                       [&](int64_t b, int64_t e) { dead_all.fetch_add(suppress_range(c, removed, a, aa, thr, b, e)); });
      dead = dead_all.load();
    } else {
      dead = suppress_range(c, removed, a, aa, thr, i + 1, len);
    }
    ++i;
    if (2 * dead > len - i && len - i > 64) {
      // Most of what is left is dead: move the survivors to the front (the processed prefix goes too), so
      // the following sweeps touch only live boxes. Amortised: each compaction at least halves len.
      int64_t w = 0;
      for (int64_t j = i; j < len; ++j) {
        if (removed[j]) continue;
        c.x1[w] = c.x1[j], c.y1[w] = c.y1[j], c.x2[w] = c.x2[j], c.y2[w] = c.y2[j], c.ar[w] = c.ar[j];
        c.id[w] = c.id[j];
        removed[w] = 0;
        ++w;
      }
      len = w;
      i = 0;
    }
  }
  return kept;
}

// The same greedy NMS with the sweeps pruned in space, for large n and iou_threshold >= 0 (where a pair that
// does not intersect is never suppressed: its IoU is 0 or NaN). The boxes are re-sorted by x1, with a prefix
// maximum of x2: every box that can intersect box a lies in the contiguous range [first with prefix max x2 >
// a.x1, first with x1 >= a.x2), and both ends are binary searches. Sparse inputs sweep a small fraction of
// the boxes; results are identical to greedy_nms (the skipped pairs have exactly zero intersection).
template <typename T>
struct XSorted {
  std::vector<T> x1, y1, x2, y2, ar, pmx2;
  std::vector<int32_t> rank, pos_of_rank;
  std::vector<Flag<T>> removed;
};

template <typename T>
DETOPS_TARGET_CLONES void suppress_ranked(const T* __restrict__ x1, const T* __restrict__ y1, const T* __restrict__ x2,
                                          const T* __restrict__ y2, const T* __restrict__ ar,
                                          const int32_t* __restrict__ rank, Flag<T>* __restrict__ removed, T ax1, T ay1,
                                          T ax2, T ay2, T aa, T thr, int32_t r, int64_t begin, int64_t end) {
  const Box<T> a{ax1, ay1, ax2, ay2};
  for (int64_t j = begin; j < end; ++j) {
    const Box<T> b{x1[j], y1[j], x2[j], y2[j]};
    removed[j] |= static_cast<Flag<T>>((rank[j] > r) & (iou_no_nan(a, b, aa, ar[j]) > thr));
  }
}

template <typename T>
int64_t greedy_nms_xsorted(const Columns<T>& c, int64_t n, T thr, int64_t max_keep, int64_t* keep) {
  XSorted<T> s;
  std::vector<int32_t> perm(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) perm[k] = static_cast<int32_t>(k);
  // By x1, ties by rank: perm starts in rank order and the sort is stable.
  radix_sort_stable<T>(perm, [&](int32_t k) { return OrderedKey<T>::of(c.x1[k]); });
  s.x1.resize(n), s.y1.resize(n), s.x2.resize(n), s.y2.resize(n), s.ar.resize(n), s.pmx2.resize(n);
  s.rank.resize(n), s.pos_of_rank.resize(n), s.removed.assign(n, 0);
  for (int64_t q = 0; q < n; ++q) {
    const int32_t k = perm[q];
    s.x1[q] = c.x1[k], s.y1[q] = c.y1[k], s.x2[q] = c.x2[k], s.y2[q] = c.y2[k], s.ar[q] = c.ar[k];
    s.rank[q] = k;
    s.pos_of_rank[k] = static_cast<int32_t>(q);
    s.pmx2[q] = q == 0 ? s.x2[q] : (s.pmx2[q - 1] < s.x2[q] ? s.x2[q] : s.pmx2[q - 1]);
  }
  int64_t kept = 0;
  for (int32_t r = 0; r < n && kept < max_keep; ++r) {
    const int64_t q = s.pos_of_rank[r];
    if (s.removed[q]) continue;
    keep[kept++] = c.id[r];
    const T ax1 = s.x1[q], ax2 = s.x2[q];
    const int64_t lo =
        std::partition_point(s.pmx2.begin(), s.pmx2.end(), [&](T v) { return !(v > ax1); }) - s.pmx2.begin();
    const int64_t hi = std::partition_point(s.x1.begin(), s.x1.end(), [&](T v) { return v < ax2; }) - s.x1.begin();
    if (lo < hi)
      suppress_ranked<T>(s.x1.data(), s.y1.data(), s.x2.data(), s.y2.data(), s.ar.data(), s.rank.data(),
                         s.removed.data(), ax1, s.y1[q], ax2, s.y2[q], s.ar[q], thr, r, lo, hi);
  }
  return kept;
}

// Picks the pruned sweep where it is exact (thr >= 0) and pays for its sort.
constexpr int64_t kXSortedMin = 2048;
template <typename T>
int64_t run_nms(Columns<T>& c, int64_t n, T thr, int64_t max_keep, int64_t* keep) {
  if (n >= kXSortedMin && thr >= T(0) && n < (int64_t(1) << 31)) return greedy_nms_xsorted(c, n, thr, max_keep, keep);
  return greedy_nms(c, n, thr, max_keep, keep);
}

template <typename T>
int64_t Columns<T>::sweep(int64_t n, T thr, int64_t max_keep, int64_t* keep) {
  return run_nms(*this, n, thr, max_keep, keep);
}

}  // namespace detops
