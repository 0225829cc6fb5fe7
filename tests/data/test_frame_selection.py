"""ST-RFD and uniform frame selection, frame lists, and hiding the labels of unlisted frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from pcseg.data.formats.validation import DataFormatError
from pcseg.data.frame_selection import (
    LabelledFrames,
    SequenceMotion,
    progress_steps,
    read_frame_list,
    read_motion,
    select_strfd,
    select_uniform,
    write_frame_list,
)


def _straight(name: str, steps: list[float], *, times: list[float] | None = None):
    """A sequence driving along x by ``steps`` metres per frame."""
    x = np.concatenate([[0.0], np.cumsum(steps)])
    poses = np.tile(np.eye(4), (len(x), 1, 1))
    poses[:, 0, 3] = x
    times = np.arange(len(x)) * 0.1 if times is None else np.asarray(times)
    return SequenceMotion(name, np.arange(len(x)), poses, times)


def test_real_sequence_drops_a_near_stationary_frame_first(shared_data: Path) -> None:
    real = read_motion(shared_data / "semantickitti" / "sequences" / "00")
    assert list(real.frames) == [0, 1, 2, 3, 4, 5]
    steps, segments = progress_steps(real)
    assert (segments == 0).all() and steps[0] == 0
    # The car drives about 0.7-0.8 m per frame (10 Hz) at the start of sequence 00.
    assert np.all((steps[1:] > 0.6) & (steps[1:] < 0.9))
    # Insert a frame 1 cm after frame 3 (the car stood still for a moment).
    poses = np.insert(real.poses, 4, real.poses[3], axis=0)
    poses[4, :3, 3] += [0.01, 0, 0]
    times = np.insert(real.times, 4, (real.times[3] + real.times[4]) / 2)
    stalled = SequenceMotion("00", np.arange(7), poses, times)
    assert list(select_strfd([stalled], 6 / 7)["00"]) == [0, 1, 2, 3, 5, 6]
    # Uniform sampling knows nothing of motion: it drops another frame.
    assert 4 in select_uniform([stalled], 6 / 7)["00"]


def test_strfd_spreads_frames_evenly_along_the_distance_driven() -> None:
    # 10 frames 1 m apart, then 10 frames 0.1 m apart: the slow part holds 1 m in total.
    motion = _straight("00", [1.0] * 9 + [1.0] + [0.1] * 9)
    kept = select_strfd([motion], 0.5)["00"]
    assert len(kept) == 10
    # The driven 10.9 m are covered evenly: at most two frames from the slow stretch.
    assert (kept >= 11).sum() <= 2 and (kept <= 10).sum() >= 8
    uniform = select_uniform([motion], 0.5)["00"]
    assert len(uniform) == 10 and (uniform >= 10).sum() == 5


def test_turning_counts_as_progress() -> None:
    motion = _straight("00", [0.0] * 4)  # standing still ...
    angles = np.radians([0, 0, 30, 60, 90])  # ... but turning from frame 2 on
    for pose, angle in zip(motion.poses, angles, strict=True):
        pose[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    steps, _ = progress_steps(motion, reference_range=10.0)
    np.testing.assert_allclose(steps, [0, 0, 10 * np.pi / 6, 10 * np.pi / 6, 10 * np.pi / 6])
    # Frames 0 and 1 are the same view: one of them (the later) goes first.
    assert list(select_strfd([motion], 0.8)["00"]) == [0, 2, 3, 4]


def test_a_pause_in_time_starts_a_segment_never_thinned_across() -> None:
    times = [0.0, 0.1, 0.2, 5.0, 5.1, 5.2]  # recording paused for ~5 s after frame 2
    motion = _straight("00", [0.5, 1.0, 0.001, 2.0, 2.0], times=times)
    _, segments = progress_steps(motion)
    assert list(segments) == [0, 0, 0, 1, 1, 1]
    # Frames 2 and 3 are 1 mm apart but in different segments: neither is redundant; the
    # closest pair within a segment is 0-1 (0.5 m), and the later of the two goes.
    assert list(select_strfd([motion], 5 / 6)["00"]) == [0, 2, 3, 4, 5]
    together = _straight("00", [0.5, 1.0, 0.001, 2.0, 2.0])
    assert list(select_strfd([together], 5 / 6)["00"]) == [0, 1, 2, 4, 5]


def test_budget_is_shared_across_sequences_and_exact() -> None:
    fast, slow = _straight("00", [2.0] * 19), _straight("01", [0.2] * 19)
    chosen = select_strfd([fast, slow], 0.25)
    assert sum(len(v) for v in chosen.values()) == 10
    assert len(chosen["00"]) > len(chosen["01"]) >= 1
    uniform = select_uniform([fast, slow], 0.25)
    assert [len(uniform["00"]), len(uniform["01"])] == [5, 5]
    with pytest.raises(ValueError, match="fraction"):
        select_strfd([fast], 0.0)


def test_timestamps_must_increase() -> None:
    with pytest.raises(DataFormatError, match="timestamps must increase"):
        progress_steps(_straight("00", [1.0, 1.0], times=[0.0, 0.1, 0.1]))


def test_frame_list_round_trip_and_checks(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "kitti"
    shutil.copytree(shared_data / "semantickitti" / "sequences" / "00", root / "sequences" / "00")
    path = write_frame_list(tmp_path / "split.txt", {"00": np.array([0, 3])})
    assert path.read_text() == (
        "sequences/00/velodyne/000000.bin\nsequences/00/velodyne/000003.bin\n"
    )
    assert read_frame_list(path, root) == {"00/000000", "00/000003"}
    with pytest.raises(FileExistsError):
        write_frame_list(path, {"00": np.array([1])})
    bad = tmp_path / "bad.txt"
    bad.write_text("../outside/velodyne/000000.bin\n")
    with pytest.raises(DataFormatError, match="refusing path"):
        read_frame_list(bad, root)
    bad.write_text("sequences/00/velodyne/000009.bin\n")
    with pytest.raises(DataFormatError, match=r"line 1: frame .* not found"):
        read_frame_list(bad, root)
    bad.write_text("sequences/00/calib.txt\n")
    with pytest.raises(DataFormatError, match=r"not a sequences/XX/velodyne/NNNNNN\.bin"):
        read_frame_list(bad, root)


def test_labelled_frames_hide_the_labels_of_other_frames() -> None:
    hide = LabelledFrames({"00/000001"})
    sample = {"scene_id": "00/000000", "label_mask": np.ones(5, dtype=bool)}
    assert not hide(sample, np.random.default_rng())["label_mask"].any()
    assert sample["label_mask"].all()  # the input is not modified
    kept = {"scene_id": "00/000001", "label_mask": np.ones(5, dtype=bool)}
    assert hide(kept, np.random.default_rng())["label_mask"].all()
