// Shared checks and constants of the depthwise sparse convolution kernels (CPU and CUDA).
// The spec is pcseg/ops/depthwise_conv.py; kernel maps are pcseg/ops/kernel_map.py's tables.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>

namespace pcseg {

// Outputs per partial sum of the weight gradient. Fixed, so the order in which the gradient is
// added up depends neither on the thread count nor on the device.
constexpr int64_t kWeightGradRows = 128;

// `values` (N, C) float32/float64 with C = `channels` (-1: any) and N = `rows` (-1: any).
inline void check_feature_matrix(const char* op, const char* name, const at::Tensor& values,
                                 int64_t rows, int64_t channels) {
  TORCH_CHECK(values.dim() == 2 && (values.scalar_type() == at::kFloat ||
                                    values.scalar_type() == at::kDouble),
              op, ": ", name, " must be float32 or float64 (N, C), got ", values.scalar_type(),
              " ", values.sizes());
  TORCH_CHECK((rows < 0 || values.size(0) == rows) && (channels < 0 || values.size(1) == channels),
              op, ": ", name, " must have shape (", rows, ", ", channels, ") (-1: any), got ",
              values.sizes());
}

// neighbours (N_out, K) and transposed (N_in, K), both int64, on `device`; returns K.
inline int64_t check_kernel_map(const char* op, const at::Tensor& neighbours,
                                const at::Tensor& transposed, int64_t n_in,
                                const at::Device& device) {
  TORCH_CHECK(neighbours.dim() == 2 && neighbours.size(1) >= 1 &&
                  neighbours.scalar_type() == at::kLong,
              op, ": neighbours must be int64 (N_out, K) with K >= 1, got ",
              neighbours.scalar_type(), " ", neighbours.sizes());
  const int64_t k = neighbours.size(1);
  TORCH_CHECK(transposed.dim() == 2 && transposed.size(0) == n_in && transposed.size(1) == k &&
                  transposed.scalar_type() == at::kLong,
              op, ": transposed must be int64 (N_in, K) = (", n_in, ", ", k, "), got ",
              transposed.scalar_type(), " ", transposed.sizes());
  TORCH_CHECK(neighbours.device() == device && transposed.device() == device, op,
              ": all tensors must be on ", device, ", neighbours on ", neighbours.device(),
              ", transposed on ", transposed.device());
  return k;
}

// The neighbour table indexes feature rows: a value outside [-1, N_in) must fail, not fault.
inline void check_neighbour_range(const char* op, int64_t low, int64_t high, int64_t n_in) {
  TORCH_CHECK(low >= -1 && high < n_in, op, ": neighbours must lie in [-1, ", n_in,
              ") (-1: no input), got [", low, ", ", high, "]");
}

}  // namespace pcseg
