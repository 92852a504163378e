// CPU kernels of the NMS family (CUDA twin: cuda/nms.cu; reference: detops/reference/nms.py).
//
// The core is one greedy loop over boxes already in rank order, stored column-wise (x1, y1, x2, y2, area):
// each kept box marks the later boxes it overlaps in a byte mask with a branch-free loop the compiler
// vectorises, and every few kept boxes the survivors are compacted so that clustered inputs (most boxes
// suppressed early) stop paying for the dead ones. batched_nms and multiclass_nms run that loop once per
// category on a dynamic work queue over the threads; a single large nms splits its sweeps over the threads.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "box_math.h"
#include "ordered_key.h"
#include "cpu/vectorize.h"
#include "ops/nms.h"

namespace detops {
namespace {

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

// A removed flag as wide as a coordinate: the sweeps then vectorise eight floats (or four doubles) with
// their flags in one register each, with no byte packing, and leave a scalar tail of at most 7 (a byte
// flag made the vector step 32 boxes wide, and a category of 250 boxes spent a sixth of its sweep time in
// the scalar tail).
template <typename T>
using Flag = std::conditional_t<sizeof(T) == 8, int64_t, int32_t>;

// Column-wise boxes in rank order, with the id each one reports when kept; reused across calls of a thread.
template <typename T>
struct Columns {
  std::vector<T> x1, y1, x2, y2, ar;
  std::vector<int64_t> id;
  std::vector<Flag<T>> removed;
  void resize(int64_t n) {
    const size_t m = static_cast<size_t>(n);
    if (x1.size() < m) x1.resize(m), y1.resize(m), x2.resize(m), y2.resize(m), ar.resize(m), id.resize(m),
          removed.resize(m);
  }
  void set(int64_t k, const T* box, int64_t box_id) {
    x1[k] = box[0], y1[k] = box[1], x2[k] = box[2], y2[k] = box[3];
    ar[k] = area(Box<T>{box[0], box[1], box[2], box[3]});
    id[k] = box_id;
    removed[k] = 0;
  }
};

// Marks removed[j] for j in [begin, end) whose IoU with box a (area aa) is > thr. Branch-free, so it
// vectorises (an AVX2 clone too: cpu/vectorize.h).

template <typename T>
DETOPS_VECTOR_CLONES int64_t suppress_sweep(const T* __restrict__ x1, const T* __restrict__ y1,
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
inline int64_t suppress_range(const Columns<T>& c, Flag<T>* removed, const Box<T>& a, T aa, T thr,
                              int64_t begin, int64_t end) {
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
      at::parallel_for(i + 1, len, kParallelSweep / 2, [&](int64_t b, int64_t e) {
        dead_all.fetch_add(suppress_range(c, removed, a, aa, thr, b, e));
      });
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

// Stable least-significant-digit radix sort of v by key(item), an unsigned OrderedKey<T> (ordered_key.h): a
// byte per pass, each pass a scatter by that byte's histogram; passes where every key shares the byte are
// skipped. Used for the sorts NMS runs per call (by rank, by x1); it replaced std::sort, which was a quarter
// of batched_nms' time on 20k boxes and the largest part of nms' on 100k clustered boxes.
constexpr size_t kRadixMin = 256;  // below this std::sort is as fast
template <typename T, typename Item, typename KeyOf>
void radix_sort_stable(std::vector<Item>& v, const KeyOf& key) {
  using Key = typename OrderedKey<T>::type;
  constexpr int kBytes = static_cast<int>(sizeof(Key));
  const int64_t n = static_cast<int64_t>(v.size());
  std::vector<int64_t> count(static_cast<size_t>(kBytes) * 256, 0);
  for (const Item& item : v) {
    const Key k = key(item);
    for (int d = 0; d < kBytes; ++d) ++count[d * 256 + ((k >> (8 * d)) & 0xFF)];
  }
  std::vector<Item> other(v.size());
  for (int d = 0; d < kBytes; ++d) {
    int64_t* bucket = count.data() + d * 256;
    if (*std::max_element(bucket, bucket + 256) == n) continue;  // one value of this byte: order unchanged
    int64_t start = 0;
    for (int b = 0; b < 256; ++b) std::swap(start, bucket[b]), start += bucket[b];  // counts -> first slots
    for (const Item& item : v) other[bucket[(key(item) >> (8 * d)) & 0xFF]++] = item;
    v.swap(other);
  }
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
DETOPS_VECTOR_CLONES void suppress_ranked(const T* __restrict__ x1, const T* __restrict__ y1,
                                          const T* __restrict__ x2, const T* __restrict__ y2,
                                          const T* __restrict__ ar, const int32_t* __restrict__ rank,
                                          Flag<T>* __restrict__ removed, T ax1, T ay1, T ax2, T ay2, T aa, T thr,
                                          int32_t r, int64_t begin, int64_t end) {
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
    const int64_t lo = std::partition_point(s.pmx2.begin(), s.pmx2.end(), [&](T v) { return !(v > ax1); }) -
                       s.pmx2.begin();
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
  if (n >= kXSortedMin && thr >= T(0) && n < (int64_t(1) << 31))
    return greedy_nms_xsorted(c, n, thr, max_keep, keep);
  return greedy_nms(c, n, thr, max_keep, keep);
}

// Runs f(task, columns) for every task in [0, num_tasks) on a dynamic queue over the threads, so uneven
// tasks (one crowded class, many sparse ones) still balance.
template <typename T, typename F>
void parallel_tasks(int64_t num_tasks, const F& f) {
  if (num_tasks <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), num_tasks));
  at::parallel_for(0, workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t w = wb; w < we; ++w) {
      Columns<T> cols;
      for (int64_t t = next.fetch_add(1); t < num_tasks; t = next.fetch_add(1)) f(t, cols);
    }
  });
}

at::Tensor to_index_tensor(const std::vector<int64_t>& v, const at::Tensor& like) {
  at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, like.options().dtype(at::kLong));
  if (!v.empty()) std::memcpy(out.data_ptr<int64_t>(), v.data(), v.size() * sizeof(int64_t));
  return out;
}

