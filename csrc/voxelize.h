// Shared checks and key packing for the voxelisation kernels (CPU and CUDA).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace pcseg {

// Grid indices must stay below this so that they fit the int32 voxel coordinates.
constexpr double kMaxGridIndex = 2147483647.0;

inline at::Tensor origin_tensor(const std::array<double, 3>& origin) {
  return at::tensor({origin[0], origin[1], origin[2]}, at::TensorOptions().dtype(at::kDouble));
}

// Keys pack (b, i, j, k) in mixed radix over the observed extents, so integer order equals
// lexicographic order and the key space is as small as the cloud allows.
inline void check_voxelize_inputs(const at::Tensor& coord, const at::Tensor& batch,
                                  c10::ArrayRef<double> voxel_size, c10::ArrayRef<double> origin) {
  TORCH_CHECK(coord.dim() == 2 && coord.size(1) == 3, "voxelize: coord must be (N, 3), got ",
              coord.sizes());
  TORCH_CHECK(coord.scalar_type() == at::kFloat || coord.scalar_type() == at::kDouble,
              "voxelize: coord must be float32 or float64");
  TORCH_CHECK(batch.dim() == 1 && batch.size(0) == coord.size(0),
              "voxelize: batch must be (N,) like coord");
  TORCH_CHECK(batch.scalar_type() == at::kLong, "voxelize: batch must be int64");
  TORCH_CHECK(batch.device() == coord.device(), "voxelize: batch and coord on different devices");
  TORCH_CHECK(voxel_size.size() == 3, "voxelize: voxel_size needs 3 values");
  TORCH_CHECK(origin.empty() || origin.size() == 3, "voxelize: origin needs 0 or 3 values");
  for (double v : voxel_size) TORCH_CHECK(v > 0, "voxelize: voxel sizes must be positive");
}

inline void check_key_space(int64_t batches, int64_t ex, int64_t ey, int64_t ez) {
  TORCH_CHECK(std::max({batches, ex, ey, ez}) <= INT32_MAX,
              "voxelize: grid index exceeds int32 (", batches, " x ", ex, " x ", ey, " x ", ez,
              "); use a larger voxel size");
  TORCH_CHECK(static_cast<long double>(batches) * ex * ey * ez < 4.6e18L,
              "voxelize: grid too large for 64-bit keys (", batches, " x ", ex, " x ", ey, " x ",
              ez, " voxels); use a larger voxel size");
}

inline void check_segment_inputs(const at::Tensor& feat, const at::Tensor& order,
                                 const at::Tensor& offsets) {
  TORCH_CHECK(feat.dim() == 2, "segment_mean: feat must be (N, C)");
  TORCH_CHECK(order.dim() == 1 && order.size(0) == feat.size(0) &&
                  order.scalar_type() == at::kLong,
              "segment_mean: order must be int64 (N,)");
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1 && offsets.scalar_type() == at::kLong,
              "segment_mean: offsets must be int64 (V+1,)");
  TORCH_CHECK(order.device() == feat.device() && offsets.device() == feat.device(),
              "segment_mean: feat, order and offsets must be on one device");
  // Kernels index with these values, so a bad table must fail here, not fault in memory.
  const int64_t n = feat.size(0);
  TORCH_CHECK(offsets[0].item<int64_t>() == 0 && offsets[-1].item<int64_t>() == n,
              "segment_mean: offsets must start at 0 and end at N = ", n);
  TORCH_CHECK(offsets.size(0) == 1 || (offsets.diff() >= 0).all().item<bool>(),
              "segment_mean: offsets must be non-decreasing");
  TORCH_CHECK(n == 0 || (order.min().item<int64_t>() >= 0 && order.max().item<int64_t>() < n),
              "segment_mean: order holds indices outside 0..N-1");
}

}  // namespace pcseg
