// Voxelisation on the GPU: per-point keys, a stable device sort, boundary flags and a scan.
// Every reduction is a per-segment loop in sorted order, so results are deterministic.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>

#include "../voxelize.h"

namespace pcseg {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

struct Axes {
  double v[3];
};

// NaN/inf (bit 1) and indices beyond int32 (bit 2) are flagged with an integer atomicOr (the
// result does not depend on order) and never cast: the cast would be undefined.
template <typename scalar_t>
__global__ void floor_to_grid_kernel(const scalar_t* __restrict__ xyz, int64_t n, Axes size,
                                     Axes origin, int64_t* __restrict__ grid,
                                     int* __restrict__ flags) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  for (int a = 0; a < 3; ++a) {
    const double x = static_cast<double>(xyz[3 * p + a]);
    const double q = (x - origin.v[a]) / size.v[a];
    const bool ok = fabs(q) < kMaxGridIndex;
    if (!isfinite(x)) atomicOr(flags, 1);
    if (!ok) atomicOr(flags, 2);
    grid[3 * p + a] = ok ? static_cast<int64_t>(floor(q)) : 0;
  }
}

__global__ void pack_keys_kernel(const int64_t* __restrict__ grid, const int64_t* __restrict__ b,
                                 int64_t n, int64_t ex, int64_t ey, int64_t ez,
                                 int64_t* __restrict__ keys) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  keys[p] = ((b[p] * ex + grid[3 * p]) * ey + grid[3 * p + 1]) * ez + grid[3 * p + 2];
}

__global__ void boundary_kernel(const int64_t* __restrict__ sorted, int64_t n,
                                int64_t* __restrict__ flag) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  flag[p] = (p == 0 || sorted[p] != sorted[p - 1]) ? 1 : 0;
}

__global__ void scatter_voxels_kernel(const int64_t* __restrict__ sorted_keys,
                                      const int64_t* __restrict__ perm,
                                      const int64_t* __restrict__ voxel_id, int64_t n, int64_t ex,
                                      int64_t ey, int64_t ez, int64_t* __restrict__ offsets,
                                      int32_t* __restrict__ coords, int64_t* __restrict__ inverse) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  const int64_t k = voxel_id[p];
  inverse[perm[p]] = k;
  if (p == 0 || sorted_keys[p] != sorted_keys[p - 1]) {
    offsets[k] = p;
    int64_t key = sorted_keys[p];
    coords[4 * k + 3] = static_cast<int32_t>(key % ez);
    key /= ez;
    coords[4 * k + 2] = static_cast<int32_t>(key % ey);
    key /= ey;
    coords[4 * k + 1] = static_cast<int32_t>(key % ex);
    coords[4 * k] = static_cast<int32_t>(key / ex);
  }
}

template <typename scalar_t>
__global__ void segment_mean_kernel(const scalar_t* __restrict__ feat,
                                    const int64_t* __restrict__ order,
                                    const int64_t* __restrict__ offsets, int64_t v, int64_t ch,
                                    scalar_t* __restrict__ out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= v * ch) return;
  const int64_t k = t / ch, j = t % ch;
  const int64_t begin = offsets[k], end = offsets[k + 1];
  if (end == begin) return;
  double acc = 0.0;
  for (int64_t p = begin; p < end; ++p) acc += static_cast<double>(feat[order[p] * ch + j]);
  out[t] = static_cast<scalar_t>(acc / static_cast<double>(end - begin));
}

