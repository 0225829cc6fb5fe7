// Region masking on the GPU: the inner pivots of every (axis, sample) come from one sorted unique
// of composite keys with ATen ops; one kernel then finds each voxel's bins by binary search,
// looks up its box and copies or zeroes its feature row. No atomics, so results are
// deterministic.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../region_mask.h"

namespace pcseg {
namespace {

constexpr int64_t kLow32 = 0xFFFFFFFFLL;
// One warp of lanes across the channels of a voxel, kVoxelsPerBlock voxels per block: every
// lane does the (warp-uniform) bin lookup, so the row copy is coalesced without a broadcast.
constexpr int kLanes = 32;
constexpr int kVoxelsPerBlock = 8;

template <typename scalar_t>
__global__ void region_mask_kernel(const int32_t* __restrict__ coords,
                                   const scalar_t* __restrict__ feat,
                                   const int32_t* __restrict__ pivots,
                                   const bool* __restrict__ chosen, int64_t v, int64_t ch,
                                   int64_t grid, int64_t batches, scalar_t* __restrict__ out,
                                   int64_t* __restrict__ region, bool* __restrict__ masked) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.y) + threadIdx.y;
  if (i >= v) return;
  const int32_t* voxel = coords + 4 * i;
  const int64_t b = voxel[0], inner = grid - 1;
  int64_t id = 0;
  for (int a = 0; a < 3; ++a) {
    const int32_t* p = pivots + (a * batches + b) * inner;
    int64_t lo = 0, hi = inner;  // number of pivots strictly less than the coordinate
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (p[mid] < voxel[a + 1])
        lo = mid + 1;
      else
        hi = mid;
    }
    id = id * grid + lo;
  }
  const bool hit = chosen[b * grid * grid * grid + id];
  if (threadIdx.x == 0) {
    region[i] = id;
    masked[i] = hit;
  }
  const scalar_t* src = feat + i * ch;
  scalar_t* dst = out + i * ch;
  for (int64_t j = threadIdx.x; j < ch; j += blockDim.x)
    dst[j] = hit ? static_cast<scalar_t>(0.0f) : src[j];
}

// Inner pivots, int32 (3 * B, g - 1): row a * B + b holds sample b's pivots along axis a.
// Keys (a * B + b) << 32 | (value - min of axis a) sort by axis, then sample, then value, so
// one sorted unique lists every row's unique values in order; the row starts come from a
// search of that list (no atomics). Rows of samples without voxels are never read.
at::Tensor axis_pivots(const at::Tensor& coords, int64_t batches, int64_t grid) {
  TORCH_CHECK(3 * batches <= INT32_MAX, "region_mask: too many samples (", batches, ")");
  const auto long_opts = coords.options().dtype(at::kLong);
  const at::Tensor values = coords.narrow(1, 1, 3).to(at::kLong);  // (V, 3)
  const at::Tensor low = std::get<0>(values.min(0));                  // (3,)
  const at::Tensor row = at::arange(3, long_opts).mul(batches) + coords.select(1, 0).unsqueeze(1);
  const at::Tensor keys = row.mul(int64_t{1} << 32).add(values - low).flatten();
  const at::Tensor unique = std::get<0>(at::_unique(keys, /*sorted=*/true));
  const at::Tensor bounds = at::arange(3 * batches + 1, long_opts).mul(int64_t{1} << 32);
  const at::Tensor starts = at::searchsorted(unique, bounds);
  const at::Tensor counts = starts.diff();  // (3B,)
  const at::Tensor k = at::arange(1, grid, long_opts);
  const at::Tensor stride = at::floor_divide(counts, grid).clamp_min(1);
  const at::Tensor rank =
      at::minimum(k.unsqueeze(0) * stride.unsqueeze(1), (counts - 1).clamp_min(0).unsqueeze(1));
  const at::Tensor index =
      (starts.narrow(0, 0, 3 * batches).unsqueeze(1) + rank).clamp_max(unique.size(0) - 1);
  const at::Tensor offset = unique.index_select(0, index.flatten()).bitwise_and(kLow32);
  const at::Tensor axis_low = low.repeat_interleave(batches);  // row a * B + b -> min of axis a
  return (offset.view({3 * batches, grid - 1}) + axis_low.unsqueeze(1)).to(at::kInt).contiguous();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> region_mask_cuda(const at::Tensor& coords_in,
                                                                 const at::Tensor& feat_in,
                                                                 int64_t grid,
                                                                 const at::Tensor& chosen_in) {
  check_region_mask_inputs(coords_in, feat_in, grid, chosen_in);
  const c10::cuda::CUDAGuard guard(coords_in.device());
  const at::Tensor coords = coords_in.contiguous(), feat = feat_in.contiguous(),
                   chosen = chosen_in.contiguous();
  const int64_t v = coords.size(0), ch = feat.size(1);
  at::Tensor out = at::empty_like(feat, at::MemoryFormat::Contiguous);
  at::Tensor region = at::empty({v}, coords.options().dtype(at::kLong));
  at::Tensor masked = at::empty({v}, coords.options().dtype(at::kBool));
  if (v == 0) return {out, region, masked};
  const auto [low_t, high_t] = at::aminmax(coords.select(1, 0));
  const int64_t high = high_t.item<int64_t>();
  check_region_mask_batches(low_t.item<int64_t>(), high, chosen);
  const int64_t batches = high + 1;
  const at::Tensor pivots = axis_pivots(coords, batches, grid);

  const dim3 threads(kLanes, kVoxelsPerBlock);
  const int blocks = static_cast<int>((v + kVoxelsPerBlock - 1) / kVoxelsPerBlock);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, feat.scalar_type(), "region_mask", [&] {
    region_mask_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        coords.data_ptr<int32_t>(), feat.data_ptr<scalar_t>(), pivots.data_ptr<int32_t>(),
        chosen.data_ptr<bool>(), v, ch, grid, batches, out.data_ptr<scalar_t>(),
        region.data_ptr<int64_t>(), masked.data_ptr<bool>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, region, masked};
}

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) { m.impl("region_mask", &region_mask_cuda); }

}  // namespace pcseg
