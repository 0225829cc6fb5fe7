"""Which LiDAR frames of a sequence to label: ST-RFD and a uniform baseline.

LiM3D's spatio-temporal redundant frame downsampling (ST-RFD) keeps a diverse subset of frames
instead of every k-th one; its selection code was never released (only the resulting lists), so
the rule here is ours, built on the same idea, and is exact and deterministic:

1. **Progress.** Between consecutive frames the sensor moves ``t`` metres and turns ``a``
   radians (from the poses). A point at ``reference_range`` metres is displaced by about
   ``t + reference_range * a``; that is the *progress* step. Summed along the sequence it
   places every frame on a line ``s`` where redundant frames sit close together: a stationary
   car adds nothing, a fast or turning one adds a lot. A pause in ``times.txt`` longer than
   ``gap_factor`` times the median frame period starts a new segment (its frames are never
   redundant with those before the gap).
2. **Greedy thinning.** A kept frame's redundancy is its progress distance to the nearest kept
   neighbour in its segment (infinite when it is the segment's only kept frame). The most
   redundant frame is dropped, its neighbours' redundancies updated, and so on until
   ``round(fraction * frames)`` remain (at least one). Ties go to the later frame. Near-zero
   motion frames are therefore dropped first, and what remains is spread evenly over the
   distance driven and the turns taken, with all sequences thinned against one another.

The uniform baseline keeps ``round(fraction * F)`` evenly spaced frames of each sequence.
Lists are written as one frame path per line relative to the data root
(``sequences/00/velodyne/000000.bin``, as LiM3D's released lists).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.formats import semantickitti
from pcseg.data.formats.files import write_text
from pcseg.data.formats.validation import DataFormatError, read_path_list

STRATEGIES = ("strfd", "uniform")


@dataclass(frozen=True)
class SequenceMotion:
    """A sequence's frame ids with their LiDAR poses (F, 4, 4) and timestamps (F,) seconds."""

    name: str
    frames: np.ndarray
    poses: np.ndarray
    times: np.ndarray


def read_motion(sequence_dir: str | Path) -> SequenceMotion:
    """Frames, poses and times of a SemanticKITTI-format sequence."""
    sequence_dir = Path(sequence_dir)
    frames = np.asarray(semantickitti.frame_ids(sequence_dir), dtype=np.int64)
    poses = semantickitti.read_sequence_poses(sequence_dir)
    times = semantickitti.read_times(sequence_dir / "times.txt")
    for name, values in (("poses.txt", poses), ("times.txt", times)):
        if len(frames) and frames[-1] >= len(values):
            raise DataFormatError(
                sequence_dir / name, f"{len(values)} entries, but frame {frames[-1]} exists"
            )
    return SequenceMotion(sequence_dir.name, frames, poses[frames], times[frames])


