// Superpixel pooling on the GPU. Pairings are grouped by segment (forward) or by feature row
// (backward) with one stable sort and a search for the group starts; one thread per (group,
// channel) then adds its column in ascending pairing order, so consecutive threads read
// consecutive channels of a row. No atomics: results are deterministic and add in the CPU
// kernels' order.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../superpixel_pool.h"

namespace pcseg {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

void check_range(const char* what, const at::Tensor& key, int64_t size) {
  if (key.numel() == 0) return;
  const auto [low, high] = at::aminmax(key);
  check_superpixel_pool_range(what, low.item<int64_t>(), high.item<int64_t>(), size);
}

// Members of each of m groups, ascending within a group: group g owns order[offsets[g],
// offsets[g + 1]).
std::tuple<at::Tensor, at::Tensor> group_by_key(const at::Tensor& key, int64_t m) {
  // The optional<bool> overload: a plain `true` would bind to sort(int64_t dim).
  const auto [sorted, order] = key.sort(std::optional<bool>(true), /*dim=*/0, false);
  return {order, at::searchsorted(sorted, at::arange(m + 1, key.options()))};
}

// out[g, j] = sum over members p of group g of rows[source[p], j] / divisor(p); the divisor is
// count[segment[p]] in the backward pass and absent (1) in the forward pass.
template <typename scalar_t>
__global__ void reduce_groups_kernel(const scalar_t* __restrict__ rows,
                                     const int64_t* __restrict__ source,
                                     const int64_t* __restrict__ order,
                                     const int64_t* __restrict__ offsets,
                                     const int64_t* __restrict__ count,
                                     const int64_t* __restrict__ segment, int64_t m, int64_t ch,
                                     bool mean, scalar_t* __restrict__ out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= m * ch) return;
  const int64_t g = t / ch, j = t % ch;
  const int64_t first = offsets[g], last = offsets[g + 1];
  scalar_t acc = 0;
  for (int64_t c = first; c < last; ++c) {
    const int64_t p = order[c];
    const scalar_t d = count ? static_cast<scalar_t>(count[segment[p]]) : scalar_t(1);
    acc += rows[source[p] * ch + j] / d;
  }
  out[t] = (mean && last > first) ? acc / static_cast<scalar_t>(last - first) : acc;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> superpixel_pool_cuda(const at::Tensor& feat_in,
                                                        const at::Tensor& index_in,
                                                        const at::Tensor& segment_in,
                                                        int64_t num_segments) {
  check_superpixel_pool_inputs(feat_in, index_in, segment_in, num_segments);
  const c10::cuda::CUDAGuard guard(feat_in.device());
  const at::Tensor feat = feat_in.contiguous(), index = index_in.contiguous(),
                   segment = segment_in.contiguous();
  check_range("index", index, feat.size(0));
  check_range("segment", segment, num_segments);
  const int64_t ch = feat.size(1);
  const auto [order, offsets] = group_by_key(segment, num_segments);
  at::Tensor out = at::zeros({num_segments, ch}, feat.options());
  const at::Tensor count = offsets.diff();
  if (num_segments * ch == 0) return {out, count};
  AT_DISPATCH_FLOATING_TYPES(feat.scalar_type(), "superpixel_pool_cuda", [&] {
    reduce_groups_kernel<scalar_t><<<blocks_for(num_segments * ch), kThreads, 0,
                                     c10::cuda::getCurrentCUDAStream()>>>(
        feat.data_ptr<scalar_t>(), index.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
        offsets.data_ptr<int64_t>(), nullptr, nullptr, num_segments, ch, true,
        out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, count};
}

at::Tensor superpixel_pool_backward_cuda(const at::Tensor& grad_in, const at::Tensor& count_in,
                                         const at::Tensor& index_in, const at::Tensor& segment_in,
                                         int64_t num_rows) {
  check_superpixel_pool_inputs(grad_in, index_in, segment_in, grad_in.size(0));
  TORCH_CHECK(num_rows >= 0, "superpixel_pool: num_rows must be >= 0, got ", num_rows);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), count = count_in.contiguous(),
                   index = index_in.contiguous(), segment = segment_in.contiguous();
  TORCH_CHECK(count.dim() == 1 && count.size(0) == grad.size(0) &&
                  count.scalar_type() == at::kLong && count.device() == grad.device(),
              "superpixel_pool: count must be int64 (S,) like grad, got ", count.sizes());
  check_range("index", index, num_rows);
  check_range("segment", segment, grad.size(0));
  const int64_t ch = grad.size(1);
  at::Tensor out = at::zeros({num_rows, ch}, grad.options());
  if (num_rows * ch == 0) return out;
  const auto [order, offsets] = group_by_key(index, num_rows);
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "superpixel_pool_backward_cuda", [&] {
    reduce_groups_kernel<scalar_t><<<blocks_for(num_rows * ch), kThreads, 0,
                                     c10::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), segment.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
        offsets.data_ptr<int64_t>(), count.data_ptr<int64_t>(), segment.data_ptr<int64_t>(),
        num_rows, ch, false, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) {
  m.impl("superpixel_pool", &superpixel_pool_cuda);
  m.impl("superpixel_pool_backward", &superpixel_pool_backward_cuda);
}

}  // namespace pcseg
