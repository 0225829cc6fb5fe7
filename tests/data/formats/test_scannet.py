"""ScanNet v2 reader/writer: both label routes, the 20-class map, alignment, splits, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pcseg.data.formats import scannet
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import scannet as meta

SCENE = "scene0042_01"


def _mesh_ply(path: Path, coord: np.ndarray, *, label: np.ndarray | None = None) -> None:
    """A ScanNet-style PLY written with plyfile directly (independent of the writer)."""
    fields = [(a, "<f4") for a in "xyz"] + [(c, "u1") for c in ("red", "green", "blue", "alpha")]
    fields += [("label", "<u2")] if label is not None else []
    vertex = np.zeros(len(coord), dtype=fields)
    vertex["x"], vertex["y"], vertex["z"] = coord.T
    vertex["red"], vertex["green"], vertex["blue"] = 10, 20, 30
    if label is not None:
        vertex["label"] = label
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(path))


def _arrays(n: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    coord = rng.uniform(-3, 3, (n, 3)).astype(np.float32)
    color = rng.integers(0, 256, (n, 3))
    nyu40 = rng.choice([0, 1, 2, 5, 13, 22, 39, 40], n)
    return coord, color, nyu40


def test_labels_ply_round_trip(tmp_path):
    coord, color, nyu40 = _arrays()
    faces = np.array([[0, 1, 2], [2, 3, 4]])
    scene_dir = scannet.write_scene(tmp_path / "scans" / SCENE, SCENE, coord, color, nyu40,
                                    faces=faces)  # fmt: skip
    files = scannet.scene_files(scene_dir)
    header = files["labels"].read_bytes()[:400]
    assert b"binary_little_endian" in header and b"property ushort label" in header
    assert b"element face 2" in files["mesh"].read_bytes()[:400]
    sample = scannet.read_scene(scene_dir)
    assert sample["scene_id"] == SCENE and "instance" not in sample
    np.testing.assert_array_equal(sample["coord"], coord)
    np.testing.assert_allclose(sample["color"] * 255, color, atol=1e-4)
    expected = np.array([meta.LABEL_MAP[i] for i in nyu40])
    np.testing.assert_array_equal(sample["label"], expected)
    assert sample["label"][nyu40 == 39].tolist() == [19] * int((nyu40 == 39).sum())
    assert (sample["label"][np.isin(nyu40, [0, 13, 22, 40])] == -1).all()
    unlabelled = scannet.read_scene(scene_dir, labels="none")
    assert (unlabelled["label"] == -1).all()


def _aggregation_scene(root: Path) -> Path:
    scene_dir = root / "scans" / SCENE
    coord = np.arange(24, dtype=np.float32).reshape(8, 3)
    _mesh_ply(scene_dir / f"{SCENE}_vh_clean_2.ply", coord)
    segs = {"sceneId": SCENE, "segIndices": [7, 7, 3, 3, 9, 9, 100, 5]}
    groups = [
        {"id": 0, "objectId": 0, "label": "office chair", "segments": [7]},
        {"id": 1, "objectId": 4, "label": "trash can", "segments": [3, 9]},
        {"id": 2, "objectId": 2, "label": "wall", "segments": [9]},  # later group wins seg 9
        {"id": 3, "objectId": 3, "label": "ceiling", "segments": [5, 12345]},
    ]
    (scene_dir / f"{SCENE}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
    (scene_dir / f"{SCENE}.aggregation.json").write_text(json.dumps({"segGroups": groups}))
    (root / meta.TABLE_NAME).write_text(
        "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\n"
        "1\twall\twall\t8277\t1\t12\twall\twall\n"
        "2\toffice chair\tchair\t9\t5\t4\tchair\tchair\n"
        "3\ttrash can\ttrash can\t5\t39\t12\tgarbage bin\totherfurniture\n"
        "4\tceiling\tceiling\t3\t22\t3\tceiling\tceiling\n"
    )
    return scene_dir


def test_segs_aggregation_and_tsv_route(tmp_path):
    scene_dir = _aggregation_scene(tmp_path)
    sample = scannet.read_scene(scene_dir)  # no labels.ply: the aggregation route
    chair, other, wall = (meta.CLASS_NAMES.index(n) for n in ("chair", "otherfurniture", "wall"))
    assert sample["label"].tolist() == [chair, chair, other, other, wall, wall, -1, -1]
    assert sample["instance"].tolist() == [1, 1, 5, 5, 3, 3, 0, 4]
    table = scannet.read_label_table(tmp_path / meta.TABLE_NAME)
    again = scannet.read_scene(scene_dir, labels="aggregation", label_table=table)
    np.testing.assert_array_equal(again["label"], sample["label"])


def test_labels_ply_with_aggregation_gives_instances(tmp_path):
    scene_dir = _aggregation_scene(tmp_path)
    nyu40 = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    _mesh_ply(scene_dir / f"{SCENE}_vh_clean_2.labels.ply", np.zeros((8, 3)), label=nyu40)
    (tmp_path / meta.TABLE_NAME).unlink()  # the ply route needs no label table
    sample = scannet.read_scene(scene_dir)
    assert sample["label"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert sample["instance"].tolist() == [1, 1, 5, 5, 3, 3, 0, 4]


def test_unknown_raw_category_and_missing_table(tmp_path):
    scene_dir = _aggregation_scene(tmp_path)
    table = tmp_path / meta.TABLE_NAME
    table.write_text("id\traw_category\tnyu40id\n1\twall\t1\n")
    with pytest.raises(DataFormatError, match="office chair") as info:
        scannet.read_scene(scene_dir)
    assert info.value.path.name == f"{SCENE}.aggregation.json"
    table.unlink()
    with pytest.raises(DataFormatError, match="file not found"):
        scannet.read_scene(scene_dir)


def test_twenty_class_map_and_export():
    out = scannet.nyu40_to_class("x", np.array([39, 13, 1, 0, 40, 36]))
    assert out.tolist() == [19, -1, 0, -1, -1, 18]
    with pytest.raises(DataFormatError, match="41"):
        scannet.nyu40_to_class("x", np.array([1, 41]))
    classes = np.arange(-1, 20)
    assert scannet.class_to_nyu40(classes).tolist() == [0, *meta.CLASS_NYU40_IDS]
    back = scannet.nyu40_to_class("x", scannet.class_to_nyu40(classes))
    np.testing.assert_array_equal(back, classes)
    with pytest.raises(ValueError):
        scannet.class_to_nyu40(np.array([20]))


def test_write_predictions_writes_nyu40_ids(tmp_path):
    scannet.write_predictions(tmp_path / f"{SCENE}.txt", np.array([19, -1, 0, 14]))
    assert (tmp_path / f"{SCENE}.txt").read_text().split() == ["39", "0", "1", "24"]


def test_bad_labels_are_errors_naming_the_file(tmp_path):
    coord, color, nyu40 = _arrays(20)
    scene_dir = scannet.write_scene(tmp_path / SCENE, SCENE, coord, color, np.full(20, 41))
    with pytest.raises(DataFormatError, match="unknown NYU40") as info:
        scannet.read_scene(scene_dir)
    assert info.value.path == scannet.scene_files(scene_dir)["labels"]
    _mesh_ply(scannet.scene_files(scene_dir)["labels"], coord[:19], label=nyu40[:19])
    with pytest.raises(DataFormatError, match="label count 19 != point count 20"):
        scannet.read_scene(scene_dir)


def test_segs_count_mismatch(tmp_path):
    scene_dir = _aggregation_scene(tmp_path)
    segs = scene_dir / f"{SCENE}_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": [1, 2, 3]}))
    with pytest.raises(DataFormatError, match="segIndices count 3") as info:
        scannet.read_scene(scene_dir)
    assert info.value.path == segs


@pytest.mark.parametrize("case", ["nan", "empty", "truncated", "no_colour"])
def test_bad_meshes(tmp_path, case):
    mesh = tmp_path / SCENE / f"{SCENE}_vh_clean_2.ply"
    coord = np.zeros((0 if case == "empty" else 5, 3), np.float32)
    if case == "nan":
        coord[2, 1] = np.nan
    _mesh_ply(mesh, coord)
    if case == "truncated":
        mesh.write_bytes(mesh.read_bytes()[:-7])
    if case == "no_colour":
        vertex = np.zeros(5, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
        PlyData([PlyElement.describe(vertex, "vertex")]).write(str(mesh))
    with pytest.raises(DataFormatError) as info:
        scannet.read_scene(mesh.parent)
    assert info.value.path == mesh


def test_axis_alignment_applies_the_matrix(tmp_path):
    coord = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.5], [1.0, 1.0, 1.0]], np.float32)
    matrix = np.array([[0, -1, 0, 10], [1, 0, 0, -2], [0, 0, 1, 0.5], [0, 0, 0, 1]], float)
    scene_dir = scannet.write_scene(tmp_path / SCENE, SCENE, coord, np.zeros((3, 3), int),
                                    None, axis_alignment=matrix)  # fmt: skip
    np.testing.assert_allclose(scannet.read_axis_alignment(scene_dir / f"{SCENE}.txt"), matrix)
    raw = scannet.read_scene(scene_dir)
    aligned = scannet.read_scene(scene_dir, align=True)
    np.testing.assert_array_equal(raw["coord"], coord)
    expected = [[10, -1, 0.5], [8, -2, 1.0], [9, -1, 1.5]]  # (x, y, z) -> (10 - y, x - 2, z + .5)
    np.testing.assert_allclose(aligned["coord"], expected, atol=1e-5)
    # Predictions share the alignment file's name: they must never replace it.
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        scannet.write_predictions(scene_dir / f"{SCENE}.txt", np.zeros(3, np.int64))
    np.testing.assert_allclose(scannet.read_axis_alignment(scene_dir / f"{SCENE}.txt"), matrix)
    with pytest.raises(FileExistsError):
        scannet.write_scene(scene_dir, SCENE, coord, np.zeros((3, 3), int), None)
    (scene_dir / f"{SCENE}.txt").write_text("sceneType = Office\n")
    with pytest.raises(DataFormatError, match="no axisAlignment"):
        scannet.read_scene(scene_dir, align=True)
    (scene_dir / f"{SCENE}.txt").write_text("axisAlignment = 1 0 0\n")
    with pytest.raises(DataFormatError, match="16 finite numbers"):
        scannet.read_scene(scene_dir, align=True)


def test_split_lists_resolve_inside_the_root(tmp_path):
    coord, color, nyu40 = _arrays(10)
    for name, sub in (("scene0000_00", "scans"), ("scene0001_00", "scans"),
                      ("scene0707_00", "scans_test")):  # fmt: skip
        scannet.write_scene(tmp_path / sub / name, name, coord, color, nyu40)
    scannet.write_split(tmp_path, "train", ["scene0001_00", "scene0000_00"])
    scannet.write_split(tmp_path, "test", ["scene0707_00"])
    train = scannet.read_split(tmp_path, "train")
    assert [s.name for s in train] == ["scene0001_00", "scene0000_00"]
    assert scannet.read_split(tmp_path, "test")[0].parent.name == "scans_test"
    assert [s.name for s in scannet.list_scenes(tmp_path)] == ["scene0000_00", "scene0001_00"]
    bad = tmp_path / "scannetv2_val.txt"
    for line in ("../scans_test/scene0707_00", "/etc/passwd", "scene0000_00/../../.."):
        bad.write_text(f"scene0000_00\n{line}\n")
        with pytest.raises(DataFormatError, match="line 2") as info:
            scannet.read_split(tmp_path, "val")
        assert info.value.path == bad
    bad.write_text("scene9999_00\n")
    with pytest.raises(DataFormatError, match="not found in"):
        scannet.read_split(tmp_path, "val")
    with pytest.raises(DataFormatError, match="not bundled"):
        scannet.read_split(tmp_path / "elsewhere", "train")


def test_writer_instances_round_trip_through_aggregation(tmp_path):
    coord, color, _ = _arrays(300)
    instance = np.repeat(np.arange(6), 50)  # 0 = no instance
    nyu40 = np.array([0, 5, 5, 39, 1, 22])[instance]
    scene_dir = scannet.write_scene(tmp_path / "scans" / SCENE, SCENE, coord, color, nyu40,
                                    instance=instance)  # fmt: skip
    names = {meta.NYU40_NAMES[i]: i for i in (1, 5, 22, 39)}
    scannet.write_label_table(tmp_path / meta.TABLE_NAME, names)
    via_ply = scannet.read_scene(scene_dir)
    via_agg = scannet.read_scene(scene_dir, labels="aggregation")
    np.testing.assert_array_equal(via_ply["instance"], instance)
    np.testing.assert_array_equal(via_agg["instance"], instance)
    np.testing.assert_array_equal(via_agg["label"], via_ply["label"])
    with pytest.raises(ValueError, match="mixes"):
        scannet.write_scene(tmp_path / SCENE, SCENE, coord, color, nyu40,
                            instance=np.ones(300, int))  # fmt: skip


def test_polygon_meshes_fall_back_to_the_row_parser(tmp_path):
    mesh = tmp_path / SCENE / f"{SCENE}_vh_clean_2.ply"
    _mesh_ply(mesh, np.arange(15, dtype=np.float32).reshape(5, 3))
    vertex = PlyData.read(str(mesh), mmap=False)["vertex"].data
    quads = np.empty(2, dtype=[("vertex_indices", "O")])
    quads["vertex_indices"] = [np.array([0, 1, 2, 3], np.int32), np.array([1, 2, 3, 4], np.int32)]
    face = PlyElement.describe(quads, "face", len_types={"vertex_indices": "u1"},
                               val_types={"vertex_indices": "i4"})  # fmt: skip
    PlyData([PlyElement.describe(vertex, "vertex"), face], byte_order="<").write(str(mesh))
    coord, _ = scannet.read_mesh_vertices(mesh)
    np.testing.assert_array_equal(coord[:, 0], [0, 3, 6, 9, 12])
