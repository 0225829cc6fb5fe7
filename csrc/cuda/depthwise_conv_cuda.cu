// Depthwise sparse convolution on the GPU. Forward (and the feature gradient, the same gather over
// the transposed map): one thread per (output, channel), channels fastest so a warp reads
// consecutive channels of one neighbour row; it sums its offsets in ascending order and writes
// once. Weight gradient: one thread per (block of kWeightGradRows outputs, offset, channel) adds
// its block in ascending output order into a partial sum, then one thread per (offset, channel)
// adds the partials in ascending block order in float64. No atomics: results are bitwise
// reproducible run to run. The neighbour table is range-checked before any kernel reads it.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../depthwise_conv.h"

namespace pcseg {
namespace {

constexpr int kThreads = 256;
constexpr const char* kConvOp = "depthwise_sparse_conv";
constexpr const char* kGradOp = "depthwise_sparse_conv_weight_grad";

inline unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>((n + kThreads - 1) / kThreads);
}

template <typename scalar_t>
__global__ void gather_conv_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ w,
                                   const int64_t* __restrict__ nb, int64_t n_out, int64_t k,
                                   int64_t c, scalar_t* __restrict__ out) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= n_out * c) return;
  const int64_t o = t / c, ch = t % c;
  const int64_t* table = nb + o * k;
  scalar_t sum = 0;
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = table[j];
    if (i >= 0) sum += w[j * c + ch] * x[i * c + ch];
  }
  out[t] = sum;
}

// grid (row blocks, offsets); threads stride over the channels.
template <typename scalar_t>
__global__ void weight_grad_partial_kernel(const scalar_t* __restrict__ g,
                                           const scalar_t* __restrict__ x,
                                           const int64_t* __restrict__ nb, int64_t n_out,
                                           int64_t k, int64_t c, scalar_t* __restrict__ partial) {
  const int64_t b = blockIdx.x, j = blockIdx.y;
  const int64_t first = b * kWeightGradRows;
  const int64_t last = n_out < first + kWeightGradRows ? n_out : first + kWeightGradRows;
  for (int64_t ch = threadIdx.x; ch < c; ch += blockDim.x) {
    scalar_t sum = 0;
    for (int64_t o = first; o < last; ++o) {
      const int64_t i = nb[o * k + j];
      if (i >= 0) sum += g[o * c + ch] * x[i * c + ch];
    }
    partial[(b * k + j) * c + ch] = sum;
  }
}

template <typename scalar_t>
__global__ void weight_grad_reduce_kernel(const scalar_t* __restrict__ partial, int64_t blocks,
                                          int64_t kc, scalar_t* __restrict__ gw) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= kc) return;
  double sum = 0.0;
  for (int64_t b = 0; b < blocks; ++b) sum += static_cast<double>(partial[b * kc + t]);
  gw[t] = static_cast<scalar_t>(sum);
}

// Checks the table's values before a kernel uses them as row indices.
void check_range(const char* op, const at::Tensor& neighbours, int64_t n_in) {
  if (neighbours.numel() == 0) return;
  const auto [low, high] = at::aminmax(neighbours);
  check_neighbour_range(op, low.item<int64_t>(), high.item<int64_t>(), n_in);
}

void check_same(const char* op, const char* name, const at::Tensor& values,
                const at::Tensor& features) {
  TORCH_CHECK(values.scalar_type() == features.scalar_type(), op, ": ", name,
              " and features must have one dtype, got ", values.scalar_type(), " and ",
              features.scalar_type());
  TORCH_CHECK(values.device() == features.device(), op, ": features on ", features.device(), ", ",
              name, " on ", values.device());
}

}  // namespace

at::Tensor depthwise_sparse_conv_cuda(const at::Tensor& features_in, const at::Tensor& weight_in,
                                      const at::Tensor& neighbours_in,
                                      const at::Tensor& transposed) {
  check_feature_matrix(kConvOp, "features", features_in, -1, -1);
  const int64_t n_in = features_in.size(0), c = features_in.size(1);
  const int64_t k =
      check_kernel_map(kConvOp, neighbours_in, transposed, n_in, features_in.device());
  check_feature_matrix(kConvOp, "weight", weight_in, k, c);
  check_same(kConvOp, "weight", weight_in, features_in);
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = features_in.contiguous(), weight = weight_in.contiguous(),
                   neighbours = neighbours_in.contiguous();
  const int64_t n_out = neighbours.size(0);
  check_range(kConvOp, neighbours, n_in);
  at::Tensor out = at::empty({n_out, c}, features.options());
  if (n_out * c == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), kConvOp, [&] {
    gather_conv_kernel<scalar_t><<<blocks_for(n_out * c), kThreads, 0,
                                   c10::cuda::getCurrentCUDAStream()>>>(
        features.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
        neighbours.data_ptr<int64_t>(), n_out, k, c, out.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor depthwise_sparse_conv_weight_grad_cuda(const at::Tensor& grad_in,
                                                  const at::Tensor& features_in,
                                                  const at::Tensor& neighbours_in,
                                                  const at::Tensor& transposed) {
  check_feature_matrix(kGradOp, "features", features_in, -1, -1);
  const int64_t n_in = features_in.size(0), c = features_in.size(1);
  const int64_t k =
      check_kernel_map(kGradOp, neighbours_in, transposed, n_in, features_in.device());
  const int64_t n_out = neighbours_in.size(0);
  check_feature_matrix(kGradOp, "grad_out", grad_in, n_out, c);
  check_same(kGradOp, "grad_out", grad_in, features_in);
  TORCH_CHECK(k <= 65535, kGradOp, ": at most 65535 kernel offsets, got ", k);
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor grad = grad_in.contiguous(), features = features_in.contiguous(),
                   neighbours = neighbours_in.contiguous();
  check_range(kGradOp, neighbours, n_in);
  at::Tensor grad_weight = at::zeros({k, c}, features.options());
  if (n_out * c == 0) return grad_weight;
  const int64_t blocks = (n_out + kWeightGradRows - 1) / kWeightGradRows;
  at::Tensor partial = at::empty({blocks, k * c}, features.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int threads = static_cast<int>(std::min<int64_t>(kThreads, (c + 31) / 32 * 32));
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), kGradOp, [&] {
    weight_grad_partial_kernel<scalar_t>
        <<<dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(k)), threads, 0, stream>>>(
            grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(),
            neighbours.data_ptr<int64_t>(), n_out, k, c, partial.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    weight_grad_reduce_kernel<scalar_t><<<blocks_for(k * c), kThreads, 0, stream>>>(
        partial.data_ptr<scalar_t>(), blocks, k * c, grad_weight.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_weight;
}

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) {
  m.impl("depthwise_sparse_conv", &depthwise_sparse_conv_cuda);
  m.impl("depthwise_sparse_conv_weight_grad", &depthwise_sparse_conv_weight_grad_cuda);
}

}  // namespace pcseg
