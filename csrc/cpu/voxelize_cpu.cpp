// Voxelisation on the CPU: floor to grid, pack keys, stable LSD radix sort, run-length unique.
// Index bounds, batch range and NaN/range flags are gathered inside the parallel pass, one slot
// per chunk, because torch's column reductions on (N, 3) tensors cost more than the whole sort.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "../voxelize.h"

namespace pcseg {
namespace {

// Run fn(chunk, begin, end) over about one chunk per thread; returns the number of chunks.
template <typename Fn>
int64_t for_chunks(int64_t n, Fn fn) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / 8192));
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) fn(c, n * c / chunks, n * (c + 1) / chunks);
  });
  return chunks;
}

// Per-axis index bounds (three axes, then the batch index) and validity flags of one pass.
struct GridPass {
  int64_t lo[4], hi[4];
  bool finite = true, in_range = true;
  GridPass() {
    std::fill(lo, lo + 4, std::numeric_limits<int64_t>::max());
    std::fill(hi, hi + 4, std::numeric_limits<int64_t>::min());
  }
  void merge(const GridPass& o) {
    for (int a = 0; a < 4; ++a) lo[a] = std::min(lo[a], o.lo[a]), hi[a] = std::max(hi[a], o.hi[a]);
    finite &= o.finite;
    in_range &= o.in_range;
  }
};

// floor() for |x| < 2^31, without the libm call x86-64 makes for std::floor.
inline int64_t floor_int(double x) {
  const int64_t t = static_cast<int64_t>(x);
  return t - (static_cast<double>(t) > x);
}

// grid = floor((p - origin) / size) in float64, exactly as the reference computes it. NaN/inf
// and indices beyond int32 are flagged instead of cast (the cast would be undefined).
template <typename scalar_t>
GridPass floor_to_grid(const scalar_t* xyz, const int64_t* batch, int64_t n,
                       const std::array<double, 3>& size, const std::array<double, 3>& origin,
                       int64_t* grid) {
  std::vector<GridPass> parts(at::get_num_threads() + 1);
  const int64_t chunks = for_chunks(n, [&](int64_t c, int64_t begin, int64_t end) {
    GridPass local;  // a local, not the shared slot, so the loop keeps it in registers
    for (int64_t p = begin; p < end; ++p) {
      for (int a = 0; a < 3; ++a) {
        const double q = (static_cast<double>(xyz[3 * p + a]) - origin[a]) / size[a];
        const bool ok = std::fabs(q) < kMaxGridIndex;  // false for NaN and inf too
        local.finite &= std::isfinite(static_cast<double>(xyz[3 * p + a]));
        local.in_range &= ok;
        const int64_t g = ok ? floor_int(q) : 0;
        grid[3 * p + a] = g;
        local.lo[a] = std::min(local.lo[a], g);
        local.hi[a] = std::max(local.hi[a], g);
      }
      local.lo[3] = std::min(local.lo[3], batch[p]);
      local.hi[3] = std::max(local.hi[3], batch[p]);
    }
    parts[c] = local;
  });
  GridPass out;
  for (int64_t c = 0; c < chunks; ++c) out.merge(parts[c]);
  return out;
}

// Stable LSD radix sort of (key, index) pairs, 11 bits per pass, all histograms in one read.
template <typename Key, typename Index>
void radix_sort(std::vector<Key>& keys, std::vector<Index>& index, uint64_t max_key) {
  constexpr int kBits = 11;
  constexpr size_t kBuckets = size_t{1} << kBits;
  int passes = 0;
  while (passes * kBits < 64 && (max_key >> (passes * kBits)) != 0) ++passes;
  const size_t n = keys.size();
  std::vector<std::array<size_t, kBuckets>> hist(passes);
  for (auto& h : hist) h.fill(0);
  for (size_t p = 0; p < n; ++p)
    for (int d = 0; d < passes; ++d) ++hist[d][(keys[p] >> (d * kBits)) & (kBuckets - 1)];
  std::vector<Key> keys_tmp(n);
  std::vector<Index> index_tmp(n);
  for (int d = 0; d < passes; ++d) {
    auto& h = hist[d];
    if (*std::max_element(h.begin(), h.end()) == n) continue;  // constant digit
    size_t sum = 0;
    for (auto& count : h) sum += std::exchange(count, sum);
    const int shift = d * kBits;
    for (size_t p = 0; p < n; ++p) {
      const size_t dst = h[(keys[p] >> shift) & (kBuckets - 1)]++;
      keys_tmp[dst] = keys[p];
      index_tmp[dst] = index[p];
    }
    keys.swap(keys_tmp);
    index.swap(index_tmp);
  }
}

// Keys of every point, sorted; returns voxel start offsets (V+1) and writes the point order.
// Narrow types halve the sort's memory traffic whenever the key space and N allow them.
template <typename Key, typename Index>
std::vector<int64_t> sort_and_split(const int64_t* g, const int64_t* b, int64_t n,
                                    const int64_t (&extent)[3], uint64_t max_key,
                                    int64_t* order) {
  std::vector<Key> keys(n);
  std::vector<Index> index(n);
  const int64_t ex = extent[0], ey = extent[1], ez = extent[2];
  at::parallel_for(0, n, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      keys[p] = static_cast<Key>(((b[p] * ex + g[3 * p]) * ey + g[3 * p + 1]) * ez + g[3 * p + 2]);
      index[p] = static_cast<Index>(p);
    }
  });
  radix_sort(keys, index, max_key);
  std::vector<int64_t> starts;
  starts.reserve(n + 1);
  for (int64_t p = 0; p < n; ++p) {
    if (p == 0 || keys[p] != keys[p - 1]) starts.push_back(p);
    order[p] = index[p];
  }
  starts.push_back(n);
  return starts;
}