// ---- nms ----

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

// The boxes that can be kept (no NaN score or coordinate), sorted by rank: decreasing score, ties by index.
template <typename T>
std::vector<Cand<T>> ranked_candidates(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  std::vector<Cand<T>> order;
  order.reserve(static_cast<size_t>(p.n));
  for (int64_t i = 0; i < p.n; ++i)
    if (nms_valid(boxes + 4 * i, scores[i])) order.push_back({scores[i], i});
  sort_by_rank(order);
  return order;
}

template <typename T>
std::vector<int64_t> nms_impl(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const std::vector<Cand<T>> order = ranked_candidates<T>(p);
  const int64_t n = static_cast<int64_t>(order.size());
  Columns<T> cols;
  cols.resize(n);
  at::parallel_for(0, n, 4096, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) cols.set(k, boxes + 4 * order[k].id, order[k].id);
  });
  std::vector<int64_t> keep(static_cast<size_t>(n));
  keep.resize(static_cast<size_t>(run_nms(cols, n, threshold_as<T>(p.iou_threshold), n, keep.data())));
  return keep;
}

at::Tensor nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  NmsProblem p = prepare_nms(boxes, scores, iou_threshold);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "nms_cpu", [&] { keep = nms_impl<scalar_t>(p); });
  return to_index_tensor(keep, boxes);
}

// ---- batched_nms ----

// One sort by rank over all boxes, then a stable counting sort into categories: each category is a contiguous
// segment in rank order, and the kept flags, read back in rank order, are already the answer's order.
template <typename T>
std::vector<int64_t> batched_nms_impl(const NmsProblem& p) {
  const T* boxes = p.boxes.data_ptr<T>();
  const int64_t* idxs = p.idxs.data_ptr<int64_t>();
  const std::vector<Cand<T>> order = ranked_candidates<T>(p);
  const int64_t n = static_cast<int64_t>(order.size());
  if (n == 0) return {};
  // Dense category numbers: an offset when the categories span a small range, else ranks among the distinct
  // values (any int64 category works, negative ones included).
  std::vector<int64_t> dense(static_cast<size_t>(n));
  int64_t lo = idxs[order[0].id], hi = lo;
  for (int64_t r = 0; r < n; ++r) {
    const int64_t c = idxs[order[r].id];
    lo = std::min(lo, c), hi = std::max(hi, c);
  }
  int64_t ncls;
  if (static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo) < static_cast<uint64_t>(4 * n + 1024)) {
    ncls = hi - lo + 1;
    for (int64_t r = 0; r < n; ++r) dense[r] = idxs[order[r].id] - lo;
  } else {
    std::vector<int64_t> distinct(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) distinct[r] = idxs[order[r].id];
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    ncls = static_cast<int64_t>(distinct.size());
    for (int64_t r = 0; r < n; ++r)
      dense[r] = std::lower_bound(distinct.begin(), distinct.end(), idxs[order[r].id]) - distinct.begin();
  }
  std::vector<int64_t> start(static_cast<size_t>(ncls + 1), 0);
  for (int64_t r = 0; r < n; ++r) ++start[dense[r] + 1];
  for (int64_t c = 0; c < ncls; ++c) start[c + 1] += start[c];
  std::vector<int64_t> slot(static_cast<size_t>(n));  // rank positions, grouped by category, rank order within
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t r = 0; r < n; ++r) slot[fill[dense[r]]++] = r;
  }
  // Non-empty categories, largest first, so the queue's tail is short tasks.
  std::vector<int64_t> segs;
  for (int64_t c = 0; c < ncls; ++c)
    if (start[c + 1] > start[c]) segs.push_back(c);
  std::stable_sort(segs.begin(), segs.end(),
                   [&](int64_t a, int64_t b) { return start[a + 1] - start[a] > start[b + 1] - start[b]; });
  std::vector<uint8_t> kept(static_cast<size_t>(n), 0);
  const T thr = threshold_as<T>(p.iou_threshold);
  parallel_tasks<T>(static_cast<int64_t>(segs.size()), [&](int64_t t, Columns<T>& cols) {
    const int64_t c = segs[t], b = start[c], len = start[c + 1] - b;
    cols.resize(len);
    for (int64_t k = 0; k < len; ++k) cols.set(k, boxes + 4 * order[slot[b + k]].id, slot[b + k]);
    std::vector<int64_t> keep(static_cast<size_t>(len));
    const int64_t nk = run_nms(cols, len, thr, len, keep.data());
    for (int64_t k = 0; k < nk; ++k) kept[keep[k]] = 1;  // distinct ranks: no two tasks write one byte
  });
  std::vector<int64_t> out;
  for (int64_t r = 0; r < n; ++r)
    if (kept[r]) out.push_back(order[r].id);
  return out;
}

