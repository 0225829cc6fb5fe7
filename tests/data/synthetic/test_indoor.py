"""Synthetic indoor rooms: every class present, seeded, fast, and readable by the real readers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pcseg.data.formats import s3dis, scannet
from pcseg.data.meta import s3dis as s3dis_meta
from pcseg.data.meta import scannet as scannet_meta
from pcseg.data.synthetic import indoor


@pytest.mark.parametrize(
    ("kinds", "size"), [(indoor.S3DIS_KINDS, (6.5, 9.0)), (indoor.SCANNET_KINDS, (8.5, 10.5))]
)
def test_room_has_every_kind_and_is_fast(kinds, size):
    start = time.perf_counter()
    room = indoor.make_room(np.random.default_rng(3), 50_000, kinds=kinds, size=size)
    assert time.perf_counter() - start < 1.0
    assert len(room.coord) == 50_000 and room.color.dtype == np.uint8
    present = {indoor.KIND_NAMES[k] for k in np.unique(room.kind)}
    assert present == set(kinds)
    # points lie on the room's surfaces: inside the box, floor at 0
    assert room.coord.min() >= -1e-9 and np.isclose(room.coord[:, 2].min(), 0.0)
    floor = room.kind == indoor.KIND_NAMES.index("floor")
    assert np.allclose(room.coord[floor, 2], 0.0)
    # each object (instance) has one kind
    pairs = np.unique(np.column_stack([room.instance, room.kind]), axis=0)
    assert len(pairs) == len(np.unique(room.instance))


def test_room_is_a_function_of_the_generator_seed():
    a = indoor.make_room(np.random.default_rng(7), 5000)
    b = indoor.make_room(np.random.default_rng(7), 5000)
    c = indoor.make_room(np.random.default_rng(8), 5000)
    for key in ("coord", "color", "kind", "instance"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.coord, c.coord)


def test_too_few_points_is_an_error():
    with pytest.raises(ValueError, match="num_points"):
        indoor.make_room(np.random.default_rng(0), 100)


def test_s3dis_rooms_read_back_with_every_class(tmp_path):
    rooms = indoor.write_indoor_s3dis(
        tmp_path / "a", num_areas=2, rooms_per_area=2, points_per_room=4000, seed=1
    )
    assert rooms == s3dis.list_rooms(tmp_path / "a", (1, 2))
    samples = [s3dis.read_room(room) for room in rooms]
    for sample in samples:
        assert len(sample["coord"]) == 4000
        assert set(np.unique(sample["label"]).tolist()) == set(range(s3dis_meta.NUM_CLASSES))
        assert sample["color"].min() >= 0.0 and sample["color"].max() <= 1.0
    again = indoor.write_indoor_s3dis(
        tmp_path / "b", num_areas=2, rooms_per_area=2, points_per_room=4000, seed=1
    )
    for room, sample in zip(again, samples, strict=True):
        other = s3dis.read_room(room)
        for key in ("coord", "color", "label", "instance"):
            np.testing.assert_array_equal(other[key], sample[key])
    different = indoor.write_indoor_s3dis(
        tmp_path / "c", num_areas=1, rooms_per_area=1, points_per_room=4000, seed=2
    )
    assert not np.array_equal(s3dis.read_room(different[0])["coord"], samples[0]["coord"])


def test_scannet_scenes_read_back_with_every_class(tmp_path):
    scenes = indoor.write_indoor_scannet(tmp_path / "a", num_scenes=2, points_per_scene=4000)
    assert [s.name for s in scannet.read_split(tmp_path / "a", "train")] == ["scene0000_00"]
    assert [s.name for s in scannet.read_split(tmp_path / "a", "val")] == ["scene0001_00"]
    for scene in scenes:
        raw = scannet.read_scene(scene)
        sample = scannet.read_scene(scene, align=True)
        expected = set(range(scannet_meta.NUM_CLASSES)) | {-1}  # -1: clutter is NYU40 otherprop
        assert set(np.unique(sample["label"]).tolist()) == expected
        # scanner frame is rotated; the alignment brings the floor to z = 0
        floor = sample["label"] == scannet_meta.CLASS_NAMES.index("floor")
        np.testing.assert_allclose(sample["coord"][floor, 2], 0.0, atol=1e-4)
        assert not np.allclose(raw["coord"][floor, 2], 0.0, atol=1e-3)
        via_aggregation = scannet.read_scene(scene, labels="aggregation")
        np.testing.assert_array_equal(via_aggregation["label"], sample["label"])
        np.testing.assert_array_equal(via_aggregation["instance"], sample["instance"])
    again = indoor.write_indoor_scannet(tmp_path / "b", num_scenes=2, points_per_scene=4000)
    for first, second in zip(scenes, again, strict=True):
        x, y = scannet.read_scene(first), scannet.read_scene(second)
        for key in ("coord", "color", "label", "instance"):
            np.testing.assert_array_equal(x[key], y[key])
