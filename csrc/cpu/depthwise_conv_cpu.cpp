// Depthwise sparse convolution on the CPU. The forward (and the feature gradient, which is the
// same gather over the transposed map) is output-centric: each output row sums its neighbours'
// rows times the offset weights in ascending offset order, so no two threads write one row. The
// weight gradient adds fixed blocks of kWeightGradRows outputs into per-block partial sums, then
// the blocks in ascending order in float64. No shared accumulators: results are bitwise the same
// for any thread count. Neighbour values are range-checked as they are read (no extra pass).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "../depthwise_conv.h"

namespace pcseg {
namespace {

constexpr const char* kConvOp = "depthwise_sparse_conv";
constexpr const char* kGradOp = "depthwise_sparse_conv_weight_grad";

// Rows per task of at::parallel_for: about ATen's grain of 32k multiply-adds.
int64_t row_grain(int64_t k, int64_t c) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, k * c));
}

// Raises the range error for a table in which a read found a value outside [-1, n_in).
[[noreturn]] void fail_range(const char* op, const at::Tensor& neighbours, int64_t n_in) {
  const auto [low, high] = at::aminmax(neighbours);
  check_neighbour_range(op, low.item<int64_t>(), high.item<int64_t>(), n_in);
  TORCH_CHECK(false, op, ": neighbours out of range");  // not reached
}

template <typename scalar_t>
bool gather_conv(const scalar_t* x, const scalar_t* w, const int64_t* nb, int64_t n_out,
                 int64_t n_in, int64_t k, int64_t c, scalar_t* out) {
  std::atomic<bool> out_of_range{false};
  at::parallel_for(0, n_out, row_grain(k, c), [&](int64_t begin, int64_t end) {
    bool bad = false;
    for (int64_t o = begin; o < end; ++o) {
      scalar_t* __restrict__ row = out + o * c;
      std::fill(row, row + c, scalar_t(0));
      const int64_t* table = nb + o * k;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t i = table[j];
        if (i < 0 || i >= n_in) {
          bad |= i != -1;
          continue;
        }
        const scalar_t* __restrict__ src = x + i * c;
        const scalar_t* __restrict__ wj = w + j * c;
        for (int64_t ch = 0; ch < c; ++ch) row[ch] += wj[ch] * src[ch];
      }
    }
    if (bad) out_of_range = true;
  });
  return !out_of_range;
}

template <typename scalar_t>
bool weight_grad(const scalar_t* g, const scalar_t* x, const int64_t* nb, int64_t n_out,
                 int64_t n_in, int64_t k, int64_t c, scalar_t* partial, int64_t blocks,
                 scalar_t* gw) {
  const int64_t kc = k * c;
  std::atomic<bool> out_of_range{false};
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    bool bad = false;
    for (int64_t b = begin; b < end; ++b) {
      scalar_t* part = partial + b * kc;
      std::fill(part, part + kc, scalar_t(0));
      const int64_t last = std::min(n_out, (b + 1) * kWeightGradRows);
      for (int64_t o = b * kWeightGradRows; o < last; ++o) {
        const scalar_t* __restrict__ grow = g + o * c;
        const int64_t* table = nb + o * k;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t i = table[j];
          if (i < 0 || i >= n_in) {
            bad |= i != -1;
            continue;
          }
          scalar_t* __restrict__ pj = part + j * c;
          const scalar_t* __restrict__ src = x + i * c;
          for (int64_t ch = 0; ch < c; ++ch) pj[ch] += grow[ch] * src[ch];
        }
      }
    }
    if (bad) out_of_range = true;
  });
  if (out_of_range) return false;
  // Blocks in ascending order, every (offset, channel) column on its own: a fixed order.
  at::parallel_for(0, kc, 256, [&](int64_t begin, int64_t end) {
    std::vector<double> sum(end - begin, 0.0);
    for (int64_t b = 0; b < blocks; ++b) {
      const scalar_t* part = partial + b * kc;
      for (int64_t j = begin; j < end; ++j) sum[j - begin] += static_cast<double>(part[j]);
    }
    for (int64_t j = begin; j < end; ++j) gw[j] = static_cast<scalar_t>(sum[j - begin]);
  });
  return true;
}

}  // namespace

