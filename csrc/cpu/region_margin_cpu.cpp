// Region margins on the CPU: children grouped by region with a counting sort (ascending within a
// region), then one parallel pass over the regions that sums each region's rows in float64,
// writes the mean and takes its top-2 while the row is still in cache. No shared accumulators,
// so results are deterministic and match the CUDA kernel bit for bit.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "../region_margin.h"
#include "grouping.h"

namespace pcseg {
namespace {

// Parent values are range-checked before the first one is used as an index.
KeyGroups group_by_parent(const int64_t* parent, int64_t n, int64_t m) {
  if (n > 0) {
    const auto [low, high] = key_range(parent, n);
    check_region_margin_parents(low, high, m);
  }
  return group_by_key(parent, n, m);
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
  const KeyGroups groups = group_by_parent(parent.data_ptr<int64_t>(), n, m);
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
