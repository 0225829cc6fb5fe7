"""Projection of LiDAR points into camera images on the real KITTI-object, RELLIS-3D and
SemanticKITTI samples, and on a synthetic SemanticKITTI-layout drive with rendered images."""

from __future__ import annotations

import numpy as np
import pytest

from pcseg.data import cameras
from pcseg.data.formats import semantickitti
from pcseg.data.formats.validation import DataFormatError, read_json


def test_every_kitti_object_point_lands_in_its_image(shared_data):
    root = shared_data / "kitti_object"
    camera = cameras.kitti_object_camera(root / "calibration.json")
    assert (camera.width, camera.height) == (1242, 375)
    points = semantickitti.read_scan(root / "000008.bin")
    index, row, col = cameras.project_points(points[:, :3], camera)
    # The object benchmark's clouds are cropped to the camera's view: all 17,238 points pair.
    assert len(points) == len(index) == 17238
    assert row.min() >= 0 and row.max() <= 374 and col.min() >= 0 and col.max() <= 1241
    # lidar2img = P2 · R0 · Tr: the plain P2 in 000008.txt after lidar2cam_rect gives the same.
    p2 = np.loadtxt(root / "000008.txt").reshape(4, 4)
    calib = read_json(root / "calibration.json")
    rebuilt = (p2 @ np.asarray(calib["lidar2cam_rect"]))[:3]
    np.testing.assert_allclose(rebuilt, camera.lidar_to_pixel, rtol=1e-6, atol=1e-4)


def test_rellis_points_carry_the_label_of_their_pixel(shared_data):
    root = shared_data / "rellis3d"
    image = root / "frame000104-1581624663_149.jpg"
    camera = cameras.rellis_camera(root / "camera_info.txt", root / "transforms.yaml", image)
    assert (camera.width, camera.height) == (1920, 1200)
    points = semantickitti.read_scan(root / "000104.bin")
    labels = np.fromfile(root / "000104.label", np.uint32) & 0xFFFF
    index, row, col = cameras.project_points(points[:, :3], camera)
    pixel_labels = np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).open(root / image.with_suffix(".png").name)
    )
    agreement = (pixel_labels[row, col] == labels[index]).mean()
    assert 7000 < len(index) < 8000 and agreement > 0.75


def test_about_19k_points_of_a_real_kitti_scan_fall_in_image_2(shared_data):
    sequence = shared_data / "semantickitti/sequences/00"
    calib = semantickitti.read_calib(sequence / "calib.txt")
    camera = cameras.Camera(
        "image_2", sequence / "none.png", calib["P2"] @ semantickitti.homogeneous(calib["Tr"]),
        1241, 376,
    )  # fmt: skip
    points = semantickitti.read_scan(sequence / "velodyne/000000.bin")
    index, _, _ = cameras.project_points(points[:, :3], camera)
    assert 17000 < len(index) < 21000
    # Depth must exceed 1 m: a point behind the camera never pairs, even if its ray would.
    flipped = points[:, :3] * np.array([-1.0, 1.0, 1.0])
    behind, _, _ = cameras.project_points(flipped[index], camera)
    assert len(behind) == 0


def test_synthetic_drive_pairs_points_with_the_pixels_of_their_class(tmp_path):
    from pcseg.data.synthetic import write_outdoor_sequences
    from pcseg.data.synthetic.street_sensors import MATERIALS

    write_outdoor_sequences(tmp_path, frames=1, azimuth_steps=512, seed=3)
    sequence = tmp_path / "sequences" / "00"
    camera = cameras.semantickitti_camera(sequence, 0)
    frame = semantickitti.read_frame(sequence, 0)
    pairing = cameras.pair_points(frame["coord"], [camera])
    assert pairing.shape[1] == 4 and (pairing[:, 1] == 0).all() and len(pairing) > 1000
    image = semantickitti.read_image(sequence, 0).astype(np.float64)
    raw = np.fromfile(sequence / "labels/000000.label", np.uint32)[pairing[:, 0]] & 0xFFFF
    # A road point's pixel is grey-dark, a vegetation point's pixel green: compare each pixel to
    # the base colour of its point's class and of every other class.
    palette = {k: np.asarray(m.rgb, np.float64) for k, m in MATERIALS.items()}
    known = np.isin(raw, list(palette))
    pixels = image[pairing[known, 2], pairing[known, 3]]
    own = np.array([palette[k] for k in raw[known]])
    own_distance = np.linalg.norm(pixels - own, axis=1)
    random_other = np.array(list(palette.values()))[
        np.random.default_rng(0).integers(0, len(palette), known.sum())
    ]
    other_distance = np.linalg.norm(pixels - random_other, axis=1)
    assert np.median(own_distance) < 0.5 * np.median(other_distance)


def test_bad_calibration_is_named(tmp_path):
    bad = tmp_path / "calibration.json"
    bad.write_text('{"image": "x.png", "width": 10}')
    with pytest.raises(DataFormatError, match=r"calibration\.json.*lidar2img"):
        cameras.kitti_object_camera(bad)
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        cameras.kitti_object_camera(bad)
