"""Datasets over the format readers: a list of scans, read on demand, then transformed.

Items are addressed by ``index`` or by ``(index, seed)``: the seed drives that item's
augmentation through its own ``np.random.Generator``, so what a sample looks like depends only
on the run seed, the epoch and the index -- not on worker processes or on where a run resumed.
Every dataset also knows a cheap upper bound of its scans' point counts (for point-budget
batching) and how to write predictions in its native format.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from pcseg.data.cameras import camera_keys, semantickitti_camera
from pcseg.data.formats import s3dis, scannet, semantickitti
from pcseg.data.formats.validation import DataFormatError
from pcseg.data.meta import s3dis as s3dis_meta
from pcseg.data.meta import scannet as scannet_meta
from pcseg.data.meta import semantickitti as kitti_meta
from pcseg.data.sample import Sample
from pcseg.data.superpixels import SlicParams, SuperpixelCache
from pcseg.data.transforms import Compose
from pcseg.registry import Registry

DATASETS: Registry = Registry("dataset")


class SceneDataset(Dataset, abc.ABC):
    """Base class: subclasses list their scans and implement the abstract methods.

    Attributes:
        class_names: class names of the dataset's meta module, index = class id.
        palette: RGB colour per class.
    """

    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()

    def __init__(self, *, transforms: Compose | None = None) -> None:
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of scans."""

    @abc.abstractmethod
    def scene_id(self, index: int) -> str:
        """Identifier of a scan, unique in the dataset."""

    @abc.abstractmethod
    def read(self, index: int) -> Sample:
        """The scan as its reader returns it."""

    @abc.abstractmethod
    def num_points(self, index: int) -> int:
        """An upper bound of the scan's point count, without reading the points."""

    @abc.abstractmethod
    def export(self, index: int, classes: np.ndarray, out_dir: Path) -> list[Path]:
        """Write predicted classes (one per point, reader order) in the native format."""

    @abc.abstractmethod
    def prediction_path(self, index: int, out_dir: Path) -> Path:
        """Where :meth:`export` puts the scan's predictions (the file :meth:`read_prediction`
        reads back)."""

    def read_prediction(self, path: str | Path) -> np.ndarray:
        """Predicted classes from a file: the native export format, or an ``.npy`` of class
        indices (0..K-1, -1 = none) from any other tool.

        Raises:
            DataFormatError: missing or unreadable file, or an unknown class id.
        """
        path = Path(path)
        if not path.is_file():
            raise DataFormatError(path, "prediction file not found")
        if path.suffix != ".npy":
            return self._read_native_prediction(path)
        try:
            classes = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataFormatError(path, f"unreadable .npy: {error}") from None
        if classes.ndim != 1 or not np.issubdtype(classes.dtype, np.integer):
            raise DataFormatError(
                path, f"must hold a 1-D integer array, got {classes.dtype} {classes.shape}"
            )
        bad = (classes < -1) | (classes >= self.num_classes)
        if bad.any():
            raise DataFormatError(
                path, f"unknown class id {int(classes[bad][0])}; valid: -1..{self.num_classes - 1}"
            )
        return classes.astype(np.int64)

    def _read_native_prediction(self, path: Path) -> np.ndarray:
        raise DataFormatError(path, "not a prediction file of this dataset (expected .npy)")

    def __getitem__(self, key: int | tuple[int, int]) -> Sample:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        sample = self.read(index)
        sample["point_index"] = np.arange(len(sample["coord"]), dtype=np.int64)
        sample["index"] = index
        sample["points_read"] = len(sample["coord"])
        if len(sample["coord"]) == 0:
            raise DataFormatError(self.scene_id(index), "empty scan: no points")
        if self.transforms is not None:
            sample = self.transforms(sample, np.random.default_rng(seed))
        return sample


