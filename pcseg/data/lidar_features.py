"""LiDAR-specific point inputs computed from a scan in its sensor frame.

Reflectivity is LiM3D's reflectivity prior as its paper defines it: the remission corrected for
the 1/R² fall-off of the returned energy, ``remission * R²`` with R the point's distance from the
sensor, normalised as ``remission * (min(R, max_range) / max_range)²`` so that it stays in the
remission's own range (LiM3D's grid reaches 50 m, the default). LiM3D's released code computes
``xyz * R²`` instead (three channels, no remission); this follows the paper.
"""

from __future__ import annotations

import numpy as np

from pcseg.data.sample import Sample
from pcseg.data.transforms import TRANSFORMS, _positive, _Repr


def reflectivity(
    coord: np.ndarray, remission: np.ndarray, *, max_range: float = 50.0
) -> np.ndarray:
    """Range-corrected remission (N,) float32 of points ``coord`` (N, 3) in the sensor frame."""
    coord = np.asarray(coord, dtype=np.float64)
    distance = np.minimum(np.linalg.norm(coord, axis=1), max_range) / max_range
    return (np.asarray(remission, dtype=np.float64) * distance**2).astype(np.float32)


@TRANSFORMS.register("reflectivity")
class Reflectivity(_Repr):
    """Add ``reflectivity`` (see the module) to a LiDAR sample. Place it first in the chain,
    while ``coord`` is still in the sensor frame (before rotations about other centres, shifts
    or crops change the distances)."""

    def __init__(self, *, max_range: float = 50.0) -> None:
        self.max_range = _positive("max_range", max_range)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if "remission" not in sample:
            raise KeyError(
                f"reflectivity needs 'remission', which sample {sample.get('scene_id', '?')!r} "
                "lacks (a LiDAR scan without intensities?)"
            )
        value = reflectivity(sample["coord"], sample["remission"], max_range=self.max_range)
        return {**sample, "reflectivity": value}