at::Tensor depthwise_sparse_conv_cpu(const at::Tensor& features_in, const at::Tensor& weight_in,
                                     const at::Tensor& neighbours_in,
                                     const at::Tensor& transposed) {
  check_feature_matrix(kConvOp, "features", features_in, -1, -1);
  const int64_t n_in = features_in.size(0), c = features_in.size(1);
  const int64_t k =
      check_kernel_map(kConvOp, neighbours_in, transposed, n_in, features_in.device());
  check_feature_matrix(kConvOp, "weight", weight_in, k, c);
  TORCH_CHECK(weight_in.scalar_type() == features_in.scalar_type(), kConvOp,
              ": weight and features must have one dtype, got ", weight_in.scalar_type(), " and ",
              features_in.scalar_type());
  TORCH_CHECK(weight_in.device() == features_in.device(), kConvOp, ": features on ",
              features_in.device(), ", weight on ", weight_in.device());
  const at::Tensor features = features_in.contiguous(), weight = weight_in.contiguous(),
                   neighbours = neighbours_in.contiguous();
  const int64_t n_out = neighbours.size(0);
  at::Tensor out = at::empty({n_out, c}, features.options());
  if (n_out * c == 0) return out;
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), kConvOp, [&] {
    ok = gather_conv<scalar_t>(features.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(),
                               neighbours.data_ptr<int64_t>(), n_out, n_in, k, c,
                               out.data_ptr<scalar_t>());
  });
  if (!ok) fail_range(kConvOp, neighbours, n_in);
  return out;
}

at::Tensor depthwise_sparse_conv_weight_grad_cpu(const at::Tensor& grad_in,
                                                 const at::Tensor& features_in,
                                                 const at::Tensor& neighbours_in,
                                                 const at::Tensor& transposed) {
  check_feature_matrix(kGradOp, "features", features_in, -1, -1);
  const int64_t n_in = features_in.size(0), c = features_in.size(1);
  const int64_t k =
      check_kernel_map(kGradOp, neighbours_in, transposed, n_in, features_in.device());
  const int64_t n_out = neighbours_in.size(0);
  check_feature_matrix(kGradOp, "grad_out", grad_in, n_out, c);
  TORCH_CHECK(grad_in.scalar_type() == features_in.scalar_type(), kGradOp,
              ": grad_out and features must have one dtype, got ", grad_in.scalar_type(), " and ",
              features_in.scalar_type());
  TORCH_CHECK(grad_in.device() == features_in.device(), kGradOp, ": features on ",
              features_in.device(), ", grad_out on ", grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), features = features_in.contiguous(),
                   neighbours = neighbours_in.contiguous();
  at::Tensor grad_weight = at::zeros({k, c}, features.options());
  if (n_out * c == 0) return grad_weight;
  const int64_t blocks = (n_out + kWeightGradRows - 1) / kWeightGradRows;
  at::Tensor partial = at::empty({blocks, k * c}, features.options());
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), kGradOp, [&] {
    ok = weight_grad<scalar_t>(grad.data_ptr<scalar_t>(), features.data_ptr<scalar_t>(),
                               neighbours.data_ptr<int64_t>(), n_out, n_in, k, c,
                               partial.data_ptr<scalar_t>(), blocks,
                               grad_weight.data_ptr<scalar_t>());
  });
  if (!ok) fail_range(kGradOp, neighbours, n_in);
  return grad_weight;
}

TORCH_LIBRARY_IMPL(pcseg, CPU, m) {
  m.impl("depthwise_sparse_conv", &depthwise_sparse_conv_cpu);
  m.impl("depthwise_sparse_conv_weight_grad", &depthwise_sparse_conv_weight_grad_cpu);
}

}  // namespace pcseg
