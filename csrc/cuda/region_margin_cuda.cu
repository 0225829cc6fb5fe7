// Region margins on the GPU: children grouped by region with one stable sort of the parents (so
// ascending within a region, as on the CPU) and a search for the region starts; one thread per
// (region, class) then sums its column in float64 in that order, and one thread per region takes
// the top-2. No atomics, so results are deterministic and match the CPU kernel bit for bit.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../region_margin.h"

namespace pcseg {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

__global__ void region_mean_kernel(const float* __restrict__ probs,
                                   const int64_t* __restrict__ order,
                                   const int64_t* __restrict__ offsets, int64_t m, int64_t k,
                                   float* __restrict__ out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= m * k) return;
  const int64_t r = t / k, j = t % k;
  const int64_t first = offsets[r], last = offsets[r + 1];
  if (first == last) return;  // an empty region keeps its zero row
  double sum = 0.0;
  for (int64_t c = first; c < last; ++c) sum += static_cast<double>(probs[order[c] * k + j]);
  out[t] = static_cast<float>(sum / static_cast<double>(last - first));
}

__global__ void top2_kernel(const float* __restrict__ region_probs, int64_t m, int64_t k,
                            float* __restrict__ margin) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (r >= m) return;
  margin[r] = top2_margin(region_probs + r * k, k);  // a zero row gives 0
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> region_margin_cuda(const at::Tensor& probs_in,
                                                      const at::Tensor& parent_in,
                                                      int64_t num_regions) {
  check_region_margin_inputs(probs_in, parent_in, num_regions);
  const c10::cuda::CUDAGuard guard(probs_in.device());
  const at::Tensor probs = probs_in.contiguous(), parent = parent_in.contiguous();
  const int64_t n = probs.size(0), k = probs.size(1), m = num_regions;
  at::Tensor region_probs = at::zeros({m, k}, probs.options());
  at::Tensor margin = at::zeros({m}, probs.options());
  if (n == 0 || m == 0) {
    TORCH_CHECK(n == 0, "region_margin: parent values must lie in [0, 0), got ", n, " children");
    return {region_probs, margin};
  }
  const auto [low, high] = at::aminmax(parent);
  check_region_margin_parents(low.item<int64_t>(), high.item<int64_t>(), m);
  // The optional<bool> overload: a plain `true` would bind to sort(int64_t dim).
  const auto [sorted, order] = parent.sort(std::optional<bool>(true), /*dim=*/0, false);
  const at::Tensor offsets = at::searchsorted(sorted, at::arange(m + 1, parent.options()));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  region_mean_kernel<<<blocks_for(m * k), kThreads, 0, stream>>>(
      probs.data_ptr<float>(), order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), m, k,
      region_probs.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  top2_kernel<<<blocks_for(m), kThreads, 0, stream>>>(region_probs.data_ptr<float>(), m, k,
                                                      margin.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {region_probs, margin};
}

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) { m.impl("region_margin", &region_margin_cuda); }

}  // namespace pcseg