def progress_steps(
    motion: SequenceMotion, *, reference_range: float = 10.0, gap_factor: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Progress from each frame's predecessor, metres (F,; 0 for the first), and each frame's
    segment number (F,; a new segment after a pause in the timestamps)."""
    poses = np.asarray(motion.poses, dtype=np.float64)
    if len(poses) < 2:
        return np.zeros(len(poses)), np.zeros(len(poses), dtype=np.int64)
    translation = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    relative = np.einsum("fji,fjk->fik", poses[:-1, :3, :3], poses[1:, :3, :3])
    cosine = (np.trace(relative, axis1=1, axis2=2) - 1) / 2
    turn = np.arccos(np.clip(cosine, -1.0, 1.0))
    steps = np.concatenate([[0.0], translation + reference_range * turn])
    period = np.diff(np.asarray(motion.times, dtype=np.float64))
    if (period <= 0).any():
        raise DataFormatError(motion.name, "timestamps must increase from frame to frame")
    gaps = period > gap_factor * np.median(period)
    segments = np.concatenate([[0], np.cumsum(gaps)])
    return steps, segments


def _target_count(fraction: float, total: int) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return min(total, max(1, round(fraction * total)))


def select_strfd(
    sequences: Sequence[SequenceMotion],
    fraction: float,
    *,
    reference_range: float = 10.0,
    gap_factor: float = 3.0,
) -> dict[str, np.ndarray]:
    """ST-RFD (see the module): the kept frame ids of each sequence, sorted."""
    chains: list[tuple[str, np.ndarray, np.ndarray]] = []  # (sequence, frame ids, progress)
    for motion in sequences:
        steps, segments = progress_steps(
            motion, reference_range=reference_range, gap_factor=gap_factor
        )
        for segment in np.unique(segments):
            inside = segments == segment
            progress = np.cumsum(np.where(inside, steps, 0.0))[inside]
            chains.append((motion.name, motion.frames[inside], progress))
    total = sum(len(frames) for _, frames, _ in chains)
    alive = _thin([progress for _, _, progress in chains], _target_count(fraction, total))
    chosen: dict[str, list[np.ndarray]] = {motion.name: [] for motion in sequences}
    for (name, frames, _), kept in zip(chains, alive, strict=True):
        chosen[name].append(frames[kept])
    return {name: np.sort(np.concatenate(parts)) for name, parts in chosen.items()}


def _thin(chains: list[np.ndarray], keep: int) -> list[np.ndarray]:
    """Greedy removal of the most redundant point of the progress chains (lazy-deletion heap
    over all of them); which points of each chain remain."""
    alive = [np.ones(len(s), dtype=bool) for s in chains]
    prev = [np.arange(len(s)) - 1 for s in chains]
    next_ = [np.arange(len(s)) + 1 for s in chains]

    def redundancy(c: int, i: int) -> float:
        s, p, n = chains[c], prev[c][i], next_[c][i]
        left = s[i] - s[p] if p >= 0 else np.inf
        right = s[n] - s[i] if n < len(s) else np.inf
        return float(min(left, right))

    heap = [(redundancy(c, i), c, -i) for c in range(len(chains)) for i in range(len(alive[c]))]
    heapq.heapify(heap)
    remaining = sum(len(a) for a in alive)
    while remaining > keep:
        value, c, negative = heapq.heappop(heap)
        i = -negative
        if not alive[c][i] or value != redundancy(c, i):
            continue  # stale entry
        alive[c][i] = False
        remaining -= 1
        p, n = prev[c][i], next_[c][i]
        if p >= 0:
            next_[c][p] = n
            heapq.heappush(heap, (redundancy(c, p), c, -p))
        if n < len(alive[c]):
            prev[c][n] = p
            heapq.heappush(heap, (redundancy(c, n), c, -n))
    return alive


def select_uniform(sequences: Sequence[SequenceMotion], fraction: float) -> dict[str, np.ndarray]:
    """Evenly spaced frames: ``round(fraction * F)`` (at least one) of each sequence."""
    chosen = {}
    for motion in sequences:
        count = _target_count(fraction, len(motion.frames))
        positions = np.floor((np.arange(count) + 0.5) * len(motion.frames) / count).astype(int)
        chosen[motion.name] = motion.frames[positions]
    return chosen


def select_frames(
    sequences: Sequence[SequenceMotion],
    fraction: float,
    *,
    strategy: str = "strfd",
    reference_range: float = 10.0,
    gap_factor: float = 3.0,
) -> dict[str, np.ndarray]:
    """The kept frame ids of each sequence under ``strategy`` (:data:`STRATEGIES`)."""
    if strategy == "strfd":
        return select_strfd(
            sequences, fraction, reference_range=reference_range, gap_factor=gap_factor
        )
    if strategy == "uniform":
        return select_uniform(sequences, fraction)
    raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")


def frame_list_text(chosen: Mapping[str, np.ndarray]) -> str:
    """A selection as a frame list: ``sequences/XX/velodyne/NNNNNN.bin`` lines, in sequence and
    frame order."""
    return "".join(
        f"sequences/{name}/velodyne/{int(frame):06d}.bin\n"
        for name in sorted(chosen)
        for frame in chosen[name]
    )


def write_frame_list(path: str | Path, chosen: Mapping[str, np.ndarray]) -> Path:
    """Write a frame list (never over an existing file)."""
    write_text(path, frame_list_text(chosen), overwrite=False)
    return Path(path)


def read_frame_list(path: str | Path, root: str | Path) -> set[str]:
    """Scene ids (``00/000000``) of the frames a list names; every entry must be a scan inside
    ``root``."""
    scenes = set()
    for entry in read_path_list(path, root, what="frame", files=True):
        if entry.suffix != ".bin" or entry.parent.name != "velodyne" or not entry.stem.isdigit():
            raise DataFormatError(path, f"{entry}: not a sequences/XX/velodyne/NNNNNN.bin scan")
        scenes.add(f"{entry.parent.parent.name}/{entry.stem}")
    return scenes


class LabelledFrames:
    """Hide every label of the frames a frame list does not name (``label_mask`` all False):
    they still feed a semi-supervised method's unlabelled terms. ``scenes`` are scene ids
    (``00/000000``) from :func:`read_frame_list`."""

    def __init__(self, scenes: set[str], *, source: str | Path = "(in memory)") -> None:
        self.scenes = frozenset(scenes)
        self.source = str(source)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        if str(sample["scene_id"]) in self.scenes:
            return sample
        return {**sample, "label_mask": np.zeros(len(sample["label_mask"]), dtype=bool)}

    def __repr__(self) -> str:
        return f"LabelledFrames({len(self.scenes)} frames from {self.source})"
