// Superpixel pooling on the CPU. Forward: pairings grouped by segment with a counting sort, then
// one parallel pass over the segments that adds each pairing's feature row in ascending pairing
// order and divides once. Backward: pairings grouped by feature row the same way, each row adding
// grad[segment] / count[segment] of its pairings. No shared accumulators, so both directions are
// deterministic and add in the CUDA kernels' order.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <tuple>

#include "../superpixel_pool.h"
#include "grouping.h"

namespace pcseg {
namespace {

void check_range(const char* what, const at::Tensor& key, int64_t size) {
  if (key.numel() == 0) return;
  const auto [low, high] = key_range(key.data_ptr<int64_t>(), key.numel());
  check_superpixel_pool_range(what, low, high, size);
}

// out[g] = sum over the members p of group g, in member order, of rows[source[p]] / divisor(p).
template <typename scalar_t, typename Divisor>
void reduce_groups(const KeyGroups& groups, const int64_t* source, const scalar_t* rows,
                   int64_t ch, Divisor divisor, scalar_t* out) {
  const int64_t m = static_cast<int64_t>(groups.offsets.size()) - 1;
  at::parallel_for(0, m, 64, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      scalar_t* row = out + g * ch;
      for (int64_t c = groups.offsets[g]; c < groups.offsets[g + 1]; ++c) {
        const int64_t p = groups.order[c];
        const scalar_t* src = rows + source[p] * ch;
        const scalar_t d = divisor(p);
        for (int64_t j = 0; j < ch; ++j) row[j] += src[j] / d;
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> superpixel_pool_cpu(const at::Tensor& feat_in,
                                                       const at::Tensor& index_in,
                                                       const at::Tensor& segment_in,
                                                       int64_t num_segments) {
  check_superpixel_pool_inputs(feat_in, index_in, segment_in, num_segments);
  const at::Tensor feat = feat_in.contiguous(), index = index_in.contiguous(),
                   segment = segment_in.contiguous();
  check_range("index", index, feat.size(0));
  check_range("segment", segment, num_segments);
  const int64_t ch = feat.size(1);
  const KeyGroups groups = group_by_key(segment.data_ptr<int64_t>(), index.numel(), num_segments);
  at::Tensor out = at::zeros({num_segments, ch}, feat.options());
  at::Tensor count = at::from_blob(const_cast<int64_t*>(groups.offsets.data()),
                                   {num_segments + 1}, at::kLong)
                         .diff();
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "superpixel_pool_cpu", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    reduce_groups<scalar_t>(groups, index.data_ptr<int64_t>(), feat.data_ptr<scalar_t>(), ch,
                            [](int64_t) { return scalar_t(1); }, o);
    const int64_t* n = count.data_ptr<int64_t>();
    at::parallel_for(0, num_segments, 256, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        if (n[s] == 0) continue;  // a segment without pairings stays zero rather than 0/0
        const scalar_t size = static_cast<scalar_t>(n[s]);
        for (int64_t j = 0; j < ch; ++j) o[s * ch + j] /= size;
      }
    });
  });
  return {out, count};
}

at::Tensor superpixel_pool_backward_cpu(const at::Tensor& grad_in, const at::Tensor& count_in,
                                        const at::Tensor& index_in, const at::Tensor& segment_in,
                                        int64_t num_rows) {
  check_superpixel_pool_inputs(grad_in, index_in, segment_in, grad_in.size(0));
  TORCH_CHECK(num_rows >= 0, "superpixel_pool: num_rows must be >= 0, got ", num_rows);
  const at::Tensor grad = grad_in.contiguous(), count = count_in.contiguous(),
                   index = index_in.contiguous(), segment = segment_in.contiguous();
  TORCH_CHECK(count.dim() == 1 && count.size(0) == grad.size(0) &&
                  count.scalar_type() == at::kLong,
              "superpixel_pool: count must be int64 (S,) like grad, got ", count.sizes());
  check_range("index", index, num_rows);
  check_range("segment", segment, grad.size(0));
  const int64_t ch = grad.size(1);
  const KeyGroups groups = group_by_key(index.data_ptr<int64_t>(), index.numel(), num_rows);
  at::Tensor out = at::zeros({num_rows, ch}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "superpixel_pool_backward_cpu", [&] {
    const int64_t* seg = segment.data_ptr<int64_t>();
    const int64_t* n = count.data_ptr<int64_t>();
    reduce_groups<scalar_t>(groups, seg, grad.data_ptr<scalar_t>(), ch,
                            [&](int64_t p) { return static_cast<scalar_t>(n[seg[p]]); },
                            out.data_ptr<scalar_t>());
  });
  return out;
}

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("superpixel_pool", &superpixel_pool_cpu);
  m.impl("superpixel_pool_backward", &superpixel_pool_backward_cpu);
}

}  // namespace pcseg