def _sequence_names(sequences: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(sequences, str):
        if sequences not in kitti_meta.SPLITS:
            raise ValueError(
                f"sequences: unknown split {sequences!r}; use one of {sorted(kitti_meta.SPLITS)} "
                "or a list of sequence names"
            )
        return kitti_meta.SPLITS[sequences]
    return tuple(f"{int(s):02d}" if str(s).isdigit() else str(s) for s in sequences)


def superpixel_cache(root: Path, options: Mapping[str, Any] | None) -> SuperpixelCache:
    """The superpixel cache of a dataset's ``superpixels`` option (see the datasets)."""
    options = dict(options or {})
    cache_dir = Path(options.pop("cache_dir", root / "superpixels"))
    try:
        params = SlicParams(**options)
    except TypeError as error:
        valid = "n_segments, compactness, sigma, cache_dir"
        raise ValueError(f"superpixels: {error}; valid: {valid}") from None
    return SuperpixelCache(root, cache_dir, params)


@DATASETS.register("semantickitti")
class SemanticKITTIDataset(SceneDataset):
    """SemanticKITTI-format sequences (``root/sequences/XX/velodyne/NNNNNN.bin`` ...).

    Args:
        root: dataset root holding ``sequences/``.
        sequences: a split name ("train" = 00-07, 09, 10; "val" = 08; "test") or sequence names.
        label_dir: label folder ("labels", "scribbles"); frames without a label file are left
            out. None lists every frame, unlabelled.
        frames: optional frame ids to keep (the same for every sequence).
        label_root: where ``sequences/XX/<label_dir>/`` lies when not under ``root`` (labels
            written beside a read-only data root, such as ``tools/pseudo_label.py`` output).
        cameras: camera folders to read with each scan (e.g. ``[image_2]``), adding ``images``,
            ``superpixels`` and ``pairing`` (calibration ``P·Tr`` from calib.txt).
        superpixels: SLIC settings (``n_segments``, ``compactness``, ``sigma``) and ``cache_dir``
            (default ``<root>/superpixels``) of the superpixel maps, computed on first use.
    """

    class_names = kitti_meta.CLASS_NAMES
    palette = kitti_meta.PALETTE

    def __init__(
        self,
        root: str | Path,
        *,
        sequences: str | Sequence[str] = "train",
        label_dir: str | None = "labels",
        frames: Sequence[int] | None = None,
        label_root: str | Path | None = None,
        cameras: Sequence[str] = (),
        superpixels: Mapping[str, Any] | None = None,
        transforms: Compose | None = None,
    ) -> None:
        super().__init__(transforms=transforms)
        self.root = Path(root)
        self.cameras = tuple(cameras)
        self.superpixels = superpixel_cache(self.root, superpixels) if self.cameras else None
        self.label_dir = label_dir
        self.label_root = Path(label_root) if label_root is not None else self.root
        self.items: list[tuple[Path, int]] = []
        for name in _sequence_names(sequences):
            seq_dir = self.root / "sequences" / name
            for frame in semantickitti.frame_ids(seq_dir):
                if frames is not None and frame not in frames:
                    continue
                label = self._label_path(seq_dir, frame)
                if label is None or label.is_file():
                    self.items.append((seq_dir, frame))
        if not self.items:
            raise DataFormatError(self.root, f"no labelled frames in sequences {sequences}")

    def __len__(self) -> int:
        return len(self.items)

    def scene_id(self, index: int) -> str:
        seq_dir, frame = self.items[index]
        return f"{seq_dir.name}/{frame:06d}"

    def _label_path(self, seq_dir: Path, frame: int) -> Path | None:
        if self.label_dir is None:
            return None
        return self.label_root / "sequences" / seq_dir.name / self.label_dir / f"{frame:06d}.label"

    def read(self, index: int) -> Sample:
        seq_dir, frame = self.items[index]
        sample = semantickitti.read_frame(
            seq_dir, frame, label_dir=None, label_path=self._label_path(seq_dir, frame)
        )
        if self.cameras:
            views = [semantickitti_camera(seq_dir, frame, camera=c) for c in self.cameras]
            sample.update(camera_keys(sample["coord"], views, self.superpixels))
        return sample

    def camera_images(self) -> list[Path]:
        """Every image the ``cameras`` option reads, e.g. to compute superpixels up front."""
        return [
            seq_dir / camera / f"{frame:06d}.png"
            for seq_dir, frame in self.items
            for camera in self.cameras
        ]

    def num_points(self, index: int) -> int:
        seq_dir, frame = self.items[index]
        return (seq_dir / "velodyne" / f"{frame:06d}.bin").stat().st_size // 16

    def export(self, index: int, classes: np.ndarray, out_dir: Path) -> list[Path]:
        path = self.prediction_path(index, out_dir)
        semantickitti.write_predictions(path, classes)
        return [path]

    def prediction_path(self, index: int, out_dir: Path) -> Path:
        seq_dir, frame = self.items[index]
        return Path(out_dir) / "sequences" / seq_dir.name / "predictions" / f"{frame:06d}.label"

    def _read_native_prediction(self, path: Path) -> np.ndarray:
        if path.suffix != ".label":
            raise DataFormatError(path, "expected a SemanticKITTI .label file (or .npy classes)")
        return semantickitti.raw_to_class(path, semantickitti.read_label(path)[0])


def _count_lines(path: Path) -> int:
    """Lines of a text file, counting a last line without a newline (an upper bound)."""
    with path.open("rb") as stream:
        chunks = iter(lambda: stream.read(1 << 20), b"")
        return sum(chunk.count(b"\n") for chunk in chunks) + 1


@DATASETS.register("s3dis")
class S3DISDataset(SceneDataset):
    """S3DIS Aligned v1.2 rooms (``root/Area_N/<room>/Annotations/*.txt``).

    Args:
        root: dataset root holding ``Area_1`` ... ``Area_6``.
        split: "train" (all areas but ``test_area``) or "val"/"test" (``test_area``).
        test_area: the held-out area (5 is the common split; 1-6 are the 6 folds).
        rooms: optional room names (``Area_5/office_1``) to keep.
    """

    class_names = s3dis_meta.CLASS_NAMES
    palette = s3dis_meta.PALETTE

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        test_area: int = s3dis_meta.DEFAULT_TEST_AREA,
        rooms: Sequence[str] | None = None,
        transforms: Compose | None = None,
    ) -> None:
        super().__init__(transforms=transforms)
        self.root = Path(root)
        self.rooms = s3dis.split_rooms(self.root, split, test_area=test_area)
        if rooms is not None:
            self.rooms = [r for r in self.rooms if f"{r.parent.name}/{r.name}" in set(rooms)]
        if not self.rooms:
            raise DataFormatError(self.root, f"no rooms in split {split!r} (test area {test_area})")

    def __len__(self) -> int:
        return len(self.rooms)

    def scene_id(self, index: int) -> str:
        return f"{self.rooms[index].parent.name}/{self.rooms[index].name}"

    def read(self, index: int) -> Sample:
        return s3dis.read_room(self.rooms[index])

    def num_points(self, index: int) -> int:
        total = 0
        for path in s3dis.annotation_files(self.rooms[index]):
            with path.open("rb") as stream:
                total += sum(
                    chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b"")
                )
            total += 1  # a last line without a newline
        return total

    def export(self, index: int, classes: np.ndarray, out_dir: Path) -> list[Path]:
        stem = self.prediction_path(index, out_dir).with_suffix("")
        return list(s3dis.write_predictions(stem, classes))

    def prediction_path(self, index: int, out_dir: Path) -> Path:
        room = self.rooms[index]
        return Path(out_dir) / room.parent.name / f"{room.name}.npy"


