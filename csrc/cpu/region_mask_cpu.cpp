// Region masking on the CPU: voxels grouped by sample with a counting sort, every (sample, axis)
// deduplicated in parallel to find its inner pivots, then one parallel pass over the voxels that
// looks up the bins by a branch-free binary search and copies or zeroes each feature row.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "../region_mask.h"

namespace pcseg {
namespace {

// Voxel indices grouped by sample, ascending within a sample; sample b owns
// order[offsets[b], offsets[b + 1]).
struct SampleGroups {
  std::vector<int64_t> offsets;
  std::vector<int64_t> order;
};

SampleGroups group_by_sample(const int32_t* coords, int64_t v, int64_t batches) {
  SampleGroups groups;
  groups.offsets.assign(batches + 1, 0);
  groups.order.resize(v);
  for (int64_t i = 0; i < v; ++i) ++groups.offsets[coords[4 * i] + 1];
  for (int64_t b = 0; b < batches; ++b) groups.offsets[b + 1] += groups.offsets[b];
  std::vector<int64_t> next(groups.offsets.begin(), groups.offsets.end() - 1);
  for (int64_t i = 0; i < v; ++i) groups.order[next[coords[4 * i]]++] = i;
  return groups;
}

// Sorted unique values of one coordinate column over the voxels idx[0, n). Voxel coordinates
// are usually dense along an axis, so a presence table over [min, max] replaces the sort
// whenever that range is not much larger than n.
std::vector<int32_t> unique_values(const int32_t* coords, const int64_t* idx, int64_t n,
                                   int column) {
  std::vector<int32_t> values(n);
  int32_t low = std::numeric_limits<int32_t>::max(), high = std::numeric_limits<int32_t>::min();
  for (int64_t k = 0; k < n; ++k) {
    values[k] = coords[4 * idx[k] + column];
    low = std::min(low, values[k]);
    high = std::max(high, values[k]);
  }
  const int64_t range = static_cast<int64_t>(high) - low + 1;
  if (n == 0 || range > 4 * n + 4096) {
    std::sort(values.begin(), values.end());
    values.erase(std::unique(values.begin(), values.end()), values.end());
    return values;
  }
  std::vector<uint8_t> present(range, 0);
  for (const int32_t value : values) present[static_cast<int64_t>(value) - low] = 1;
  values.clear();
  for (int64_t r = 0; r < range; ++r)
    if (present[r]) values.push_back(static_cast<int32_t>(low + r));
  return values;
}

// Inner pivots, (B, 3, g - 1) flattened: row (b, a) holds sample b's pivots along axis a.
// Rows of samples without voxels stay 0 and are never read.
std::vector<int32_t> axis_pivots(const int32_t* coords, const SampleGroups& groups,
                                 int64_t batches, int64_t grid) {
  const int64_t inner = grid - 1;
  std::vector<int32_t> pivots(batches * 3 * inner, 0);
  if (inner == 0) return pivots;
  at::parallel_for(0, batches * 3, 1, [&](int64_t first, int64_t last) {
    for (int64_t row = first; row < last; ++row) {
      const int64_t b = row / 3, begin = groups.offsets[b], n = groups.offsets[b + 1] - begin;
      if (n == 0) continue;
      const std::vector<int32_t> u =
          unique_values(coords, groups.order.data() + begin, n, static_cast<int>(row % 3) + 1);
      const int64_t count = static_cast<int64_t>(u.size());
      for (int64_t k = 1; k <= inner; ++k)
        pivots[row * inner + k - 1] = u[pivot_rank(k, count, grid)];
    }
  });
  return pivots;
}

// Number of the n sorted pivots strictly below value (std::lower_bound's index), by a binary
// search whose steps select with a conditional move: the branches of std::lower_bound depend on
// the data and mispredict about every other step (about 12 % of the real-scan time).
inline int64_t count_below(const int32_t* pivots, int64_t n, int32_t value) {
  if (n == 0) return 0;
  const int32_t* base = pivots;
  while (n > 1) {
    const int64_t half = n / 2;
    base = base[half] < value ? base + half : base;
    n -= half;
  }
  return (base - pivots) + (*base < value);
}

// Batch-index range in one pass: (min, max).
std::pair<int64_t, int64_t> batch_range(const int32_t* coords, int64_t v) {
  int32_t low = std::numeric_limits<int32_t>::max(), high = std::numeric_limits<int32_t>::min();
  for (int64_t i = 0; i < v; ++i) {
    low = std::min(low, coords[4 * i]);
    high = std::max(high, coords[4 * i]);
  }
  return {low, high};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> region_mask_cpu(const at::Tensor& coords_in,
                                                                const at::Tensor& feat_in,
                                                                int64_t grid,
                                                                const at::Tensor& chosen_in) {
  check_region_mask_inputs(coords_in, feat_in, grid, chosen_in);
  const at::Tensor coords = coords_in.contiguous(), feat = feat_in.contiguous(),
                   chosen = chosen_in.contiguous();
  const int64_t v = coords.size(0);
  at::Tensor out = at::empty_like(feat, at::MemoryFormat::Contiguous);
  at::Tensor region = at::empty({v}, coords.options().dtype(at::kLong));
  at::Tensor masked = at::empty({v}, coords.options().dtype(at::kBool));
  if (v == 0) return {out, region, masked};
  const int32_t* c = coords.data_ptr<int32_t>();
  const auto [low, high] = batch_range(c, v);
  check_region_mask_batches(low, high, chosen);
  const int64_t batches = high + 1, inner = grid - 1, boxes = grid * grid * grid;
  const std::vector<int32_t> pivots = axis_pivots(c, group_by_sample(c, v, batches), batches, grid);

  const bool* chosen_ptr = chosen.data_ptr<bool>();
  int64_t* region_ptr = region.data_ptr<int64_t>();
  bool* masked_ptr = masked.data_ptr<bool>();
  // Rows are copied or zeroed as bytes: an all-zero bit pattern is +0 in every floating type.
  const int64_t row_bytes = feat.size(1) * feat.element_size();
  const char* src = static_cast<const char*>(feat.data_ptr());
  char* dst = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, v, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int32_t* voxel = c + 4 * i;
      int64_t id = 0;
      for (int a = 0; a < 3; ++a) {
        const int32_t* p = pivots.data() + (voxel[0] * 3 + a) * inner;
        id = id * grid + count_below(p, inner, voxel[a + 1]);
      }
      const bool hit = chosen_ptr[voxel[0] * boxes + id];
      region_ptr[i] = id;
      masked_ptr[i] = hit;
      if (row_bytes == 0) continue;  // no channels: the data pointers may be null
      if (hit)
        std::memset(dst + i * row_bytes, 0, row_bytes);
      else
        std::memcpy(dst + i * row_bytes, src + i * row_bytes, row_bytes);
    }
  });
  return {out, region, masked};
}

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("region_mask", &region_mask_cpu); }

}  // namespace pcseg
