// Greedy suppressed selection on the CPU, in time linear in N for a small budget:
// - the walk order is the stable ascending argsort of the scores, but only its first k entries
//   are ever needed: each thread keeps the lowest k (score, index) keys of its share of the
//   unlabelled points in a buffer of 2k that is cut back to k by nth_element whenever it fills
//   (amortised O(1) per point, O(k) memory), and the union is cut to k and sorted;
// - k starts at kCandidatesPerPick x the budget and doubles whenever suppression uses them up
//   (the sorted lowest 2k keys begin with the sorted lowest k, so the walk resumes in place);
// - chosen points live in a hash map from (scene, cell of about the radius) to a chain of the
//   chosen points in that cell, so a candidate is tested against its 27 neighbouring cells only.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "../selection.h"

namespace pcseg {
namespace {

// Candidates sorted per point chosen before the walk has to sort more: a few per pick covers
// the points that light suppression skips, without sorting much more than the walk reads.
constexpr int64_t kCandidatesPerPick = 4;

// Order-preserving key of (score, index): the float's bits flipped into unsigned order above the
// 32-bit index, so integer order is the stable argsort's order. -0.0 becomes +0.0 first because
// a comparison sort sees them as equal and orders them by index.
inline uint64_t walk_key(float score, int64_t index) {
  if (score == 0.0f) score = 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &score, sizeof bits);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | static_cast<uint64_t>(index);
}

// Lowest k keys of the unlabelled points in [begin, end), unsorted. Keys are unique, so a key
// above the k-th smallest kept so far can never enter the lowest k.
std::vector<uint64_t> lowest_keys_of_range(const float* score, const bool* labelled,
                                           int64_t begin, int64_t end, int64_t k,
                                           bool& finite) {
  std::vector<uint64_t> kept;
  kept.reserve(std::min<int64_t>(2 * k, end - begin));
  uint64_t bound = UINT64_MAX;
  for (int64_t i = begin; i < end; ++i) {
    finite &= std::isfinite(score[i]);
    if (labelled[i]) continue;
    const uint64_t key = walk_key(score[i], i);
    if (key >= bound) continue;
    kept.push_back(key);
    if (static_cast<int64_t>(kept.size()) == 2 * k) {
      std::nth_element(kept.begin(), kept.begin() + (k - 1), kept.end());
      kept.resize(k);
      bound = kept[k - 1];  // nth_element left the k-th smallest there
    }
  }
  return kept;
}

// The first k steps of the walk (fewer when fewer points are unlabelled), ascending.
std::vector<uint64_t> lowest_keys(const float* score, const bool* labelled, int64_t n,
                                  int64_t k) {
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / 65536));
  std::vector<std::vector<uint64_t>> parts(chunks);
  std::vector<char> finite(chunks, 1);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      bool ok = true;
      parts[c] = lowest_keys_of_range(score, labelled, n * c / chunks, n * (c + 1) / chunks, k, ok);
      finite[c] = ok;
    }
  });
  TORCH_CHECK(std::all_of(finite.begin(), finite.end(), [](char ok) { return ok != 0; }),
              "suppressed_selection: score contains NaN or inf");
  std::vector<uint64_t> keys;
  for (const auto& part : parts) keys.insert(keys.end(), part.begin(), part.end());
  if (static_cast<int64_t>(keys.size()) > k) {
    std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end());
    keys.resize(k);
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

struct CellKey {
  int64_t scene, x, y, z;
  bool operator==(const CellKey& o) const {
    return scene == o.scene && x == o.x && y == o.y && z == o.z;
  }
};

struct CellKeyHash {
  size_t operator()(const CellKey& key) const {
    return static_cast<size_t>(cell_hash(key.scene, key.x, key.y, key.z));
  }
};

// The points chosen so far, chained per (scene, cell): head_ maps a cell to its latest chosen
// point (a position in points_), next_ links each to the one chosen before it in that cell.
class ChosenSet {
 public:
  ChosenSet(const float* coord, const float* feat, const int64_t* scene, int64_t f, double radius,
            double cos_threshold)
      : coord_(coord), feat_(feat), scene_(scene), f_(f), radius_(radius),
        cos_threshold_(cos_threshold) {}

  int64_t size() const { return static_cast<int64_t>(points_.size()); }
  const std::vector<int64_t>& points() const { return points_; }