at::Tensor batched_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                           double iou_threshold) {
  NmsProblem p = prepare_batched_nms(boxes, scores, idxs, iou_threshold);
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "batched_nms_cpu", [&] { keep = batched_nms_impl<scalar_t>(p); });
  return to_index_tensor(keep, boxes);
}

// ---- multiclass_nms ----

template <typename T>
void multiclass_impl(MulticlassProblem& p) {
  const int64_t B = p.batch, P = p.priors, C = p.classes, K = p.max_detections, M = p.max_candidates;
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  const T score_thr = threshold_as<T>(p.score_threshold);
  const T iou_thr = threshold_as<T>(p.iou_threshold);
  auto box_of = [&](int64_t b, int64_t prior, int64_t c) {
    return p.per_class_boxes ? boxes + ((b * P + prior) * C + c) * 4 : boxes + (b * P + prior) * 4;
  };
  // Per (image, class): the kept prior indices and their scores, at most K of them (only the K best of a
  // class can reach its image's top K).
  std::vector<std::vector<Cand<T>>> kept(static_cast<size_t>(B * C));
  parallel_tasks<T>(K > 0 ? B * C : 0, [&](int64_t t, Columns<T>& cols) {
    const int64_t b = t / C, c = t % C;
    if (c == p.background_class) return;
    std::vector<Cand<T>> cand;
    const T* s = scores + b * P * C + c;
    for (int64_t prior = 0; prior < P; ++prior) {
      const T v = s[prior * C];
      if (v > score_thr && nms_valid(box_of(b, prior, c), v)) cand.push_back({v, prior});
    }
    if (cand.empty()) return;
    if (static_cast<int64_t>(cand.size()) > M) {
      std::nth_element(cand.begin(), cand.begin() + M, cand.end(), RankBefore<T>{});
      cand.resize(static_cast<size_t>(M));
      std::sort(cand.begin(), cand.end(), RankBefore<T>{});
    } else {
      sort_by_rank(cand);  // still in increasing prior order, as sort_by_rank needs
    }
    const int64_t n = static_cast<int64_t>(cand.size());
    cols.resize(n);
    for (int64_t k = 0; k < n; ++k) cols.set(k, box_of(b, cand[k].id, c), k);
    std::vector<int64_t> keep(static_cast<size_t>(std::min(n, K)));
    const int64_t nk = run_nms(cols, n, iou_thr, K, keep.data());
    auto& out = kept[t];
    out.resize(static_cast<size_t>(nk));
    for (int64_t k = 0; k < nk; ++k) out[k] = cand[keep[k]];
  });
  T* ob = p.out_boxes.data_ptr<T>();
  T* os = p.out_scores.data_ptr<T>();
  int64_t* ol = p.out_labels.data_ptr<int64_t>();
  int64_t* oc = p.out_counts.data_ptr<int64_t>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      // Image-level rank: decreasing score, then lower class, then lower prior index.
      struct Det {
        T score;
        int64_t cls, prior;
      };
      std::vector<Det> dets;
      for (int64_t c = 0; c < C; ++c)
        for (const auto& e : kept[b * C + c]) dets.push_back({e.score, c, e.id});
      auto before = [](const Det& x, const Det& y) {
        if (x.score != y.score) return x.score > y.score;
        return x.cls != y.cls ? x.cls < y.cls : x.prior < y.prior;
      };
      const int64_t cnt = std::min<int64_t>(K, static_cast<int64_t>(dets.size()));
      std::partial_sort(dets.begin(), dets.begin() + cnt, dets.end(), before);
      for (int64_t k = 0; k < K; ++k) {
        T* box = ob + (b * K + k) * 4;
        if (k < cnt) {
          const T* src = box_of(b, dets[k].prior, dets[k].cls);
          box[0] = src[0], box[1] = src[1], box[2] = src[2], box[3] = src[3];
          os[b * K + k] = dets[k].score;
          ol[b * K + k] = dets[k].cls;
        } else {
          box[0] = box[1] = box[2] = box[3] = T(0);
          os[b * K + k] = T(0);
          ol[b * K + k] = -1;
        }
      }
      oc[b] = cnt;
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> multiclass_nms_cpu(
    const at::Tensor& boxes, const at::Tensor& scores, double score_threshold, double iou_threshold,
    int64_t max_detections, int64_t background_class, int64_t max_candidates_per_class) {
  MulticlassProblem p = prepare_multiclass(boxes, scores, score_threshold, iou_threshold, max_detections,
                                           background_class, max_candidates_per_class);
  AT_DISPATCH_FLOATING_TYPES(p.scores.scalar_type(), "multiclass_nms_cpu", [&] { multiclass_impl<scalar_t>(p); });
  return finish_multiclass(p);
}

// ---- soft_nms ----

template <typename T>
void soft_nms_impl(const SoftNmsProblem& p, std::vector<int64_t>& keep, std::vector<T>& kept_scores) {
  const T* boxes = p.boxes.data_ptr<T>();
  const T* scores = p.scores.data_ptr<T>();
  Columns<T> c;
  c.resize(p.n);
  std::vector<T> cur;
  int64_t n = 0;
  for (int64_t i = 0; i < p.n; ++i)
    if (nms_valid(boxes + 4 * i, scores[i])) {
      c.set(n, boxes + 4 * i, i);
      cur.push_back(scores[i]);
      ++n;
    }
  const T thr = static_cast<T>(p.iou_threshold), sigma = static_cast<T>(p.sigma);
  const T min_score = static_cast<T>(p.score_threshold);
  // The remaining boxes stay in index order, so the first maximum found is the lowest index among ties.
  while (n > 0) {
    int64_t best = 0;
    for (int64_t j = 1; j < n; ++j)
      if (cur[j] > cur[best]) best = j;
    if (!(cur[best] >= min_score)) break;
    keep.push_back(c.id[best]);
    kept_scores.push_back(cur[best]);
    const Box<T> a{c.x1[best], c.y1[best], c.x2[best], c.y2[best]};
    const T aa = c.ar[best];
    int64_t w = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == best) continue;
      const Box<T> b{c.x1[j], c.y1[j], c.x2[j], c.y2[j]};
      const T ov = iou(a, b, aa, c.ar[j]);
      const T s = cur[j] * soft_nms_weight(p.method, ov, thr, sigma);
      if (!(s >= min_score)) continue;  // dropped for good: scores only decay
      c.x1[w] = c.x1[j], c.y1[w] = c.y1[j], c.x2[w] = c.x2[j], c.y2[w] = c.y2[j], c.ar[w] = c.ar[j];
      c.id[w] = c.id[j];
      cur[w] = s;
      ++w;
    }
    n = w;
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                double iou_threshold, double sigma, double score_threshold,
                                                c10::string_view method) {
  SoftNmsProblem p = prepare_soft_nms(boxes, scores, iou_threshold, sigma, score_threshold, method);
  at::Tensor keep_t, scores_t;
  AT_DISPATCH_FLOATING_TYPES(p.boxes.scalar_type(), "soft_nms_cpu", [&] {
    std::vector<int64_t> keep;
    std::vector<scalar_t> ks;
    soft_nms_impl<scalar_t>(p, keep, ks);
    keep_t = to_index_tensor(keep, boxes);
    scores_t = at::empty({static_cast<int64_t>(ks.size())}, p.scores.options());
    if (!ks.empty()) std::memcpy(scores_t.data_ptr<scalar_t>(), ks.data(), ks.size() * sizeof(scalar_t));
  });
  return {keep_t, scores_t.to(p.out_dtype)};
}

}  // namespace
}  // namespace detops

TORCH_LIBRARY_IMPL(detops, CPU, m) {
  m.impl("nms", &detops::nms_cpu);
  m.impl("batched_nms", &detops::batched_nms_cpu);
  m.impl("multiclass_nms", &detops::multiclass_nms_cpu);
  m.impl("soft_nms", &detops::soft_nms_cpu);
}
