// Shared checks and top-2 rule of the region-margin kernels (CPU and CUDA).
// The spec is pcseg/ops/region_margin.py; the kernels sum in the same order, so they agree bitwise.
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cstdint>

namespace pcseg {

// Checks that need no data; the parent range is checked by each kernel on its device.
inline void check_region_margin_inputs(const at::Tensor& probs, const at::Tensor& parent,
                                       int64_t num_regions) {
  TORCH_CHECK(probs.dim() == 2 && probs.size(1) >= 2 && probs.scalar_type() == at::kFloat,
              "region_margin: probs must be float32 (N, K) with K >= 2, got ",
              probs.scalar_type(), " ", probs.sizes());
  TORCH_CHECK(parent.dim() == 1 && parent.size(0) == probs.size(0) &&
                  parent.scalar_type() == at::kLong,
              "region_margin: parent must be int64 (N,) like probs, got ", parent.scalar_type(),
              " ", parent.sizes());
  TORCH_CHECK(num_regions >= 0, "region_margin: num_regions must be >= 0, got ", num_regions);
  TORCH_CHECK(parent.device() == probs.device(), "region_margin: probs on ", probs.device(),
              ", parent on ", parent.device());
}

// Parents index the output rows, so a value outside [0, M) must fail here, not fault in memory.
inline void check_region_margin_parents(int64_t low, int64_t high, int64_t num_regions) {
  TORCH_CHECK(low >= 0 && high < num_regions, "region_margin: parent values must lie in [0, ",
              num_regions, "), got [", low, ", ", high, "]");
}

// Top-1 minus top-2 of a row of k >= 2 values, as torch.topk(2) picks them: a repeated maximum
// counts twice, so two equal maxima give 0. Selects instead of branches: on probabilities the
// branches of the obvious loop mispredict often.
C10_HOST_DEVICE inline float top2_margin(const float* row, int64_t k) {
  float first = row[0] > row[1] ? row[0] : row[1];
  float second = row[0] > row[1] ? row[1] : row[0];
  for (int64_t j = 2; j < k; ++j) {
    const float v = row[j];
    const float low = v < first ? v : first;  // the value that is not the new maximum
    first = v < first ? first : v;
    second = low > second ? low : second;
  }
  return first - second;
}

}  // namespace pcseg
