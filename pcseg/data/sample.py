"""The sample dict: the one contract between readers, transforms and models.

Every reader returns a ``dict[str, numpy.ndarray | str]`` with these keys:

========== =============== ================================================================
key        dtype / shape   meaning
========== =============== ================================================================
coord      float32 (N, 3)  point coordinates in metres
feat       float32 (N, C)  input features (remission, colour, ...); C may be 0
label      int64 (N,)      class index 0..K-1 of the dataset's meta; ``IGNORE_INDEX`` = -1
label_mask bool (N,)       which labels a method may see (all True unless a budget applies)
remission  float32 (N,)   optional: LiDAR remission / intensity
reflectivity float32 (N,) optional: range-corrected remission (``reflectivity`` transform)
color      float32 (N, 3)  optional: RGB in [0, 1]
instance   int64 (N,)      optional: instance id, 0 = none
normal     float32 (N, 3)  optional: unit surface normals
point_index int64 (N,)    optional: index of the point in the file it was read from, kept
                           through crops so predictions can be written back
frame_pose float64 (4, 4)  optional: sensor-to-world pose of the scan
coord_offset float64 (3,) optional: offset removed from large (e.g. UTM) coordinates
scene_id   str             identifier of the scan or room, unique within a dataset
========== =============== ================================================================

The per-point keys are listed in :data:`POINT_KEYS`; :func:`index_points` selects points across
all of them at once so that crops and subsampling keep them aligned.

Image-to-LiDAR keys, added by datasets that read cameras (``cameras:`` option):

========== ==================== ===========================================================
images     list of uint8 (H,W,3) one RGB image per camera
superpixels list of uint8 (H,W)  SLIC superpixel ids of each image
pairing    int64 (P, 4)          (point index, camera index, row, col) of each point-pixel pair
========== ==================== ===========================================================
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = -1

Sample = dict[str, "np.ndarray | str"]

POINT_KEYS: frozenset[str] = frozenset(
    {
        "coord",
        "feat",
        "label",
        "label_mask",
        "remission",
        "reflectivity",
        "color",
        "instance",
        "normal",
        "point_index",
    }
)


def make_sample(
    *,
    coord: np.ndarray,
    feat: np.ndarray,
    label: np.ndarray | None,
    scene_id: str,
    **optional: np.ndarray,
) -> Sample:
    """Assemble a sample dict with the contract's dtypes; a missing label becomes all-ignore."""
    n = len(coord)
    if label is None:
        label = np.full(n, IGNORE_INDEX, dtype=np.int64)
    sample: Sample = {
        "coord": np.ascontiguousarray(coord, dtype=np.float32),
        "feat": np.ascontiguousarray(feat, dtype=np.float32).reshape(n, -1),
        "label": np.ascontiguousarray(label, dtype=np.int64),
        "label_mask": np.ones(n, dtype=bool),
        "scene_id": scene_id,
    }
    for key, value in optional.items():
        if value is not None:
            sample[key] = value
    return sample


def index_points(sample: Sample, index: np.ndarray) -> Sample:
    """Select points of every per-point array at once.

    Args:
        sample: the sample dict.
        index: boolean mask (N,) or integer indices (M,) into the points.

    Returns:
        A new dict: each key of :data:`POINT_KEYS` present in ``sample`` indexed by ``index``
        (new arrays); ``pairing`` rows renumbered to the kept points (rows of dropped points
        removed, a repeated point's rows repeated); all other keys (``scene_id``,
        ``frame_pose``, images, ...) as they are.
    """
    index = np.asarray(index)
    selected = {
        key: value[index] if key in POINT_KEYS else value  # type: ignore[index]
        for key, value in sample.items()
    }
    if "pairing" in sample:
        selected["pairing"] = _select_pairing(sample["pairing"], index)
    return selected


def _select_pairing(pairing: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Pairing rows (point, camera, row, col) for the points ``index`` selects, renumbered."""
    chosen = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
    order = np.argsort(pairing[:, 0], kind="stable")
    sorted_points = pairing[order, 0]
    start = np.searchsorted(sorted_points, chosen, side="left")
    stop = np.searchsorted(sorted_points, chosen, side="right")
    counts = stop - start
    rows = np.repeat(start - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    result = pairing[order[rows]].copy()
    result[:, 0] = np.repeat(np.arange(len(chosen)), counts)
    return result
