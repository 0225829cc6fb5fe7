// Voxelisation on the CPU: floor to grid, pack keys, stable LSD radix sort, run-length unique.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <array>
#include <vector>

#include "../voxelize.h"

namespace pcseg {
namespace {

template <typename scalar_t>
void floor_to_grid(const at::Tensor& coord, c10::ArrayRef<double> size,
                   c10::ArrayRef<double> origin, at::Tensor& grid) {
  const scalar_t* xyz = coord.data_ptr<scalar_t>();
  int64_t* g = grid.data_ptr<int64_t>();
  const std::array<double, 3> s{size[0], size[1], size[2]}, o{origin[0], origin[1], origin[2]};
  at::parallel_for(0, coord.size(0), 4096, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      for (int a = 0; a < 3; ++a)
        g[3 * p + a] = static_cast<int64_t>(std::floor((static_cast<double>(xyz[3 * p + a]) - o[a]) / s[a]));
  });
}

// Stable LSD radix sort of (key, index) pairs, 8 bits per pass, skipping constant bytes.
void radix_sort(std::vector<uint64_t>& keys, std::vector<int64_t>& index, uint64_t max_key) {
  const size_t n = keys.size();
  std::vector<uint64_t> keys_tmp(n);
  std::vector<int64_t> index_tmp(n);
  for (int shift = 0; shift < 64 && (max_key >> shift) != 0; shift += 8) {
    std::array<size_t, 257> bucket{};
    for (size_t p = 0; p < n; ++p) ++bucket[((keys[p] >> shift) & 0xFF) + 1];
    if (*std::max_element(bucket.begin(), bucket.end()) == n) continue;
    for (int b = 0; b < 256; ++b) bucket[b + 1] += bucket[b];
    for (size_t p = 0; p < n; ++p) {
      const size_t dst = bucket[(keys[p] >> shift) & 0xFF]++;
      keys_tmp[dst] = keys[p];
      index_tmp[dst] = index[p];
    }
    keys.swap(keys_tmp);
    index.swap(index_tmp);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> voxelize_cpu(
    const at::Tensor& coord_in, const at::Tensor& batch_in, c10::ArrayRef<double> voxel_size,
    c10::ArrayRef<double> origin) {
  check_voxelize_inputs(coord_in, batch_in, voxel_size, origin);
  const at::Tensor coord = coord_in.contiguous();
  const at::Tensor batch = batch_in.contiguous();
  const int64_t n = coord.size(0);
  const auto long_opts = coord.options().dtype(at::kLong);
  if (n == 0)
    return {at::empty({0, 4}, coord.options().dtype(at::kInt)), at::empty({0}, long_opts),
            at::empty({0}, long_opts), at::empty({0}, long_opts)};

  at::Tensor grid = at::empty({n, 3}, long_opts);
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "voxelize_cpu",
                             [&] { floor_to_grid<scalar_t>(coord, voxel_size, origin, grid); });
  TORCH_CHECK(grid.min().item<int64_t>() >= 0, "voxelize: points lie below the grid origin");
  TORCH_CHECK(batch.min().item<int64_t>() >= 0, "voxelize: batch indices must be >= 0");
  const at::Tensor extent_t = grid.amax(0) + 1;
  const int64_t ex = extent_t[0].item<int64_t>(), ey = extent_t[1].item<int64_t>(),
                ez = extent_t[2].item<int64_t>();
  const int64_t batches = batch.max().item<int64_t>() + 1;
  TORCH_CHECK(static_cast<long double>(batches) * ex * ey * ez < 4.6e18L,
              "voxelize: grid too large for 64-bit keys (", batches, " x ", ex, " x ", ey, " x ",
              ez, " voxels); use a larger voxel size");

  std::vector<uint64_t> keys(n);
  std::vector<int64_t> index(n);
  const int64_t* g = grid.data_ptr<int64_t>();
  const int64_t* b = batch.data_ptr<int64_t>();
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      keys[p] = static_cast<uint64_t>(((b[p] * ex + g[3 * p]) * ey + g[3 * p + 1]) * ez + g[3 * p + 2]);
      index[p] = p;
    }
  });
  radix_sort(keys, index, static_cast<uint64_t>(batches * ex * ey * ez - 1));

  std::vector<int64_t> starts;
  starts.reserve(n / 2 + 1);
  for (int64_t p = 0; p < n; ++p)
    if (p == 0 || keys[p] != keys[p - 1]) starts.push_back(p);
  const int64_t v = static_cast<int64_t>(starts.size());
  starts.push_back(n);

  at::Tensor coords = at::empty({v, 4}, coord.options().dtype(at::kInt));
  at::Tensor counts = at::empty({v}, long_opts);
  at::Tensor inverse = at::empty({n}, long_opts);
  at::Tensor order = at::from_blob(index.data(), {n}, long_opts).clone();
  int32_t* c = coords.data_ptr<int32_t>();
  int64_t* cnt = counts.data_ptr<int64_t>();
  int64_t* inv = inverse.data_ptr<int64_t>();
  at::parallel_for(0, v, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t first = index[starts[k]];
      c[4 * k] = static_cast<int32_t>(b[first]);
      for (int a = 0; a < 3; ++a) c[4 * k + 1 + a] = static_cast<int32_t>(g[3 * first + a]);
      cnt[k] = starts[k + 1] - starts[k];
      for (int64_t p = starts[k]; p < starts[k + 1]; ++p) inv[index[p]] = k;
    }
  });
  return {coords, inverse, counts, order};
}

at::Tensor segment_mean_cpu(const at::Tensor& feat_in, const at::Tensor& order_in,
                            const at::Tensor& offsets_in) {
  check_segment_inputs(feat_in, order_in, offsets_in);
  const at::Tensor feat = feat_in.contiguous(), order = order_in.contiguous(),
                   offsets = offsets_in.contiguous();
  const int64_t v = offsets.size(0) - 1, ch = feat.size(1);
  at::Tensor out = at::zeros({v, ch}, feat.options());
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "segment_mean_cpu", [&] {
    const scalar_t* f = feat.data_ptr<scalar_t>();
    const int64_t* ord = order.data_ptr<int64_t>();
    const int64_t* off = offsets.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, v, 256, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(ch);
      for (int64_t k = begin; k < end; ++k) {
        const int64_t len = off[k + 1] - off[k];
        if (len == 0) continue;  // an empty segment stays zero rather than 0/0
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t p = off[k]; p < off[k + 1]; ++p)
          for (int64_t j = 0; j < ch; ++j) acc[j] += f[ord[p] * ch + j];
        for (int64_t j = 0; j < ch; ++j) o[k * ch + j] = static_cast<scalar_t>(acc[j] / len);
      }
    });
  });
  return out;
}

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("voxelize", &voxelize_cpu);
  m.impl("segment_mean", &segment_mean_cpu);
}

}  // namespace pcseg