  // True when a chosen point of i's scene in the 27 cells around `cell` suppresses point i.
  bool suppressed(int64_t i, const int64_t (&cell)[3], double norm) const {
    if (head_.empty()) return false;
    for (int64_t dx = -1; dx <= 1; ++dx)
      for (int64_t dy = -1; dy <= 1; ++dy)
        for (int64_t dz = -1; dz <= 1; ++dz) {
          const auto hit = head_.find({scene_[i], cell[0] + dx, cell[1] + dy, cell[2] + dz});
          if (hit == head_.end()) continue;
          for (int64_t c = hit->second; c >= 0; c = next_[c]) {
            const int64_t j = points_[c];
            if (suppresses(coord_ + 3 * i, feat_ + f_ * i, norm, coord_ + 3 * j, feat_ + f_ * j,
                           norms_[c], f_, radius_, cos_threshold_))
              return true;
          }
        }
    return false;
  }

  void add(int64_t i, const int64_t (&cell)[3], double norm) {
    auto [slot, inserted] = head_.try_emplace({scene_[i], cell[0], cell[1], cell[2]}, -1);
    next_.push_back(slot->second);
    slot->second = size();
    points_.push_back(i);
    norms_.push_back(norm);
  }

 private:
  const float* coord_;
  const float* feat_;
  const int64_t* scene_;
  int64_t f_;
  double radius_, cos_threshold_;
  std::unordered_map<CellKey, int64_t, CellKeyHash> head_;
  std::vector<int64_t> next_, points_;
  std::vector<double> norms_;
};

}  // namespace

at::Tensor suppressed_selection_cpu(const at::Tensor& coord_in, const at::Tensor& feat_in,
                                    const at::Tensor& score_in, const at::Tensor& scene_in,
                                    const at::Tensor& labelled_in, int64_t budget, double radius,
                                    double cos_threshold) {
  check_selection_inputs(coord_in, feat_in, score_in, scene_in, labelled_in, budget, radius,
                         cos_threshold);
  const at::Tensor coord = coord_in.contiguous(), feat = feat_in.contiguous(),
                   score = score_in.contiguous(), scene = scene_in.contiguous(),
                   labelled = labelled_in.contiguous();
  const int64_t n = coord.size(0), f = feat.size(1);
  const auto long_opts = coord.options().dtype(at::kLong);
  if (budget == 0 || n == 0) return at::empty({0}, long_opts);
  const float* xyz = coord.data_ptr<float>();
  const float* ft = f > 0 ? feat.data_ptr<float>() : nullptr;  // no columns: never read
  const float* sc = score.data_ptr<float>();
  const bool* lab = labelled.data_ptr<bool>();
  const double cell_size = hash_cell_size(radius);
  ChosenSet chosen(xyz, ft, scene.data_ptr<int64_t>(), f, radius, cos_threshold);

  int64_t k = std::min(n, std::min(budget, n) * kCandidatesPerPick);
  std::vector<uint64_t> walk = lowest_keys(sc, lab, n, k);
  for (size_t pos = 0; chosen.size() < budget;) {
    if (pos == walk.size()) {
      if (static_cast<int64_t>(walk.size()) < k || k == n) break;  // every candidate walked
      k = std::min(n, 2 * k);
      walk = lowest_keys(sc, lab, n, k);
      continue;
    }
    const int64_t i = static_cast<int64_t>(walk[pos++] & 0xFFFFFFFFULL);
    int64_t cell[3];
    for (int a = 0; a < 3; ++a)
      TORCH_CHECK(cell_index(xyz[3 * i + a], cell_size, &cell[a]),
                  "suppressed_selection: coordinate ", xyz[3 * i + a], " of point ", i,
                  " is not finite or too large for radius ", radius);
    const double norm = sqrt_rn(dot_in_order(ft + f * i, ft + f * i, f));
    if (!chosen.suppressed(i, cell, norm)) chosen.add(i, cell, norm);
  }
  const std::vector<int64_t>& picked = chosen.points();
  at::Tensor out = at::empty({static_cast<int64_t>(picked.size())}, long_opts);
  std::copy(picked.begin(), picked.end(), out.data_ptr<int64_t>());
  return out;
}

TORCH_LIBRARY_IMPL(pcseg, CPU, m) { m.impl("suppressed_selection", &suppressed_selection_cpu); }

}  // namespace pcseg
