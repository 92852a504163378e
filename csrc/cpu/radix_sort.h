// A stable least-significant-digit radix sort on OrderedKey (ordered_key.h) keys, for the sorts the CPU NMS
// kernels run on every call (candidates by rank, boxes by x1). Those sorts are a large share of an NMS call
// on many boxes, and a byte-wise scatter beats a comparison sort there.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "ordered_key.h"

namespace detops {

// Below this many items std::sort is as fast, and the callers use it instead.
constexpr size_t kRadixMin = 256;

// Sorts v stably by key(item), an unsigned OrderedKey<T>::type: a byte per pass, each pass a scatter by that
// byte's histogram; passes where every key shares the byte are skipped.
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

}  // namespace detops