// Floors every point to the grid and checks the result; without an explicit origin the grid
// is anchored at 0 and shifted to start at index 0 (origin updated to match).
at::Tensor grid_indices(const at::Tensor& coord, const at::Tensor& batch, const Axes& size,
                        bool explicit_origin, std::array<double, 3>& origin) {
  const int64_t n = coord.size(0);
  at::Tensor grid = at::empty({n, 3}, coord.options().dtype(at::kLong));
  at::Tensor flags = at::zeros({1}, coord.options().dtype(at::kInt));
  const Axes start{{origin[0], origin[1], origin[2]}};
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "voxelize_cuda", [&] {
    floor_to_grid_kernel<scalar_t><<<blocks_for(n), kThreads, 0,
                                     c10::cuda::getCurrentCUDAStream()>>>(
        coord.data_ptr<scalar_t>(), n, size, start, grid.data_ptr<int64_t>(),
        flags.data_ptr<int>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int flag = flags.item<int>();
  TORCH_CHECK(!(flag & 1), "voxelize: coordinates contain NaN or inf");
  TORCH_CHECK(!(flag & 2), "voxelize: grid index exceeds int32; use a larger voxel size");
  if (!explicit_origin) {
    const at::Tensor low = grid.amin(0);
    grid.sub_(low);
    const at::Tensor low_cpu = low.cpu();
    for (int a = 0; a < 3; ++a) origin[a] = low_cpu[a].item<int64_t>() * size.v[a];
  }
  TORCH_CHECK(grid.min().item<int64_t>() >= 0 && batch.min().item<int64_t>() >= 0,
              "voxelize: points lie below the grid origin or batch indices < 0");
  return grid;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> voxelize_cuda(
    const at::Tensor& coord_in, const at::Tensor& batch_in, c10::ArrayRef<double> voxel_size,
    c10::ArrayRef<double> origin_in) {
  check_voxelize_inputs(coord_in, batch_in, voxel_size, origin_in);
  const c10::cuda::CUDAGuard guard(coord_in.device());
  const at::Tensor coord = coord_in.contiguous();
  const at::Tensor batch = batch_in.contiguous();
  const int64_t n = coord.size(0);
  const auto long_opts = coord.options().dtype(at::kLong);
  std::array<double, 3> origin{0.0, 0.0, 0.0};
  if (!origin_in.empty()) origin = {origin_in[0], origin_in[1], origin_in[2]};
  if (n == 0)
    return {at::empty({0, 4}, coord.options().dtype(at::kInt)), at::empty({0}, long_opts),
            at::empty({0}, long_opts), at::empty({0}, long_opts), origin_tensor(origin)};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const Axes size{{voxel_size[0], voxel_size[1], voxel_size[2]}};
  const at::Tensor grid = grid_indices(coord, batch, size, !origin_in.empty(), origin);
  const at::Tensor extent_t = (grid.amax(0) + 1).cpu();
  const int64_t ex = extent_t[0].item<int64_t>(), ey = extent_t[1].item<int64_t>(),
                ez = extent_t[2].item<int64_t>();
  const int64_t batches = batch.max().item<int64_t>() + 1;
  check_key_space(batches, ex, ey, ez);

  at::Tensor keys = at::empty({n}, long_opts);
  pack_keys_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      grid.data_ptr<int64_t>(), batch.data_ptr<int64_t>(), n, ex, ey, ez, keys.data_ptr<int64_t>());
  // The optional<bool> overload: a plain `true` would bind to sort(int64_t dim).
  auto [sorted_keys, perm] = keys.sort(std::optional<bool>(true), /*dim=*/0, /*descending=*/false);
  at::Tensor flag = at::empty({n}, long_opts);
  boundary_kernel<<<blocks_for(n), kThreads, 0, stream>>>(sorted_keys.data_ptr<int64_t>(), n,
                                                          flag.data_ptr<int64_t>());
  at::Tensor voxel_id = flag.cumsum(0).sub_(1);
  const int64_t v = voxel_id[n - 1].item<int64_t>() + 1;

  at::Tensor offsets = at::empty({v + 1}, long_opts);
  offsets.narrow(0, v, 1).fill_(n);
  at::Tensor coords = at::empty({v, 4}, coord.options().dtype(at::kInt));
  at::Tensor inverse = at::empty({n}, long_opts);
  scatter_voxels_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      sorted_keys.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), voxel_id.data_ptr<int64_t>(), n,
      ex, ey, ez, offsets.data_ptr<int64_t>(), coords.data_ptr<int32_t>(),
      inverse.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {coords, inverse, offsets.diff(), perm, origin_tensor(origin)};
}

at::Tensor segment_mean_cuda(const at::Tensor& feat_in, const at::Tensor& order_in,
                             const at::Tensor& offsets_in) {
  check_segment_inputs(feat_in, order_in, offsets_in);
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const at::Tensor feat = feat_in.contiguous(), order = order_in.contiguous(),
                   offsets = offsets_in.contiguous();
  const int64_t v = offsets.size(0) - 1, ch = feat.size(1);
  at::Tensor out = at::zeros({v, ch}, feat.options());
  if (v * ch == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "segment_mean_cuda", [&] {
    segment_mean_kernel<scalar_t><<<blocks_for(v * ch), kThreads, 0,
                                    c10::cuda::getCurrentCUDAStream()>>>(
        feat.data_ptr<scalar_t>(), order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), v, ch,
        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) {
  m.impl("voxelize", &voxelize_cuda);
  m.impl("segment_mean", &segment_mean_cuda);
}

}  // namespace pcseg