// Per-voxel coordinates [b, i, j, k] and counts, and each point's voxel, from sorted runs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> voxel_outputs(const std::vector<int64_t>& starts,
                                                             const int64_t* ord, const int64_t* g,
                                                             const int64_t* b, int64_t n,
                                                             const at::TensorOptions& long_opts) {
  const int64_t v = static_cast<int64_t>(starts.size()) - 1;
  at::Tensor coords = at::empty({v, 4}, long_opts.dtype(at::kInt));
  at::Tensor counts = at::empty({v}, long_opts);
  at::Tensor inverse = at::empty({n}, long_opts);
  int32_t* c = coords.data_ptr<int32_t>();
  int64_t* cnt = counts.data_ptr<int64_t>();
  int64_t* inv = inverse.data_ptr<int64_t>();
  at::parallel_for(0, v, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t first = ord[starts[k]];
      c[4 * k] = static_cast<int32_t>(b[first]);
      for (int a = 0; a < 3; ++a) c[4 * k + 1 + a] = static_cast<int32_t>(g[3 * first + a]);
      cnt[k] = starts[k + 1] - starts[k];
      for (int64_t p = starts[k]; p < starts[k + 1]; ++p) inv[ord[p]] = k;
    }
  });
  return {coords, counts, inverse};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> voxelize_cpu(
    const at::Tensor& coord_in, const at::Tensor& batch_in, c10::ArrayRef<double> voxel_size,
    c10::ArrayRef<double> origin_in) {
  check_voxelize_inputs(coord_in, batch_in, voxel_size, origin_in);
  const at::Tensor coord = coord_in.contiguous();
  const at::Tensor batch = batch_in.contiguous();
  const int64_t n = coord.size(0);
  const auto long_opts = coord.options().dtype(at::kLong);
  at::Tensor grid = at::empty({n, 3}, long_opts);
  const std::array<double, 3> size{voxel_size[0], voxel_size[1], voxel_size[2]};
  std::array<double, 3> origin{0, 0, 0};
  if (!origin_in.empty()) origin = {origin_in[0], origin_in[1], origin_in[2]};
  GridPass pass;
  AT_DISPATCH_FLOATING_TYPES(coord.scalar_type(), "voxelize_cpu", [&] {
    pass = floor_to_grid(coord.data_ptr<scalar_t>(), batch.data_ptr<int64_t>(), n, size, origin,
                         grid.data_ptr<int64_t>());
  });
  if (n == 0)
    return {at::empty({0, 4}, coord.options().dtype(at::kInt)), at::empty({0}, long_opts),
            at::empty({0}, long_opts), at::empty({0}, long_opts), origin_tensor(origin)};
  TORCH_CHECK(pass.finite, "voxelize: coordinates contain NaN or inf");
  TORCH_CHECK(pass.in_range, "voxelize: grid index exceeds int32; use a larger voxel size");
  // Without an explicit origin the grid is anchored at 0 (so a point's voxel never depends on
  // the other points of the call) and shifted by its minimum index to start at 0.
  const std::array<int64_t, 3> shift =
      origin_in.empty() ? std::array<int64_t, 3>{pass.lo[0], pass.lo[1], pass.lo[2]}
                        : std::array<int64_t, 3>{0, 0, 0};
  TORCH_CHECK(std::min({pass.lo[0] - shift[0], pass.lo[1] - shift[1], pass.lo[2] - shift[2],
                        pass.lo[3]}) >= 0,
              "voxelize: points lie below the grid origin or batch indices < 0");
  if (origin_in.empty()) {
    grid.sub_(at::tensor({shift[0], shift[1], shift[2]}, long_opts));
    for (int a = 0; a < 3; ++a) origin[a] = static_cast<double>(shift[a]) * size[a];
  }
  const int64_t ex = pass.hi[0] - shift[0] + 1, ey = pass.hi[1] - shift[1] + 1,
                ez = pass.hi[2] - shift[2] + 1, batches = pass.hi[3] + 1;
  check_key_space(batches, ex, ey, ez);

  at::Tensor order = at::empty({n}, long_opts);
  const int64_t* g = grid.data_ptr<int64_t>();
  const int64_t* b = batch.data_ptr<int64_t>();
  const int64_t extent[3] = {ex, ey, ez};
  const uint64_t max_key = static_cast<uint64_t>(batches * ex * ey * ez - 1);
  int64_t* ord = order.data_ptr<int64_t>();
  const std::vector<int64_t> starts =
      (max_key <= UINT32_MAX && n <= INT32_MAX)
          ? sort_and_split<uint32_t, int32_t>(g, b, n, extent, max_key, ord)
          : sort_and_split<uint64_t, int64_t>(g, b, n, extent, max_key, ord);
  auto [coords, counts, inverse] = voxel_outputs(starts, ord, g, b, n, long_opts);
  return {coords, inverse, counts, order, origin_tensor(origin)};
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
    // Rows are summed straight into the output in ascending point order: contiguous channel
    // loops the compiler vectorises, and the reference's summation order.
    at::parallel_for(0, v, 256, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t len = off[k + 1] - off[k];
        if (len == 0) continue;  // an empty segment stays zero rather than 0/0
        scalar_t* row = o + k * ch;
        for (int64_t p = off[k]; p < off[k + 1]; ++p) {
          const scalar_t* src = f + ord[p] * ch;
          for (int64_t j = 0; j < ch; ++j) row[j] += src[j];
        }
        const scalar_t count = static_cast<scalar_t>(len);
        for (int64_t j = 0; j < ch; ++j) row[j] /= count;
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
