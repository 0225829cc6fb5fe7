"""Transforms: geometry is right, randomness is seeded, inputs are never modified."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from pcseg.data.sample import POINT_KEYS, Sample, index_points, make_sample
from pcseg.data.synthetic import make_room
from pcseg.data.transforms import (
    FEATURE_CHANNELS,
    TRANSFORMS,
    Compose,
    assemble_features,
    build_transforms,
)
from pcseg.registry import ConfigError

# One spec per registered transform, set so that it always acts (p = 1, a crop smaller than N).
EXAMPLES: dict[str, dict] = {
    "random_rotate": {"degrees": [10, 350]},
    "random_flip": {"p": 1.0},
    "random_scale": {"low": 0.5, "high": 2.0},
    "random_jitter": {},
    "elastic_distortion": {"p": 1.0},
    "chromatic_auto_contrast": {"p": 1.0},
    "chromatic_translation": {"p": 1.0},
    "chromatic_jitter": {"p": 1.0},
    "sphere_crop": {"max_points": 100},
    "center_shift": {},
    "reflectivity": {},
}
# Transforms whose output depends on the generator (flip with p = 1, center_shift and
# reflectivity do not).
RANDOM = sorted(set(EXAMPLES) - {"random_flip", "center_shift", "reflectivity"})
COLOUR = ["chromatic_auto_contrast", "chromatic_translation", "chromatic_jitter"]


def cloud(n: int = 400, seed: int = 0) -> Sample:
    """A room-sized random cloud carrying every per-point key of the contract."""
    rng = np.random.default_rng(seed)
    normal = rng.standard_normal((n, 3))
    return make_sample(
        coord=rng.uniform([0, 0, 0], [4, 5, 3], (n, 3)),
        feat=rng.random((n, 2)),
        label=rng.integers(0, 5, n),
        scene_id="room_1",
        remission=rng.random(n).astype(np.float32),
        reflectivity=rng.random(n).astype(np.float32),
        color=rng.uniform(0.1, 0.9, (n, 3)).astype(np.float32),
        normal=(normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32),
        instance=rng.integers(0, 9, n),
        point_index=np.arange(n, dtype=np.int64),
        frame_pose=np.eye(4),
    )


def with_coord(coord: list[list[float]]) -> Sample:
    coord_arr = np.asarray(coord, dtype=np.float32)
    return make_sample(
        coord=coord_arr, feat=np.zeros((len(coord_arr), 0)), label=None, scene_id="s"
    )


def build(name: str, **kwargs):
    return TRANSFORMS.build({"name": name, **kwargs})


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_samples_equal(a: Sample, b: Sample) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --- every transform -----------------------------------------------------------------------


# Transforms of image-to-LiDAR samples need images and pairings; tests/methods/test_slidr.py
# checks them on a synthetic drive with rendered camera images.
CAMERA_TRANSFORMS = {"drop_cuboids", "resized_crop", "flip_images"}


def test_examples_cover_the_registry():
    assert set(EXAMPLES) == set(TRANSFORMS.names()) - CAMERA_TRANSFORMS


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_never_modifies_its_input_and_keeps_dtypes(name):
    sample = cloud()
    before = copy.deepcopy(sample)
    out = build(name, **EXAMPLES[name])(sample, rng())
    assert_samples_equal(sample, before)
    assert out is not sample
    assert out.keys() == sample.keys()
    for key in POINT_KEYS & out.keys():
        assert out[key].dtype == sample[key].dtype, key
        if out[key] is not sample[key]:  # a new array must not be a view of the input
            assert not np.shares_memory(out[key], sample[key]), key
    changed = [k for k in POINT_KEYS & out.keys() if not np.array_equal(out[k], before[k])]
    assert changed, f"{name} changed nothing"


@pytest.mark.parametrize("name", RANDOM)
def test_seeded(name):
    transform = build(name, **EXAMPLES[name])
    sample = cloud()
    assert_samples_equal(transform(sample, rng(7)), transform(sample, rng(7)))
    a, b = transform(sample, rng(7)), transform(sample, rng(8))
    assert any(not np.array_equal(a[k], b[k]) for k in ("coord", "color"))


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_empty_cloud(name):
    sample = index_points(cloud(), np.zeros(400, dtype=bool))
    out = build(name, **EXAMPLES[name])(sample, rng())
    assert out["coord"].shape == (0, 3)


# --- geometry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "before", "after"),
    [
        ("z", [1, 0, 0], [0, 1, 0]),
        ("z", [0, 1, 0], [-1, 0, 0]),
        ("x", [0, 1, 0], [0, 0, 1]),
        ("x", [0, 0, 1], [0, -1, 0]),
        ("y", [0, 0, 1], [1, 0, 0]),
        ("y", [1, 0, 0], [0, 0, -1]),
    ],
)
def test_rotate_by_drawn_angle(axis, before, after):
    sample = with_coord([before, [0, 0, 0]])
    sample["normal"] = np.asarray([before, before], dtype=np.float32)
    out = build("random_rotate", axis=axis, degrees=(90, 90))(sample, rng())
    np.testing.assert_allclose(out["coord"], [after, [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(out["normal"], [after, after], atol=1e-6)


def test_rotate_is_rigid_about_origin_or_centroid():
    sample = cloud()
    origin = build("random_rotate", degrees=(-180, 180))(sample, rng(1))
    np.testing.assert_allclose(pdist(origin["coord"]), pdist(sample["coord"]), atol=1e-4)
    norms = np.linalg.norm
    np.testing.assert_allclose(norms(origin["coord"], axis=1), norms(sample["coord"], axis=1), 1e-5)
    assert not np.allclose(origin["coord"].mean(0), sample["coord"].mean(0), atol=0.1)

    centroid = build("random_rotate", degrees=(30, 330), center="centroid")(sample, rng(1))
    np.testing.assert_allclose(pdist(centroid["coord"]), pdist(sample["coord"]), atol=1e-4)
    np.testing.assert_allclose(centroid["coord"].mean(0), sample["coord"].mean(0), atol=1e-4)
    assert not np.allclose(centroid["coord"], sample["coord"], atol=0.1)
    np.testing.assert_allclose(norms(centroid["normal"], axis=1), 1.0, atol=1e-5)


def test_rotate_with_p_zero_is_identity():
    sample = cloud()
    assert build("random_rotate", p=0.0)(sample, rng()) is sample


def test_flip_negates_exactly_the_listed_axes():
    sample = cloud()
    out = build("random_flip", axes=["x", "z"], p=1.0)(sample, rng())
    np.testing.assert_array_equal(out["coord"], sample["coord"] * [-1, 1, -1])
    np.testing.assert_array_equal(out["normal"], sample["normal"] * [-1, 1, -1])
    np.testing.assert_array_equal(out["color"], sample["color"])


def test_flip_each_axis_with_probability_p():
    sample = with_coord([[1, 1, 1]])
    flip = build("random_flip", axes=["x", "y"], p=0.3)
    generator = rng(3)
    signs = np.stack([flip(sample, generator)["coord"][0] for _ in range(2000)])
    rate = (signs < 0).mean(0)
    assert abs(rate[0] - 0.3) < 0.05 and abs(rate[1] - 0.3) < 0.05 and rate[2] == 0
    both = ((signs[:, 0] < 0) & (signs[:, 1] < 0)).mean()
    assert abs(both - 0.09) < 0.03  # independent per axis


@pytest.mark.parametrize("anisotropic", [False, True])
def test_scale_within_bounds(anisotropic):
    sample = cloud()
    for seed in range(20):
        out = build("random_scale", low=0.8, high=1.25, anisotropic=anisotropic)(sample, rng(seed))
        ratio = out["coord"] / sample["coord"]
        assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.25 + 1e-5
        per_axis = ratio.mean(0)
        np.testing.assert_allclose(ratio, np.broadcast_to(per_axis, ratio.shape), rtol=1e-5)
        assert (np.ptp(per_axis) > 1e-3) == anisotropic
        np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=1), 1.0, atol=1e-5)


def test_jitter_is_clipped_noise():
    sample = cloud()
    out = build("random_jitter", sigma=0.05, clip=0.02)(sample, rng())
    delta = out["coord"] - sample["coord"]
    assert np.abs(delta).max() <= 0.02 + 1e-6
    assert np.isclose(np.abs(delta).max(), 0.02, atol=1e-6)  # sigma > clip: some are clipped
    small = build("random_jitter", sigma=0.001, clip=0.05)(sample, rng())
    assert 0.0005 < (small["coord"] - sample["coord"]).std() < 0.002


def test_elastic_distortion_is_smooth():
    base = np.random.default_rng(0).uniform([0, 0, 0], [3, 3, 2], (300, 3))
    near = base + np.asarray([0.01, 0, 0])
    sample = with_coord(np.concatenate([base, near]).tolist())
    magnitude = 0.4
    distort = build("elastic_distortion", params=[[0.2, magnitude]], p=1.0)
    out = distort(sample, rng(5))
    moved = (out["coord"] - sample["coord"]).astype(np.float64)
    assert np.abs(moved).max() > 0.01  # it does move points
    assert np.abs(moved).max() < magnitude  # blurred unit noise stays well below 1
    diff = np.abs(moved[:300] - moved[300:])  # pairs 1 cm apart move alike
    assert diff.max() < 0.05 * magnitude
    assert diff.mean() < 0.1 * np.abs(moved).mean()
    np.testing.assert_array_equal(distort(sample, rng(5))["coord"], out["coord"])
    assert build("elastic_distortion", p=0.0)(sample, rng()) is sample


# --- colour --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COLOUR)
def test_colour_stays_in_range_and_changes(name):
    sample = cloud()
    sample["color"] = np.random.default_rng(1).random((400, 3)).astype(np.float32)
    for seed in range(10):
        out = build(name, p=1.0)(sample, rng(seed))
        assert out["color"].min() >= 0.0 and out["color"].max() <= 1.0
        assert not np.array_equal(out["color"], sample["color"])
        np.testing.assert_array_equal(out["coord"], sample["coord"])
    del sample["color"]
    assert build(name, p=1.0)(sample, rng()) is sample


def test_colour_transforms_with_p_zero_pass_through():
    sample = cloud()
    for name in COLOUR:
        assert build(name, p=0.0)(sample, rng()) is sample


def test_auto_contrast_stretches_each_channel():
    sample = cloud()
    out = build("chromatic_auto_contrast", p=1.0, blend_factor=1.0)(sample, rng())
    np.testing.assert_allclose(out["color"].min(0), 0.0, atol=1e-6)
    np.testing.assert_allclose(out["color"].max(0), 1.0, atol=1e-6)
    half = build("chromatic_auto_contrast", p=1.0, blend_factor=0.5)(sample, rng())
    np.testing.assert_allclose(half["color"], (sample["color"] + out["color"]) / 2, atol=1e-6)


def test_translation_is_one_offset_and_jitter_per_point():
    sample = cloud()  # colours in [0.1, 0.9]: no clipping at ratio 0.05
    moved = build("chromatic_translation", p=1.0, ratio=0.05)(sample, rng())
    offset = moved["color"] - sample["color"]
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-6)
    assert np.abs(offset[0]).max() <= 0.05 + 1e-6
    jittered = build("chromatic_jitter", p=1.0, std=0.01)(sample, rng())
    noise = jittered["color"] - sample["color"]
    assert 0.008 < noise.std() < 0.012 and abs(noise.mean()) < 0.002


# --- crops and shifts ----------------------------------------------------------------------


def _is_ball(coord: np.ndarray, kept: np.ndarray, center: np.ndarray) -> bool:
    dist = np.linalg.norm(coord - center, axis=1)
    dropped = np.setdiff1d(np.arange(len(coord)), kept)
    return dist[kept].max() <= dist[dropped].min()


def test_sphere_crop_keeps_nearest_points_aligned():
    sample = cloud(n=1000)
    sample["remission"] = np.arange(1000, dtype=np.float32)
    sample["label"] = np.arange(1000, dtype=np.int64) % 7
    for seed in range(5):
        out = build("sphere_crop", max_points=150)(sample, rng(seed))
        kept = out["point_index"]
        assert len(kept) == 150 and len(np.unique(kept)) == 150
        for key in ("coord", "color", "normal", "instance", "label_mask", "feat"):
            np.testing.assert_array_equal(out[key], sample[key][kept], err_msg=key)
        np.testing.assert_array_equal(out["remission"], kept.astype(np.float32))
        np.testing.assert_array_equal(out["label"], kept % 7)
        assert out["scene_id"] == "room_1" and out["frame_pose"] is sample["frame_pose"]
        # the kept set is a ball around one of its own points
        coord = sample["coord"].astype(np.float64)
        assert any(_is_ball(coord, kept, coord[c]) for c in kept)


def test_sphere_crop_center_mode():
    sample = cloud(n=1000)
    coord = sample["coord"].astype(np.float64)
    box_center = (coord.min(0) + coord.max(0)) / 2
    center = coord[np.argmin(np.linalg.norm(coord - box_center, axis=1))]
    crop = build("sphere_crop", max_points=200, mode="center")
    a, b = crop(sample, rng(0)), crop(sample, rng(1))
    assert_samples_equal(a, b)
    assert _is_ball(coord, a["point_index"], center)
    small = cloud(n=50)
    assert crop(small, rng()) is small


def test_center_shift():
    sample = cloud()
    out = build("center_shift")(sample, rng())
    lo, hi = out["coord"].min(0), out["coord"].max(0)
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0.0, atol=1e-5)
    assert abs(lo[2]) < 1e-6
    keep_z = build("center_shift", apply_z=False)(sample, rng())
    np.testing.assert_array_equal(keep_z["coord"][:, 2], sample["coord"][:, 2])


# --- composition and config ----------------------------------------------------------------


def test_compose_applies_in_order():
    def tag(letter: str):
        return lambda sample, rng: {**sample, "scene_id": sample["scene_id"] + letter}

    sample = cloud()
    assert Compose([tag("a"), tag("b")])(sample, rng())["scene_id"] == "room_1ab"
    assert Compose([])(sample, rng()) is sample

    specs = [{"name": "random_jitter"}, {"name": "random_rotate", "center": "centroid"}]
    out = build_transforms(specs)(sample, rng(4))
    generator = rng(4)  # one generator shared along the pipeline, as Compose does
    manual = build("random_rotate", center="centroid")(
        build("random_jitter")(sample, generator), generator
    )
    assert_samples_equal(out, manual)
    assert "RandomJitter" in repr(build_transforms(specs))


def test_indoor_pipeline_on_a_synthetic_room():
    room = make_room(np.random.default_rng(0), 5000)
    sample = make_sample(
        coord=room.coord,
        feat=np.zeros((5000, 0)),
        label=room.s3dis_label(),
        scene_id="Area_1/office_1",
        color=(room.color / 255).astype(np.float32),
        point_index=np.arange(5000, dtype=np.int64),
    )
    pipeline = build_transforms(
        [
            {"name": "center_shift", "apply_z": True},
            {"name": "random_rotate", "degrees": [-180, 180], "center": "centroid"},
            {"name": "random_rotate", "axis": "x", "degrees": [-2, 2], "p": 0.5},
            {"name": "random_scale", "low": 0.9, "high": 1.1},
            {"name": "random_flip", "axes": ["x"]},
            {"name": "random_jitter", "sigma": 0.005, "clip": 0.02},
            {"name": "elastic_distortion"},
            {"name": "chromatic_auto_contrast"},
            {"name": "chromatic_translation"},
            {"name": "chromatic_jitter"},
            {"name": "sphere_crop", "max_points": 3000},
        ]
    )
    out = pipeline(sample, rng(0))
    assert len(out["coord"]) == 3000 and out["coord"].dtype == np.float32
    np.testing.assert_array_equal(out["label"], sample["label"][out["point_index"]])
    feats = assemble_features(out, ["color", "height"])
    assert feats.shape == (3000, 4) and feats.dtype == np.float32
    assert_samples_equal(pipeline(sample, rng(0)), out)


def test_build_rejects_unknown_name_and_argument():
    with pytest.raises(ConfigError, match=r"aug\[1\]: unknown transform 'rotate_z'.*random_rotate"):
        build_transforms([{"name": "center_shift"}, {"name": "rotate_z"}], where="aug")
    with pytest.raises(ConfigError, match=r"transforms\[0\].*has no argument.*angle.*degrees"):
        build_transforms([{"name": "random_rotate", "angle": [0, 1]}])
    with pytest.raises(ConfigError, match=r"transforms\[0\].*needs max_points"):
        build_transforms([{"name": "sphere_crop"}])
    with pytest.raises(ConfigError, match=r"transforms\[0\]: p must be in \[0, 1\]"):
        build_transforms([{"name": "random_flip", "p": 2}])
    with pytest.raises(ConfigError, match="expected a list"):
        build_transforms({"name": "random_flip"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    [
        ("random_rotate", {"axis": "w"}, "axis"),
        ("random_rotate", {"degrees": [10, -10]}, "degrees"),
        ("random_rotate", {"degrees": [10]}, "degrees"),
        ("random_rotate", {"center": "bbox"}, "center"),
        ("random_rotate", {"p": -0.1}, "p"),
        ("random_flip", {"axes": ["q"]}, "axes"),
        ("random_flip", {"axes": "xy"}, "axes"),
        ("random_scale", {"low": 1.2, "high": 1.1}, "low"),
        ("random_scale", {"low": 0.0}, "low"),
        ("random_jitter", {"sigma": -1.0}, "sigma"),
        ("random_jitter", {"clip": 0.0}, "clip"),
        ("elastic_distortion", {"params": [[0.0, 1.0]]}, "params"),
        ("elastic_distortion", {"params": [[0.2]]}, "params"),
        ("chromatic_auto_contrast", {"blend_factor": 1.5}, "blend_factor"),
        ("chromatic_translation", {"ratio": -0.1}, "ratio"),
        ("chromatic_jitter", {"std": -0.1}, "std"),
        ("sphere_crop", {"max_points": 0}, "max_points"),
        ("sphere_crop", {"max_points": 10, "mode": "edge"}, "mode"),
    ],
)
def test_constructor_validation(name, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build(name, **kwargs)


# --- features and indexing -----------------------------------------------------------------


def test_assemble_features_order_and_widths():
    sample = cloud(n=10)
    keys = ["ones", "coord", "height", "remission", "color", "normal"]
    feats = assemble_features(sample, keys)
    assert feats.dtype == np.float32
    assert feats.shape == (10, sum(FEATURE_CHANNELS[k] for k in keys)) == (10, 12)
    coord = sample["coord"]
    np.testing.assert_array_equal(feats[:, 0], 1.0)
    np.testing.assert_array_equal(feats[:, 1:4], coord)
    np.testing.assert_allclose(feats[:, 4], coord[:, 2] - coord[:, 2].min())
    np.testing.assert_array_equal(feats[:, 5], sample["remission"])
    np.testing.assert_array_equal(feats[:, 6:9], sample["color"])
    np.testing.assert_array_equal(feats[:, 9:12], sample["normal"])
    assert assemble_features(sample, []).shape == (10, 0)


def test_assemble_features_errors():
    sample = cloud(n=10)
    del sample["normal"]
    with pytest.raises(KeyError, match=r"'normal'.*'room_1'.*color, coord"):
        assemble_features(sample, ["coord", "normal"])
    with pytest.raises(ValueError, match=r"unknown feature.*intensity.*valid: coord"):
        assemble_features(sample, ["intensity"])


def test_index_points_mask_and_indices():
    sample = cloud(n=20)
    mask = np.arange(20) % 3 == 0
    by_mask, by_index = index_points(sample, mask), index_points(sample, np.flatnonzero(mask))
    assert_samples_equal(by_mask, by_index)
    for key in POINT_KEYS & sample.keys():
        np.testing.assert_array_equal(by_mask[key], sample[key][mask], err_msg=key)
    assert by_mask["scene_id"] == "room_1" and by_mask["frame_pose"] is sample["frame_pose"]
    assert "point_index" in POINT_KEYS and "normal" in POINT_KEYS and "scene_id" not in POINT_KEYS
