"""What to show: a scan's ground truth, predictions and errors, an active-learning round's
queries, or segments (superpixels, their paired points), as :class:`~pcseg.vis.render.Panel`s.

Inputs are checked here so that a bad file fails with its name and the problem before anything
renders: a prediction or segment array whose length is not the scan's point count, a class id
the dataset does not have, a missing file or scene.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.active.oracle import HIGHLIGHT
from pcseg.config import Config, config_from_dict
from pcseg.data.datasets import SceneDataset
from pcseg.data.formats.validation import DataFormatError, check_count
from pcseg.data.label_budget import read_scene_arrays
from pcseg.vis import colors
from pcseg.vis.render import Layer, Panel

LABEL_MODES = ("gt", "pred", "error")
QUERY_SCALE = 3.0  # queries and earlier labels are drawn this many times larger


@dataclass
class Scan:
    """One scan as the viewer needs it: points, labels (all -1 when unlabelled), classes."""

    scene_id: str
    coord: np.ndarray
    label: np.ndarray
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    @property
    def num_points(self) -> int:
        return len(self.coord)

    def subset(self, keep: np.ndarray) -> Scan:
        """The scan with only the points where ``keep`` (bool (N,)) is true."""
        return Scan(
            self.scene_id, self.coord[keep], self.label[keep], self.class_names, self.palette
        )


def visible_points(scan: Scan, hide: Sequence[str]) -> np.ndarray:
    """bool (N,): points whose ground-truth class is not in ``hide`` (class names). Hiding
    the ceiling lets a camera above a room see inside it."""
    unknown = [name for name in hide if name not in scan.class_names]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; valid: {', '.join(scan.class_names)}")
    hidden = [scan.class_names.index(name) for name in hide]
    return ~np.isin(scan.label, hidden)


def keep_indices(indices: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Point indices into a scan, renumbered for ``scan.subset(keep)`` (dropped ones go)."""
    renumbered = np.cumsum(keep) - 1
    return renumbered[indices[keep[indices]]]


def find_scene(dataset: SceneDataset, scene_id: str | None) -> int:
    """Index of ``scene_id`` in ``dataset`` (its first scan when None)."""
    ids = [dataset.scene_id(i) for i in range(len(dataset))]
    if scene_id is None:
        return 0
    if scene_id not in ids:
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        raise ValueError(f"scene {scene_id!r} is not in this split; it has: {shown}")
    return ids.index(scene_id)


def load_scan(dataset: SceneDataset, index: int) -> Scan:
    """The scan as its reader returns it (every point, file order, no transforms)."""
    sample = dataset.read(index)
    return Scan(
        scene_id=dataset.scene_id(index),
        coord=np.asarray(sample["coord"], dtype=np.float32),
        label=np.asarray(sample["label"], dtype=np.int64),
        class_names=tuple(dataset.class_names),
        palette=tuple(dataset.palette),
    )


def read_predictions(
    dataset: SceneDataset, index: int, source: str | Path, *, num_points: int
) -> np.ndarray:
    """Predicted classes of scan ``index`` (``num_points`` points) from ``source``: a folder
    written by ``tools/test.py --export`` (the scan's file is found in it) or one file."""
    source = Path(source)
    path = dataset.prediction_path(index, source) if source.is_dir() else source
    pred = dataset.read_prediction(path)
    check_count(path, "prediction", len(pred), num_points)
    return colors.check_classes(pred, dataset.num_classes, source=str(path))


