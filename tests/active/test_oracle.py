"""Query files for annotators and the answers read back: real SemanticKITTI scan, synthetic
scenes, and every kind of bad answers file."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData

from pcseg.active.oracle import (
    ANSWERS_NAME,
    COLUMNS,
    GREY,
    HIGHLIGHT,
    QUERIES_NAME,
    README_NAME,
    AnswerError,
    QueryScene,
    ply_name,
    read_answers,
    write_queries,
)
from pcseg.data.formats.semantickitti import read_scan
from pcseg.data.meta.semantickitti import CLASS_NAMES

KITTI_SCAN = Path("semantickitti/sequences/00/velodyne/000000.bin")
K = len(CLASS_NAMES)


def make_scene(scene_id: str, n: int, queries, *, colored: bool, seed: int) -> QueryScene:
    rng = np.random.default_rng(seed)
    queries = np.asarray(queries, dtype=np.int64)
    return QueryScene(
        scene_id=scene_id,
        coord=rng.uniform(-20, 20, size=(n, 3)),
        color=rng.integers(0, 256, size=(n, 3), dtype=np.uint8) if colored else None,
        queries=queries,
        predicted=rng.integers(0, K, size=n, dtype=np.int64),
        scores=rng.random(len(queries), dtype=np.float32),
    )


@pytest.fixture
def office() -> QueryScene:
    """A coloured indoor-style scene of 200 points with five queries (not sorted)."""
    return make_scene("Area_1/office_1", 200, [42, 3, 150, 17, 99], colored=True, seed=0)


@pytest.fixture
def frame() -> QueryScene:
    """An uncoloured scene of 50 points with two queries."""
    return make_scene("00/000001", 50, [7, 0], colored=False, seed=1)


@pytest.fixture
def kitti(shared_data: Path) -> QueryScene:
    points = read_scan(shared_data / KITTI_SCAN)
    rng = np.random.default_rng(2)
    queries = rng.choice(len(points), size=40, replace=False)
    return QueryScene(
        scene_id="00/000000",
        coord=points[:, :3],
        color=None,
        queries=queries,
        predicted=rng.integers(0, K, size=len(points)),
        scores=rng.random(40, dtype=np.float32),
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def check_ply(path: Path, scene: QueryScene) -> None:
    ply = PlyData.read(str(path))
    assert ply.byte_order == "<" and not ply.text
    vertex = ply["vertex"]
    n = len(scene.coord)
    assert vertex.count == n
    np.testing.assert_array_equal(
        np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1),
        scene.coord.astype(np.float32),
    )
    is_query = np.zeros(n, dtype=bool)
    is_query[scene.queries] = True
    np.testing.assert_array_equal(vertex["query"], is_query.astype(np.uint8))
    rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    assert rgb.dtype == np.uint8
    assert (rgb[is_query] == HIGHLIGHT).all()
    if scene.color is None:
        expected = np.broadcast_to(np.array(GREY, dtype=np.uint8), (n, 3))
    else:
        expected = np.round(scene.color * 0.4).astype(np.uint8)
    np.testing.assert_array_equal(rgb[~is_query], expected[~is_query])
    assert vertex["predicted"].dtype == np.int32
    np.testing.assert_array_equal(vertex["predicted"], scene.predicted)


def test_real_scan_and_synthetic_scene(tmp_path: Path, kitti: QueryScene, office: QueryScene):
    assert len(kitti.coord) == 124_668
    written = write_queries(tmp_path, [kitti, office], class_names=CLASS_NAMES)
    expected = [QUERIES_NAME, README_NAME, "00__000000.ply", "Area_1__office_1.ply"]
    assert written == [tmp_path / name for name in expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)  # no temp files left
    check_ply(tmp_path / "00__000000.ply", kitti)
    check_ply(tmp_path / "Area_1__office_1.ply", office)

    header = (tmp_path / QUERIES_NAME).read_text().splitlines()[0]
    assert header == "scene,point_index,x,y,z,predicted_class,predicted_name,score,label"
    rows = read_csv(tmp_path / QUERIES_NAME)
    assert len(rows) == len(kitti.queries) + len(office.queries)
    expected_rows = [(s, int(q), j) for s in (kitti, office) for j, q in enumerate(s.queries)]
    for row, (scene, index, j) in zip(rows, expected_rows, strict=True):
        assert row["scene"] == scene.scene_id and int(row["point_index"]) == index
        xyz = [float(row[axis]) for axis in "xyz"]
        np.testing.assert_allclose(xyz, scene.coord[index], atol=5.1e-5)
        assert int(row["predicted_class"]) == scene.predicted[index]
        assert row["predicted_name"] == CLASS_NAMES[scene.predicted[index]]
        assert float(row["score"]) == pytest.approx(scene.scores[j], rel=1e-5)
        assert row["label"] == ""


def test_readme_lists_classes_and_how_to_answer(tmp_path: Path, office: QueryScene):
    write_queries(tmp_path, [office], class_names=CLASS_NAMES)
    readme = (tmp_path / README_NAME).read_text()
    for k, name in enumerate(CLASS_NAMES):
        assert f"{k:3d}  {name}\n" in readme
    assert ANSWERS_NAME in readme and '"ignore"' in readme and '"label"' in readme


def test_round_trip_filled_queries(tmp_path: Path, office: QueryScene, frame: QueryScene):
    write_queries(tmp_path, [office, frame], class_names=CLASS_NAMES)
    rows = read_csv(tmp_path / QUERIES_NAME)
    # office: id, upper-case name, blank, "ignore", -1; frame: only "cannot tell" answers
    fills = ["5", CLASS_NAMES[11].upper(), "", "ignore", "-1", " IGNORE ", ""]
    for row, fill in zip(rows, fills, strict=True):
        row["label"] = fill
    with open(tmp_path / ANSWERS_NAME, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    before = snapshot(tmp_path)

    answers = read_answers(tmp_path / ANSWERS_NAME, [office, frame], class_names=CLASS_NAMES)

    assert snapshot(tmp_path) == before
    assert list(answers) == ["Area_1/office_1"]  # frame had no usable answer
    indices, classes = answers["Area_1/office_1"]
    assert indices.dtype == np.int64 and classes.dtype == np.int64
    np.testing.assert_array_equal(indices, [3, 42])  # sorted by point index
    np.testing.assert_array_equal(classes, [11, 5])


def test_minimal_columns_any_order_semicolons_bom(tmp_path: Path, office: QueryScene):
    text = (
        "\ufeffLabel;note;Point_Index;Scene\n"
        "Car;looks like a car;99;Area_1/office_1\n"
        "0;;150;Area_1/office_1\n"
        "\n"
    )
    path = tmp_path / ANSWERS_NAME
    path.write_text(text)
    answers = read_answers(path, [office], class_names=CLASS_NAMES)
    np.testing.assert_array_equal(answers["Area_1/office_1"][0], [99, 150])
    np.testing.assert_array_equal(answers["Area_1/office_1"][1], [CLASS_NAMES.index("car"), 0])


# Each file: header (line 1), a good row (line 2), then the bad rows from line 3 on.
BAD_FILES = {
    "unknown class id": ("Area_1/office_1,3,19", "line 3: unknown class id 19 (valid: 0..18)"),
    "negative class id": ("Area_1/office_1,3,-2", "line 3: unknown class id -2"),
    "unknown class name": (
        "Area_1/office_1,3,carr",
        "line 3: unknown class name 'carr'; did you mean 'car'?",
    ),
    "index out of range": (
        "Area_1/office_1,200,car",
        "line 3: point_index 200 out of range 0..199 for scene 'Area_1/office_1'",
    ),
    "negative index": ("Area_1/office_1,-1,car", "line 3: point_index -1 out of range"),
    "index not a query": (
        "Area_1/office_1,4,car",
        "line 3: point 4 of scene 'Area_1/office_1' was not queried this round",
    ),
    "duplicate row": (
        "Area_1/office_1,3,car\nArea_1/office_1,3,",
        "line 4: duplicate row for scene 'Area_1/office_1' point 3 (first on line 3)",
    ),
    "unknown scene": ("Area_9/office_1,3,car", "line 3: unknown scene 'Area_9/office_1'"),
    "non-integer index": ("Area_1/office_1,3.5,car", "line 3: point_index '3.5' is not an integer"),
    "empty index": ("Area_1/office_1,,car", "line 3: point_index '' is not an integer"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_answers_rejected(tmp_path: Path, office: QueryScene, frame: QueryScene, case: str):
    rows, message = BAD_FILES[case]
    path = tmp_path / ANSWERS_NAME
    path.write_text("scene,point_index,label\n00/000001,7,road\n" + rows + "\n")
    with pytest.raises(AnswerError) as caught:
        read_answers(path, [office, frame], class_names=CLASS_NAMES)
    assert str(caught.value).startswith(f"{path}: 1 problem:")
    assert message in str(caught.value)
    assert caught.value.path == path and len(caught.value.problems) == 1


def test_missing_column(tmp_path: Path, office: QueryScene):
    path = tmp_path / ANSWERS_NAME
    path.write_text("scene,index,class\nArea_1/office_1,3,car\n")
    with pytest.raises(AnswerError, match=r"line 1: header lacks column\(s\) \['point_index', "):
        read_answers(path, [office], class_names=CLASS_NAMES)


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "file not found"), ("", "line 1: empty file")]
)
def test_missing_or_empty_file(tmp_path: Path, office: QueryScene, content, problem):
    path = tmp_path / ANSWERS_NAME
    if content is not None:
        path.write_text(content)
    with pytest.raises(AnswerError, match=problem) as caught:
        read_answers(path, [office], class_names=CLASS_NAMES)
    assert str(path) in str(caught.value)


def test_several_problems_reported_together(tmp_path: Path, office: QueryScene):
    path = tmp_path / ANSWERS_NAME
    path.write_text(
        "scene,point_index,label\n"
        "Area_1/office_1,3,car\n"
        "Area_1/office_1,17,42\n"
        "Area_1/office_1,x,car\n"
        "Area_1/office_1,42,road\n"
        "Area_1/office_1,3,road\n"
        "nowhere,1,car\n"
    )
    with pytest.raises(AnswerError) as caught:
        read_answers(path, [office], class_names=CLASS_NAMES)
    text = str(caught.value)
    assert text.startswith(f"{path}: 4 problems:")
    for line in ("line 3: unknown class id", "line 4: point_index 'x'", "line 6: duplicate"):
        assert line in text
    assert "line 7: unknown scene 'nowhere'" in text
    lines = [problem.split(":")[0] for problem in caught.value.problems]
    assert lines == ["line 3", "line 4", "line 6", "line 7"]  # the good rows 2 and 5 pass


def test_many_problems_are_capped(tmp_path: Path, office: QueryScene):
    path = tmp_path / ANSWERS_NAME
    path.write_text("scene,point_index,label\n" + "elsewhere,3,car\n" * 25)
    with pytest.raises(AnswerError) as caught:
        read_answers(path, [office], class_names=CLASS_NAMES)
    assert len(caught.value.problems) == 20
    assert str(caught.value).startswith(f"{path}: 25 problems:")
    assert "line 21: unknown scene" in str(caught.value)
    assert "line 22" not in str(caught.value)
    assert str(caught.value).endswith("... and 5 more")


def test_writing_twice_refused(tmp_path: Path, office: QueryScene, frame: QueryScene):
    write_queries(tmp_path, [office, frame], class_names=CLASS_NAMES)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / QUERIES_NAME))):
        write_queries(tmp_path, [office, frame], class_names=CLASS_NAMES)
    assert snapshot(tmp_path) == before


def test_one_existing_ply_blocks_the_whole_round(tmp_path: Path, office, frame):
    existing = tmp_path / ply_name(frame.scene_id)
    existing.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / "00__000001.ply"))):
        write_queries(tmp_path, [office, frame], class_names=CLASS_NAMES)
    assert snapshot(tmp_path) == {"00__000001.ply": b"someone else's file"}


def test_inconsistent_scenes_rejected(tmp_path: Path, office: QueryScene):
    with pytest.raises(ValueError, match="color must be uint8"):
        QueryScene("s", office.coord, office.color / 255.0, [1], office.predicted, [0.5])
    with pytest.raises(ValueError, match="distinct"):
        QueryScene("s", office.coord, None, [1, 1], office.predicted, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"0\.\.199"):
        QueryScene("s", office.coord, None, [200], office.predicted, [0.5])
    with pytest.raises(ValueError, match="must both be"):
        QueryScene("s", office.coord, None, [1, 2], office.predicted, [0.5])
    twin = QueryScene("Area_1__office_1", office.coord, None, [1], office.predicted, [0.5])
    with pytest.raises(ValueError, match="distinct"):
        write_queries(tmp_path, [office, twin], class_names=CLASS_NAMES)
    with pytest.raises(ValueError, match="predicted classes"):
        write_queries(tmp_path, [office], class_names=CLASS_NAMES[:2])
    assert not any(tmp_path.iterdir())
