// Greedy suppressed selection on the GPU. The walk is sequential by definition (every choice
// depends on all earlier ones), so correctness comes first: the unlabelled points are put in
// walk order by torch's stable sort of their scores (then ties stay in index order), and one
// warp walks them. For each candidate lane 0 computes its cell and feature norm, lanes 0-26 each
// search one of the 27 neighbouring cells of a hash table of the chosen points held in global
// memory, and lane 0 inserts a survivor. Each step costs a few microseconds, fine for budgets of
// thousands; no atomics, so the result is deterministic, and the float64 tests are the CPU's
// (csrc/selection.h), so it is the same selection.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>

#include "../selection.h"

namespace pcseg {
namespace {

constexpr int kLanes = 32;  // one warp; lanes 0..26 search the 27 neighbouring cells

struct WalkInputs {
  const float* coord;
  const float* feat;
  const int64_t* scene;
  const int64_t* order;  // unlabelled points in walk order
  int64_t candidates, f, budget;
  double radius, cos_threshold, cell_size;
};

// Open-addressing table from (scene, cell) to the chain of the points chosen in that cell.
struct ChosenTable {
  int64_t* keys;    // (capacity, 4) scene, x, y, z of the cell held by each slot
  int64_t* head;    // (capacity,) latest chosen point of the slot's cell; -1 marks a free slot
  int64_t mask;     // capacity - 1; capacity is a power of two >= 2 x the most points chosen
  int64_t* next;    // (max chosen,) the point chosen before it in the same cell, or -1
  int64_t* points;  // (max chosen,) chosen point indices, in the order chosen
  double* norms;    // (max chosen,) their feature norms
};

// The slot holding `key`, else the free slot where it would go (insert) or -1 (lookup). At most
// half the slots are ever used, so the probe always ends.
__device__ int64_t find_slot(const ChosenTable& t, const int64_t (&key)[4], bool insert) {
  for (uint64_t s = cell_hash(key[0], key[1], key[2], key[3]) & t.mask;;
       s = (s + 1) & t.mask) {
    if (t.head[s] < 0) return insert ? static_cast<int64_t>(s) : -1;
    const int64_t* held = t.keys + 4 * s;
    if (held[0] == key[0] && held[1] == key[1] && held[2] == key[2] && held[3] == key[3])
      return static_cast<int64_t>(s);
  }
}

__device__ bool cell_suppresses(const WalkInputs& in, const ChosenTable& t, int64_t i,
                                const int64_t (&key)[4], double norm) {
  const int64_t s = find_slot(t, key, false);
  if (s < 0) return false;
  for (int64_t c = t.head[s]; c >= 0; c = t.next[c]) {
    const int64_t j = t.points[c];
    if (suppresses(in.coord + 3 * i, in.feat + in.f * i, norm, in.coord + 3 * j,
                   in.feat + in.f * j, t.norms[c], in.f, in.radius, in.cos_threshold))
      return true;
  }
  return false;
}

__device__ void insert_chosen(ChosenTable& t, const int64_t (&key)[4], int64_t count, int64_t i,
                              double norm) {
  const int64_t s = find_slot(t, key, true);
  if (t.head[s] < 0)
    for (int a = 0; a < 4; ++a) t.keys[4 * s + a] = key[a];
  t.next[count] = t.head[s];
  t.head[s] = count;
  t.points[count] = i;
  t.norms[count] = norm;
}

// One block of kLanes threads. Shared values written by lane 0 are read only after a
// __syncthreads, which also publishes its global-memory table writes to the other lanes.
__global__ void walk_kernel(WalkInputs in, ChosenTable table, int64_t* __restrict__ count_out,
                            int64_t* __restrict__ bad_point) {
  __shared__ int64_t count, cell[3];
  __shared__ double norm;
  __shared__ int suppressed, stop;
  const int lane = threadIdx.x;
  if (lane == 0) count = 0, stop = 0;
  __syncthreads();
  for (int64_t pos = 0; pos < in.candidates && count < in.budget; ++pos) {
    const int64_t i = in.order[pos];
    if (lane == 0) {
      suppressed = 0;
      for (int a = 0; a < 3; ++a)
        if (!cell_index(in.coord[3 * i + a], in.cell_size, &cell[a])) stop = 1;
      if (stop) *bad_point = i;
      norm = sqrt_rn(dot_in_order(in.feat + in.f * i, in.feat + in.f * i, in.f));
    }
    __syncthreads();
    if (stop) break;
    if (lane < 27) {
      const int64_t key[4] = {in.scene[i], cell[0] + lane / 9 - 1, cell[1] + lane / 3 % 3 - 1,
                              cell[2] + lane % 3 - 1};
      if (cell_suppresses(in, table, i, key, norm)) suppressed = 1;
    }
    __syncthreads();
    if (lane == 0 && !suppressed) {
      const int64_t key[4] = {in.scene[i], cell[0], cell[1], cell[2]};
      insert_chosen(table, key, count, i, norm);
      ++count;
    }
    __syncthreads();
  }
  if (lane == 0) *count_out = count;
}

// Unlabelled point indices in the walk order: ascending score, ties by index. -0.0 becomes +0.0
// first, since a comparison sort (the reference's) sees them as equal.
at::Tensor walk_order(const at::Tensor& score, const at::Tensor& labelled) {
  const at::Tensor candidates = at::nonzero(labelled.logical_not()).view(-1);  // ascending
  at::Tensor s = score.index_select(0, candidates);
  s = at::where(s == 0, at::zeros_like(s), s);
  // The optional<bool> overload: a plain `true` would bind to sort(int64_t dim).
  const at::Tensor perm = std::get<1>(s.sort(std::optional<bool>(true), /*dim=*/0, false));
  return candidates.index_select(0, perm).contiguous();
}

}  // namespace

at::Tensor suppressed_selection_cuda(const at::Tensor& coord_in, const at::Tensor& feat_in,
                                     const at::Tensor& score_in, const at::Tensor& scene_in,
                                     const at::Tensor& labelled_in, int64_t budget, double radius,
                                     double cos_threshold) {
  check_selection_inputs(coord_in, feat_in, score_in, scene_in, labelled_in, budget, radius,
                         cos_threshold);
  const c10::cuda::CUDAGuard guard(coord_in.device());
  const at::Tensor coord = coord_in.contiguous(), feat = feat_in.contiguous(),
                   score = score_in.contiguous(), scene = scene_in.contiguous();
  const auto long_opts = coord.options().dtype(at::kLong);
  if (budget == 0 || coord.size(0) == 0) return at::empty({0}, long_opts);
  TORCH_CHECK(at::isfinite(score).all().item<bool>(),
              "suppressed_selection: score contains NaN or inf");
  const at::Tensor order = walk_order(score, labelled_in);
  const int64_t candidates = order.size(0), most = std::min(budget, candidates);
  if (most == 0) return at::empty({0}, long_opts);
  int64_t capacity = 2;
  while (capacity < 2 * most) capacity *= 2;
  at::Tensor keys = at::empty({capacity, 4}, long_opts), head = at::full({capacity}, -1, long_opts);
  at::Tensor next = at::empty({most}, long_opts), points = at::empty({most}, long_opts);
  at::Tensor norms = at::empty({most}, coord.options().dtype(at::kDouble));
  at::Tensor count = at::zeros({1}, long_opts), bad_point = at::full({1}, -1, long_opts);
  const int64_t f = feat.size(1);
  const WalkInputs in{coord.data_ptr<float>(), f > 0 ? feat.data_ptr<float>() : nullptr,
                      scene.data_ptr<int64_t>(), order.data_ptr<int64_t>(), candidates, f,
                      budget, radius, cos_threshold, hash_cell_size(radius)};
  const ChosenTable table{keys.data_ptr<int64_t>(),  head.data_ptr<int64_t>(),
                          capacity - 1,              next.data_ptr<int64_t>(),
                          points.data_ptr<int64_t>(), norms.data_ptr<double>()};
  walk_kernel<<<1, kLanes, 0, c10::cuda::getCurrentCUDAStream()>>>(
      in, table, count.data_ptr<int64_t>(), bad_point.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t bad = bad_point.item<int64_t>();
  TORCH_CHECK(bad < 0, "suppressed_selection: a coordinate of point ", bad,
              " is not finite or too large for radius ", radius);
  return points.narrow(0, 0, count.item<int64_t>());
}

TORCH_LIBRARY_IMPL(pcseg, CUDA, m) {
  m.impl("suppressed_selection", &suppressed_selection_cuda);
}

}  // namespace pcseg