def label_panels(scan: Scan, pred: np.ndarray | None, modes: Sequence[str]) -> list[Panel]:
    """Panels for ``modes`` (of :data:`LABEL_MODES`, in that order of the arguments):
    ground truth, predictions, errors (wrong points red, the rest grey)."""
    unknown = [m for m in modes if m not in LABEL_MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; valid: {', '.join(LABEL_MODES)}")
    if pred is None and ({"pred", "error"} & set(modes)):
        raise ValueError("prediction and error views need predictions (a file or a checkpoint)")
    if pred is not None and len(pred) != scan.num_points:
        raise ValueError(f"{len(pred)} predictions for {scan.num_points} points of {scan.scene_id}")
    classes = {"gt": ("ground truth", scan.label, "G"), "pred": ("prediction", pred, "P")}
    shown = [classes[m][1] for m in modes if m in classes]
    legend = colors.class_legend(shown, scan.class_names, scan.palette) if shown else []
    panels = []
    for mode in modes:
        if mode == "error":
            panels.append(_error_panel(scan, pred))
            continue
        title, ids, key = classes[mode]
        layer = Layer(scan.coord, colors.class_colors(ids, scan.palette))
        panels.append(Panel(title, [layer], legend, key=key))
    return panels


def _error_panel(scan: Scan, pred: np.ndarray) -> Panel:
    wrong = int(((scan.label >= 0) & (scan.label != pred)).sum())
    labelled = int((scan.label >= 0).sum())
    share = f" ({100 * wrong / labelled:.1f} %)" if labelled else ""
    layer = Layer(scan.coord, colors.error_colors(scan.label, pred))
    title = f"errors: {wrong} of {labelled} labelled points{share}"
    return Panel(title, [layer], list(colors.ERROR_LEGEND), key="E")


def round_config(round_dir: str | Path) -> Config:
    """The config an active-learning loop ran with, from ``loop.json`` beside its rounds (its
    training split is the one the round's indices refer to)."""
    path = Path(round_dir).parent / "loop.json"
    try:
        return config_from_dict(json.loads(path.read_text())["config"])
    except FileNotFoundError:
        raise DataFormatError(
            path, "file not found (is this a round_XX folder of a loop?)"
        ) from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DataFormatError(path, f"not a loop record: {error!r}") from None


def busiest_scene(round_dir: str | Path) -> str:
    """The scan with the most queries in a round (the default one to look at)."""
    arrays = read_scene_arrays(Path(round_dir) / "selection.npz")
    if not arrays:
        raise DataFormatError(Path(round_dir) / "selection.npz", "holds no scans")
    return max(arrays, key=lambda scene: len(arrays[scene]))


def read_round(
    round_dir: str | Path, scene_id: str, num_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """The points an active-learning round asked about in a scan, and those labelled before it.

    Reads ``round_XX/selection.npz`` and, when it exists, ``round_{XX-1}/labels.npz``.
    """
    round_dir = Path(round_dir)
    selection = round_dir / "selection.npz"
    if not selection.is_file():
        raise DataFormatError(selection, "file not found (is this a round_XX folder of a loop?)")
    queries = _scene_indices(selection, scene_id, num_points)
    number = round_dir.name.removeprefix("round_")
    earlier = np.empty(0, dtype=np.int64)
    if number.isdigit() and int(number) > 0:
        labels = round_dir.parent / f"round_{int(number) - 1:02d}" / "labels.npz"
        if labels.is_file():
            earlier = _scene_indices(labels, scene_id, num_points)
    return queries, earlier


def _scene_indices(path: Path, scene_id: str, num_points: int) -> np.ndarray:
    arrays = read_scene_arrays(path)
    if scene_id not in arrays:
        raise DataFormatError(path, f"no scene {scene_id!r}; it has {', '.join(list(arrays)[:8])}")
    indices = arrays[scene_id]
    if len(indices) and (indices.min() < 0 or indices.max() >= num_points):
        raise DataFormatError(path, f"scene {scene_id!r}: indices outside 0..{num_points - 1}")
    return indices


def query_panels(scan: Scan, queries: np.ndarray, earlier: np.ndarray, title: str) -> list[Panel]:
    """One panel: the scan's ground truth darkened, earlier labels cyan, this round's queries
    magenta (the colour of the query PLYs), both drawn larger."""
    base = colors.dim(colors.class_colors(scan.label, scan.palette))
    layers = [Layer(scan.coord, base)]
    legend = [colors.LegendEntry(f"queries ({len(queries)})", HIGHLIGHT)]
    for indices, color in ((earlier, colors.LABELLED), (queries, HIGHLIGHT)):
        if len(indices):
            tint = np.tile(np.array(color, dtype=np.uint8), (len(indices), 1))
            layers.append(Layer(scan.coord[indices], tint, size_scale=QUERY_SCALE))
    if len(earlier):
        legend.append(colors.LegendEntry(f"labelled earlier ({len(earlier)})", colors.LABELLED))
    for entry in colors.class_legend([scan.label], scan.class_names, scan.palette):
        dimmed = colors.dim(np.array([entry.color]))[0]
        legend.append(colors.LegendEntry(entry.name, tuple(int(c) for c in dimmed)))
    return [Panel(title, layers, legend, key="Q")]


def read_segments(
    path: str | Path, scene_id: str, num_points: int, *, key: str | None = None
) -> np.ndarray:
    """Integer segment ids (N,) of a scan from an ``.npy`` or an ``.npz``.

    An ``.npz`` member is chosen by ``key``, else the scan's scene id (the per-scene layout of
    budgets and selections), else its only member. -1 marks points in no segment.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "segment file not found")
    if path.suffix == ".npz":
        arrays = read_scene_arrays(path, dtype=None)
        name = key or (scene_id if scene_id in arrays else None)
        if name is None and len(arrays) == 1:
            name = next(iter(arrays))
        if name not in arrays:
            raise DataFormatError(
                path, f"no member {name or scene_id!r}; members: {', '.join(arrays)}"
            )
        ids = arrays[name]
    else:
        try:
            ids = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataFormatError(path, f"unreadable .npy: {error}") from None
    check_count(path, "segment id", len(ids), num_points)
    colors.segment_colors(ids, source=str(path))  # validates dtype and range
    return ids.astype(np.int64)


def segment_panels(scan: Scan, segments: np.ndarray, *, with_labels: bool = True) -> list[Panel]:
    """Points coloured by segment (points in none grey), beside the ground truth if asked."""
    count = len(np.unique(segments[segments >= 0]))
    paired = int((segments >= 0).sum())
    title = f"{count} segments, {paired} of {len(segments)} points in one"
    legend = [colors.LegendEntry("in no segment", colors.SEGMENTLESS)]
    panels = [Panel(title, [Layer(scan.coord, colors.segment_colors(segments))], legend, key="S")]
    if with_labels and (scan.label >= 0).any():
        panels = label_panels(scan, None, ["gt"]) + panels
    return panels
