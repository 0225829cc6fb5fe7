// Counting sort of element indices by an integer key, shared by the CPU kernels that reduce
// per group in a fixed order (region margins, superpixel pooling).
#pragma once
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace pcseg {

// Element indices grouped by key, ascending within a key; key r owns order[offsets[r],
// offsets[r + 1]). Keys must already be known to lie in [0, m).
struct KeyGroups {
  std::vector<int64_t> offsets;
  std::vector<int64_t> order;
};

inline KeyGroups group_by_key(const int64_t* key, int64_t n, int64_t m) {
  KeyGroups groups;
  groups.offsets.assign(m + 1, 0);
  groups.order.resize(n);
  for (int64_t i = 0; i < n; ++i) ++groups.offsets[key[i] + 1];
  for (int64_t r = 0; r < m; ++r) groups.offsets[r + 1] += groups.offsets[r];
  std::vector<int64_t> next(groups.offsets.begin(), groups.offsets.end() - 1);
  for (int64_t i = 0; i < n; ++i) groups.order[next[key[i]]++] = i;
  return groups;
}

// Smallest and largest of n keys (n > 0), for the range checks that must precede indexing.
inline std::pair<int64_t, int64_t> key_range(const int64_t* key, int64_t n) {
  int64_t low = std::numeric_limits<int64_t>::max(), high = std::numeric_limits<int64_t>::min();
  for (int64_t i = 0; i < n; ++i) {
    low = key[i] < low ? key[i] : low;
    high = key[i] > high ? key[i] : high;
  }
  return {low, high};
}

}  // namespace pcseg
