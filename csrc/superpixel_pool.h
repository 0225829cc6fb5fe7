// Shared checks of the superpixel-pooling kernels (CPU and CUDA).
// The spec is pcseg/ops/superpixel_pool.py.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace pcseg {

// Checks that need no data; index and segment ranges are checked by each kernel on its device.
inline void check_superpixel_pool_inputs(const at::Tensor& feat, const at::Tensor& index,
                                         const at::Tensor& segment, int64_t num_segments) {
  TORCH_CHECK(feat.dim() == 2 && at::isFloatingType(feat.scalar_type()),
              "superpixel_pool: feat must be a floating (N, C) tensor, got ", feat.scalar_type(),
              " ", feat.sizes());
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong,
              "superpixel_pool: index must be int64 (P,), got ", index.scalar_type(), " ",
              index.sizes());
  TORCH_CHECK(segment.dim() == 1 && segment.scalar_type() == at::kLong &&
                  segment.size(0) == index.size(0),
              "superpixel_pool: segment must be int64 (P,) like index, got ",
              segment.scalar_type(), " ", segment.sizes());
  TORCH_CHECK(num_segments >= 0, "superpixel_pool: num_segments must be >= 0, got ",
              num_segments);
  TORCH_CHECK(index.device() == feat.device() && segment.device() == feat.device(),
              "superpixel_pool: feat, index and segment must share a device");
}

// Index and segment values address rows, so a value out of range must fail here, not fault.
inline void check_superpixel_pool_range(const char* what, int64_t low, int64_t high,
                                        int64_t size) {
  TORCH_CHECK(low >= 0 && high < size, "superpixel_pool: ", what, " values must lie in [0, ",
              size, "), got [", low, ", ", high, "]");
}

}  // namespace pcseg
