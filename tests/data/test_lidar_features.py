"""Reflectivity: range-corrected remission, as LiM3D's paper defines it (not its code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pcseg.data.formats import semantickitti
from pcseg.data.lidar_features import reflectivity
from pcseg.data.transforms import TRANSFORMS, assemble_features, build_transforms


def test_reflectivity_is_remission_times_squared_range_normalised() -> None:
    coord = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 25.0], [60.0, 0.0, 0.0]])
    remission = np.array([0.5, 0.2, 0.4], dtype=np.float32)
    # 5 m, 25 m, beyond 50 m (capped): remission * (R / 50)².
    np.testing.assert_allclose(reflectivity(coord, remission), [0.005, 0.05, 0.4], rtol=1e-6)
    np.testing.assert_allclose(reflectivity(coord, remission, max_range=5.0), [0.5, 0.2, 0.4])


def test_transform_on_the_real_scan_undoes_the_range_fall_off(shared_data: Path) -> None:
    seq = shared_data / "semantickitti" / "sequences" / "00"
    sample = semantickitti.read_frame(seq, 0)
    chain = build_transforms(
        [{"name": "reflectivity"}, {"name": "random_rotate", "degrees": [-180, 180]}],
        where="test",
    )
    out = chain(sample, np.random.default_rng(0))
    distance = np.linalg.norm(sample["coord"], axis=1)
    expected = sample["remission"] * (np.minimum(distance, 50) / 50) ** 2
    np.testing.assert_allclose(out["reflectivity"], expected, rtol=1e-5, atol=1e-7)
    features = assemble_features(out, ["remission", "reflectivity"])
    assert features.shape == (len(distance), 2)
    np.testing.assert_array_equal(features[:, 1], out["reflectivity"])
    # Remission falls with range on a real scan; the corrected value rises with it instead.
    near, far = distance < 10, (distance > 20) & (distance < 50)
    assert out["reflectivity"][far].mean() > 5 * out["reflectivity"][near].mean()


def test_reflectivity_needs_remission() -> None:
    sample = {"coord": np.zeros((3, 3), dtype=np.float32), "scene_id": "room_1"}
    with pytest.raises(KeyError, match=r"reflectivity needs 'remission'.*room_1"):
        TRANSFORMS.build({"name": "reflectivity"})(sample, np.random.default_rng())
    with pytest.raises(ValueError, match="max_range"):
        TRANSFORMS.build({"name": "reflectivity", "max_range": 0})