@DATASETS.register("scannet")
class ScanNetDataset(SceneDataset):
    """ScanNet v2 scenes listed in ``root/scannetv2_<split>.txt``.

    Args:
        root: dataset root holding ``scans/`` and the split lists.
        split: "train", "val" or "test".
        align: apply each scene's ``axisAlignment`` (gravity-aligned, axis-aligned rooms).
    """

    class_names = scannet_meta.CLASS_NAMES
    palette = scannet_meta.PALETTE

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        align: bool = True,
        transforms: Compose | None = None,
    ) -> None:
        super().__init__(transforms=transforms)
        self.root = Path(root)
        self.align = align
        self.scenes = scannet.read_split(self.root, split)
        if not self.scenes:
            raise DataFormatError(self.root / f"scannetv2_{split}.txt", "lists no scenes")

    def __len__(self) -> int:
        return len(self.scenes)

    def scene_id(self, index: int) -> str:
        return self.scenes[index].name

    def read(self, index: int) -> Sample:
        return scannet.read_scene(self.scenes[index], align=self.align)

    def num_points(self, index: int) -> int:
        mesh = scannet.scene_files(self.scenes[index])["mesh"]
        with mesh.open("rb") as stream:
            for line in iter(stream.readline, b""):
                if line.startswith(b"element vertex"):
                    return int(line.split()[2])
                if line.strip() == b"end_header":
                    break
        raise DataFormatError(mesh, "PLY header has no vertex count")

    def export(self, index: int, classes: np.ndarray, out_dir: Path) -> list[Path]:
        path = self.prediction_path(index, out_dir)
        scannet.write_predictions(path, classes)
        return [path]

    def prediction_path(self, index: int, out_dir: Path) -> Path:
        return Path(out_dir) / f"{self.scenes[index].name}.txt"

    def _read_native_prediction(self, path: Path) -> np.ndarray:
        if path.suffix != ".txt":
            raise DataFormatError(path, "expected a ScanNet <scene>.txt of NYU40 ids (or .npy)")
        try:
            ids = np.loadtxt(path, dtype=np.int64, ndmin=1)
        except ValueError as error:
            raise DataFormatError(path, f"not one NYU40 id per line: {error}") from None
        return scannet.nyu40_to_class(path, ids)
