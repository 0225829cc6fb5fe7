// Shared checks, spatial-hash cells and the suppression test of the suppressed-selection kernels
// (CPU and CUDA). The spec is pcseg/ops/selection.py. Every comparison at the radius or the
// cosine threshold is evaluated with the same float64 operations in the same order on both
// devices and in the reference, so a pair on the boundary is decided the same way everywhere.
#pragma once
#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace pcseg {

// |coordinate| / radius must stay below this: cell indices then fit int32, and the rounding of
// x / cell is far smaller than the slack that hash_cell_size leaves (see there).
constexpr double kMaxCellIndex = 1073741824.0;  // 2^30

// Cells are 2^-16 wider than the radius. A pair closer than the radius then has
// |x_a / s - x_b / s| < 1 - 2^-17, and rounding moves each quotient by less than 2^-23 (for
// |x / s| < 2^30), so the pair always lies in the same or adjacent cells along every axis.
inline double hash_cell_size(double radius) { return radius * (1.0 + 1.0 / 65536.0); }

inline void check_selection_inputs(const at::Tensor& coord, const at::Tensor& feat,
                                   const at::Tensor& score, const at::Tensor& scene,
                                   const at::Tensor& labelled, int64_t budget, double radius,
                                   double cos_threshold) {
  const int64_t n = coord.size(0);
  TORCH_CHECK(coord.dim() == 2 && coord.size(1) == 3 && coord.scalar_type() == at::kFloat,
              "suppressed_selection: coord must be float32 (N, 3), got ", coord.scalar_type(),
              " ", coord.sizes());
  TORCH_CHECK(feat.dim() == 2 && feat.size(0) == n && feat.scalar_type() == at::kFloat,
              "suppressed_selection: feat must be float32 (N, F), got ", feat.scalar_type(), " ",
              feat.sizes());
  TORCH_CHECK(score.dim() == 1 && score.size(0) == n && score.scalar_type() == at::kFloat,
              "suppressed_selection: score must be float32 (N,), got ", score.scalar_type(), " ",
              score.sizes());
  TORCH_CHECK(scene.dim() == 1 && scene.size(0) == n && scene.scalar_type() == at::kLong,
              "suppressed_selection: scene must be int64 (N,), got ", scene.scalar_type(), " ",
              scene.sizes());
  TORCH_CHECK(labelled.dim() == 1 && labelled.size(0) == n && labelled.scalar_type() == at::kBool,
              "suppressed_selection: labelled must be bool (N,), got ", labelled.scalar_type(),
              " ", labelled.sizes());
  for (const at::Tensor* t : {&feat, &score, &scene, &labelled})
    TORCH_CHECK(t->device() == coord.device(),
                "suppressed_selection: all tensors must be on one device");
  // Walk keys pack the point index into 32 bits.
  TORCH_CHECK(n < (int64_t{1} << 32), "suppressed_selection: at most 2^32 - 1 points, got ", n);
  TORCH_CHECK(budget >= 0, "suppressed_selection: budget must be >= 0, got ", budget);
  TORCH_CHECK(std::isfinite(radius) && radius > 0,
              "suppressed_selection: radius must be finite and > 0, got ", radius);
  TORCH_CHECK(cos_threshold >= -1 && cos_threshold <= 1,
              "suppressed_selection: cos_threshold must lie in [-1, 1], got ", cos_threshold);
}

// a * b, a + b, a / b and sqrt rounded one at a time: nvcc would otherwise fuse multiplies and
// adds into FMAs, and a pair on the radius or the threshold must be decided like on the CPU.
C10_HOST_DEVICE inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

C10_HOST_DEVICE inline double add_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

C10_HOST_DEVICE inline double div_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

C10_HOST_DEVICE inline double sqrt_rn(double a) {
#ifdef __CUDA_ARCH__
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// Sum of x[j] * y[j] in float64, j ascending: the order the reference adds its columns in.
C10_HOST_DEVICE inline double dot_in_order(const float* x, const float* y, int64_t f) {
  double sum = 0.0;
  for (int64_t j = 0; j < f; ++j)
    sum = add_rn(sum, mul_rn(static_cast<double>(x[j]), static_cast<double>(y[j])));
  return sum;
}

// sqrt(dx^2 + dy^2 + dz^2) in float64, added in x, y, z order, as the reference does.
C10_HOST_DEVICE inline double distance(const float* a, const float* b) {
  double sum = 0.0;
  for (int axis = 0; axis < 3; ++axis) {
    const double d = static_cast<double>(a[axis]) - static_cast<double>(b[axis]);
    sum = add_rn(sum, mul_rn(d, d));
  }
  return sqrt_rn(sum);
}

// The spec's test: closer than the radius (strictly) and cosine similarity above the threshold
// (strictly), the cosine being dot / (|a| |b|), or 0 when either norm is 0. The caller matches
// the scenes.
C10_HOST_DEVICE inline bool suppresses(const float* xyz_a, const float* feat_a, double norm_a,
                                       const float* xyz_b, const float* feat_b, double norm_b,
                                       int64_t f, double radius, double cos_threshold) {
  if (!(distance(xyz_a, xyz_b) < radius)) return false;
  const double denom = mul_rn(norm_a, norm_b);
  const double cosine = denom > 0 ? div_rn(dot_in_order(feat_a, feat_b, f), denom) : 0.0;
  return cosine > cos_threshold;
}

// Cell index of one coordinate; false when it is not finite or too far out for the cell size
// (the cast would be undefined).
C10_HOST_DEVICE inline bool cell_index(float x, double cell, int64_t* out) {
  const double q = div_rn(static_cast<double>(x), cell);
  if (!(fabs(q) < kMaxCellIndex)) return false;
  *out = static_cast<int64_t>(floor(q));
  return true;
}

// Hash of (scene, cell x, y, z) for both devices' tables: a multiply-xorshift mix per field.
C10_HOST_DEVICE inline uint64_t cell_hash(int64_t scene, int64_t x, int64_t y, int64_t z) {
  uint64_t h = static_cast<uint64_t>(scene) * 0x9E3779B97F4A7C15ULL;
  const int64_t parts[3] = {x, y, z};
  for (int a = 0; a < 3; ++a) {
    h ^= static_cast<uint64_t>(parts[a]) + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 31;
  }
  return h;
}

}  // namespace pcseg
