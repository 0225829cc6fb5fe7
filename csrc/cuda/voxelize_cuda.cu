// Voxelisation on the GPU: per-point keys, a stable device sort, boundary flags and a scan.
// Every reduction is a per-segment loop in sorted order, so results are deterministic.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "../voxelize.h"

namespace pcseg {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

template <typename scalar_t>
__global__ void floor_to_grid_kernel(const scalar_t* __restrict__ xyz, int64_t n, double sx,
                                     double sy, double sz, double ox, double oy, double oz,
                                     int64_t* __restrict__ grid) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  grid[3 * p] = static_cast<int64_t>(floor((static_cast<double>(xyz[3 * p]) - ox) / sx));
  grid[3 * p + 1] = static_cast<int64_t>(floor((static_cast<double>(xyz[3 * p + 1]) - oy) / sy));
  grid[3 * p + 2] = static_cast<int64_t>(floor((static_cast<double>(xyz[3 * p + 2]) - oz) / sz));
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

// Rejects NaN/inf; returns the given origin, or else the per-axis minimum of the coordinates.
std::vector<double> resolve_origin(const at::Tensor& coord, c10::ArrayRef<double> origin_in) {
  std::vector<double> origin{0.0, 0.0, 0.0};
  if (coord.size(0) == 0) return origin;
  TORCH_CHECK(coord.isfinite().all().item<bool>(), "voxelize: coordinates contain NaN or inf");
  if (!origin_in.empty()) return {origin_in.begin(), origin_in.end()};
  const at::Tensor low = coord.amin(0).to(at::kDouble).cpu();
  for (int a = 0; a < 3; ++a) origin[a] = low[a].item<double>();
  return origin;
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
  const std::vector<double> origin = resolve_origin(coord, origin_in);
  at::Tensor origin_out = at::tensor(origin, at::TensorOptions().dtype(at::kDouble));
  if (n == 0)
    return {at::empty({0, 4}, coord.options().dtype(at::kInt)), at::empty({0}, long_opts),
            at::empty({0}, long_opts), at::empty({0}, long_opts), origin_out};
  const auto stream = c10::cuda::getCurrentCUDAStream();

  at::Tensor grid = at::empty({n, 3}, long_opts);
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "voxelize_cuda", [&] {
    floor_to_grid_kernel<scalar_t><<<blocks_for(n), kThreads, 0, stream>>>(
        coord.data_ptr<scalar_t>(), n, voxel_size[0], voxel_size[1], voxel_size[2], origin[0],
        origin[1], origin[2], grid.data_ptr<int64_t>());
  });
  TORCH_CHECK(grid.min().item<int64_t>() >= 0 && batch.min().item<int64_t>() >= 0,
              "voxelize: points lie below the grid origin or batch indices < 0");
  const at::Tensor extent_t = (grid.amax(0) + 1).cpu();
  const int64_t ex = extent_t[0].item<int64_t>(), ey = extent_t[1].item<int64_t>(),
                ez = extent_t[2].item<int64_t>();
  const int64_t batches = batch.max().item<int64_t>() + 1;
  check_key_space(batches, ex, ey, ez);

  at::Tensor keys = at::empty({n}, long_opts);
  pack_keys_kernel<<<blocks_for(n), kThreads, 0, stream>>>(
      grid.data_ptr<int64_t>(), batch.data_ptr<int64_t>(), n, ex, ey, ez, keys.data_ptr<int64_t>());
  auto [sorted_keys, perm] = keys.sort(/*stable=*/true);
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
  return {coords, inverse, offsets.diff(), perm, origin_out};
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
