// Shared checks and pivot rule of the region-masking kernels (CPU and CUDA).
// The spec is pcseg/ops/region_mask.py; the kernels must agree with its reference exactly.
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>

namespace pcseg {

// g^3 boxes must fit int64 region ids (and a chosen table of that many columns).
constexpr int64_t kMaxRegionGrid = 1 << 20;

// Rank of the k-th inner pivot (k = 1 .. g-1) among a sample's n sorted unique values along one
// axis: boxes are rank quantiles, so each holds about n / g of the occupied rows of that axis.
inline int64_t pivot_rank(int64_t k, int64_t n, int64_t grid) {
  return std::min(k * std::max<int64_t>(n / grid, 1), n - 1);
}

// Checks that need no data; the batch-index range is checked by each kernel on its device.
inline void check_region_mask_inputs(const at::Tensor& coords, const at::Tensor& feat,
                                     int64_t grid, const at::Tensor& chosen) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4 && coords.scalar_type() == at::kInt,
              "region_mask: coords must be int32 (V, 4), got ", coords.scalar_type(), " ",
              coords.sizes());
  TORCH_CHECK(feat.dim() == 2 && feat.size(0) == coords.size(0) && feat.is_floating_point(),
              "region_mask: feat must be float (V, C) like coords, got ", feat.scalar_type(), " ",
              feat.sizes());
  TORCH_CHECK(grid >= 1 && grid <= kMaxRegionGrid, "region_mask: grid must be in [1, ",
              kMaxRegionGrid, "], got ", grid);
  TORCH_CHECK(chosen.dim() == 2 && chosen.size(1) == grid * grid * grid &&
                  chosen.scalar_type() == at::kBool,
              "region_mask: chosen must be bool (B, g^3) with g^3 = ", grid * grid * grid,
              ", got ", chosen.scalar_type(), " ", chosen.sizes());
  TORCH_CHECK(feat.device() == coords.device() && chosen.device() == coords.device(),
              "region_mask: coords, feat and chosen must be on one device");
}

// B must be max batch index + 1 (the chosen table is indexed with it, so this is also what keeps
// the kernels inside memory).
inline void check_region_mask_batches(int64_t low, int64_t high, const at::Tensor& chosen) {
  TORCH_CHECK(low >= 0, "region_mask: coords has a negative batch index (", low, ")");
  TORCH_CHECK(chosen.size(0) == high + 1,
              "region_mask: chosen must have B = max batch index + 1 = ", high + 1, " rows, got ",
              chosen.size(0));
}

}  // namespace pcseg
