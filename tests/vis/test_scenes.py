"""What the viewer shows and the checks on its inputs: predictions, rounds, segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pcseg.config import config_from_dict
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.formats import semantickitti
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.label_budget import write_scene_arrays
from pcseg.vis import colors, scenes


@pytest.fixture(scope="module")
def dataset(one_scene) -> SemanticKITTIDataset:
    return SemanticKITTIDataset(one_scene, sequences=["00"])


def test_predictions_read_back_from_an_export_folder_or_a_file(dataset, tmp_path) -> None:
    scan = scenes.load_scan(dataset, 0)
    classes = np.where(scan.label >= 0, scan.label, 0)
    (written,) = dataset.export(0, classes, tmp_path)
    n = scan.num_points
    assert (scenes.read_predictions(dataset, 0, tmp_path, num_points=n) == classes).all()
    assert (scenes.read_predictions(dataset, 0, written, num_points=n) == classes).all()
    np.save(tmp_path / "classes.npy", classes)
    from_npy = scenes.read_predictions(dataset, 0, tmp_path / "classes.npy", num_points=n)
    assert (from_npy == classes).all()


def test_bad_prediction_files_name_the_file_and_the_problem(dataset, tmp_path) -> None:
    n = scenes.load_scan(dataset, 0).num_points
    short = tmp_path / "short.label"
    semantickitti.write_label(short, np.full(n - 5, 40), None)
    with pytest.raises(
        DataFormatError, match=rf"short\.label: prediction count {n - 5} != point count {n}"
    ):
        scenes.read_predictions(dataset, 0, short, num_points=n)
    unknown = tmp_path / "unknown.label"
    semantickitti.write_label(unknown, np.full(n, 5), None)  # raw id 5 is no SemanticKITTI id
    with pytest.raises(DataFormatError, match=r"unknown\.label: unknown SemanticKITTI label id"):
        scenes.read_predictions(dataset, 0, unknown, num_points=n)
    np.save(tmp_path / "big.npy", np.full(n, 19))
    with pytest.raises(DataFormatError, match=r"big\.npy: unknown class id 19"):
        scenes.read_predictions(dataset, 0, tmp_path / "big.npy", num_points=n)
    with pytest.raises(DataFormatError, match="prediction file not found"):
        scenes.read_predictions(dataset, 0, tmp_path / "empty_export", num_points=n)
    with pytest.raises(DataFormatError, match=r"expected a SemanticKITTI \.label"):
        (tmp_path / "p.txt").write_text("1\n")
        scenes.read_predictions(dataset, 0, tmp_path / "p.txt", num_points=n)


def test_label_panels_in_the_order_asked(scan) -> None:
    pred = scan.label.copy()
    pred[100:110] = 2
    panels = scenes.label_panels(scan, pred, ["error", "gt"])
    assert [p.key for p in panels] == ["E", "G"]
    assert panels[0].title.startswith("errors: 10 of ")
    assert [e.name for e in panels[1].legend] == ["ground", "car", "pole", "unlabelled"]
    with pytest.raises(ValueError, match="need predictions"):
        scenes.label_panels(scan, None, ["gt", "pred"])
    with pytest.raises(ValueError, match="unknown mode"):
        scenes.label_panels(scan, pred, ["errors"])
    with pytest.raises(ValueError, match="predictions for"):
        scenes.label_panels(scan, pred[:-1], ["pred"])


def test_hidden_classes_leave_every_view(scan) -> None:
    keep = scenes.visible_points(scan, ["car"])
    assert not (scan.subset(keep).label == 1).any() and keep.sum() == (scan.label != 1).sum()
    indices = np.flatnonzero(scan.label == 2)[:3]
    renumbered = scenes.keep_indices(np.r_[np.flatnonzero(scan.label == 1)[:2], indices], keep)
    assert (scan.subset(keep).label[renumbered] == 2).all() and len(renumbered) == 3
    with pytest.raises(ValueError, match="valid: ground, car, pole"):
        scenes.visible_points(scan, ["ceiling"])


def _round(tmp_path, config: dict, selection: dict, labels: dict | None):
    loop = tmp_path / "hmmu_fds_s0"
    (loop / "round_01").mkdir(parents=True)
    (loop / "loop.json").write_text(json.dumps({"settings": {}, "config": config}))
    write_scene_arrays(loop / "round_01" / "selection.npz", selection)
    if labels is not None:
        (loop / "round_00").mkdir()
        write_scene_arrays(loop / "round_00" / "labels.npz", labels)
    return loop / "round_01"


def test_round_queries_and_earlier_labels(tmp_path, make_config, one_scene, scan) -> None:
    selection = {"00/000000": np.array([5, 9], np.int64), "00/000001": np.array([1], np.int64)}
    round_dir = _round(tmp_path, make_config(one_scene), selection, {"00/000000": np.arange(3)})
    assert scenes.round_config(round_dir) == config_from_dict(make_config(one_scene))
    assert scenes.busiest_scene(round_dir) == "00/000000"
    queries, earlier = scenes.read_round(round_dir, "00/000000", 100)
    assert queries.tolist() == [5, 9] and earlier.tolist() == [0, 1, 2]
    (panel,) = scenes.query_panels(scan, queries, earlier, "round 1")
    base, old, new = panel.layers
    assert len(base.coord) == scan.num_points and (base.colors <= 255 * colors.DIM_FACTOR + 1).all()
    assert (old.colors == colors.LABELLED).all() and (new.colors == (255, 0, 255)).all()
    assert new.size_scale > 1 and panel.legend[0].name == "queries (2)"
    with pytest.raises(DataFormatError, match=r"indices outside 0\.\.7"):
        scenes.read_round(round_dir, "00/000000", 8)
    with pytest.raises(DataFormatError, match="no scene '00/000009'"):
        scenes.read_round(round_dir, "00/000009", 100)
    with pytest.raises(DataFormatError, match=r"selection\.npz: file not found"):
        scenes.read_round(tmp_path, "00/000000", 100)
    with pytest.raises(DataFormatError, match=r"loop\.json: file not found"):
        scenes.round_config(tmp_path / "round_03")


def test_segments_from_npy_or_per_scene_npz(tmp_path, scan) -> None:
    n = scan.num_points
    ids = np.arange(n) // 500
    ids[:50] = -1
    np.save(tmp_path / "seg.npy", ids)
    assert (scenes.read_segments(tmp_path / "seg.npy", scan.scene_id, n) == ids).all()
    write_scene_arrays(tmp_path / "seg.npz", {scan.scene_id: ids, "other/0": ids[:10]})
    assert (scenes.read_segments(tmp_path / "seg.npz", scan.scene_id, n) == ids).all()
    with pytest.raises(DataFormatError, match="segment id count 10 != point count"):
        scenes.read_segments(tmp_path / "seg.npz", scan.scene_id, n, key="other/0")
    with pytest.raises(DataFormatError, match="no member 'x'"):
        scenes.read_segments(tmp_path / "seg.npz", scan.scene_id, n, key="x")
    with pytest.raises(DataFormatError, match="segment file not found"):
        scenes.read_segments(tmp_path / "none.npy", scan.scene_id, n)
    gt, segments = scenes.segment_panels(scan, ids)
    assert gt.key == "G" and segments.key == "S"
    assert (
        segments.title == f"{len(np.unique(ids[ids >= 0]))} segments, {n - 50} of {n} points in one"
    )
    assert (segments.layers[0].colors[:50] == colors.SEGMENTLESS).all()
