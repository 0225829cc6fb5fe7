// Region margins on the CPU: children grouped by region with a counting sort (ascending within a
// region), then one parallel pass over the regions that sums each region's rows in float64,
// writes the mean and takes its top-2 while the row is still in cache. No shared accumulators,
// so results are deterministic and match the CUDA kernel bit for bit.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "../region_margin.h"

namespace pcseg {
namespace {

// Child indices grouped by region, ascending within a region; region r owns
// order[offsets[r], offsets[r + 1]).
struct RegionGroups {
  std::vector<int64_t> offsets;
  std::vector<int64_t> order;
};

// Parent values are range-checked before the first one is used as an index.
RegionGroups group_by_parent(const int64_t* parent, int64_t n, int64_t m) {
  int64_t low = std::numeric_limits<int64_t>::max(), high = std::numeric_limits<int64_t>::min();
  for (int64_t i = 0; i < n; ++i) {
    low = std::min(low, parent[i]);
    high = std::max(high, parent[i]);
  }
  if (n > 0) check_region_margin_parents(low, high, m);
  RegionGroups groups;
  groups.offsets.assign(m + 1, 0);
  groups.order.resize(n);
  for (int64_t i = 0; i < n; ++i) ++groups.offsets[parent[i] + 1];
  for (int64_t r = 0; r < m; ++r) groups.offsets[r + 1] += groups.offsets[r];
  std::vector<int64_t> next(groups.offsets.begin(), groups.offsets.end() - 1);
  for (int64_t i = 0; i < n; ++i) groups.order[next[parent[i]]++] = i;
  return groups;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> region_margin_cpu(const at::Tensor& probs_in,
                                                     const at::Tensor& parent_in,
                                                     int64_t num_regions) {
  check_region_margin_inputs(probs_in, parent_in, num_regions);
  const at::Tensor probs = probs_in.contiguous(), parent = parent_in.contiguous();
  const int64_t n = probs.size(0), k = probs.size(1), m = num_regions;
  at::Tensor region_probs = at::zeros({m, k}, probs.options());
  at::Tensor margin = at::zeros({m}, probs.options());
  const RegionGroups groups = group_by_parent(parent.data_ptr<int64_t>(), n, m);
  if (n == 0) return {region_probs, margin};  // every region empty: zero rows, zero margins
  const float* p = probs.data_ptr<float>();
  float* out = region_probs.data_ptr<float>();
  float* gap = margin.data_ptr<float>();
  at::parallel_for(0, m, 256, [&](int64_t begin, int64_t end) {
    std::vector<double> sum(k);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t first = groups.offsets[r], last = groups.offsets[r + 1];
      if (first == last) continue;  // an empty region keeps its zero row and margin
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t c = first; c < last; ++c) {
        const float* row = p + groups.order[c] * k;
        for (int64_t j = 0; j < k; ++j) sum[j] += static_cast<double>(row[j]);
      }
      const double count = static_cast<double>(last - first);
      float* mean = out + r * k;
      for (int64_t j = 0; j < k; ++j) mean[j] = static_cast<float>(sum[j] / count);
      gap[r] = top2_margin(mean, k);
    }
  });
  return {region_probs, margin};
}

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("region_margin", &region_margin_cpu); }

}  // namespace pcseg
