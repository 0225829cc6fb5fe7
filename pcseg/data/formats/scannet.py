"""ScanNet v2 on disk: ``scans/<scene>/`` meshes, labels, over-segmentation and aggregation.

Per scene (``scans_test/`` holds the unlabelled test scenes)::

    <scene>_vh_clean_2.ply                   binary PLY mesh: vertex x y z red green blue alpha
    <scene>_vh_clean_2.labels.ply            same vertices + ushort ``label`` (NYU40 id)
    <scene>_vh_clean_2.0.010000.segs.json    ``segIndices``: over-segment id per vertex
    <scene>.aggregation.json                 ``segGroups``: objectId, raw ``label``, segments
    <scene>.txt                              ``axisAlignment = 16 floats`` (row-major 4x4)

and ``scannetv2-labels.combined.tsv`` at the data root maps raw category names to NYU40 ids.
Semantics come from the ``.labels.ply`` (the benchmark's ground truth) or from the aggregation
through the tsv, as ScanNet's ``export_train_mesh_for_evaluation.py`` does (a later group wins a
shared segment). Instance ids are ``objectId + 1`` (0 = none). The official split lists
(``scannetv2_{train,val,test}.txt``, 1201 / 312 / 100 scenes, in ScanNet's ``Tasks/Benchmark``)
are not bundled: put them in the data root.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement, PlyElementParseError, PlyParseError

from pcseg.data.formats.files import atomic_output, write_text
from pcseg.data.formats.validation import (
    DataFormatError,
    build_lut,
    check_coords,
    check_count,
    classes_to_ids,
    map_ids,
    read_json,
    read_path_list,
)
from pcseg.data.meta import scannet as meta
from pcseg.data.sample import Sample, make_sample

_NYU40_TO_CLASS = build_lut(meta.LABEL_MAP, meta.NUM_NYU40)
_CLASS_TO_NYU40 = np.asarray(meta.CLASS_NYU40_IDS, dtype=np.int64)
_PALETTE = np.asarray(meta.NYU40_PALETTE, dtype=np.uint8)
_SUFFIXES = {
    "mesh": "_vh_clean_2.ply", "labels": "_vh_clean_2.labels.ply",
    "segs": "_vh_clean_2.0.010000.segs.json", "aggregation": ".aggregation.json", "meta": ".txt",
}  # fmt: skip


def scene_files(scene_dir: str | Path) -> dict[str, Path]:
    """Paths of a scene's files keyed mesh, labels, segs, aggregation, meta (may not exist)."""
    scene_dir = Path(scene_dir)
    return {key: scene_dir / f"{scene_dir.name}{suffix}" for key, suffix in _SUFFIXES.items()}


def _vertices(path: Path, fields: tuple[str, ...]) -> np.ndarray:
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        try:
            # Known triangle faces are mapped in one block, ~500x faster than plyfile's per-row
            # parse, which remains the fallback for meshes with other polygons.
            ply = PlyData.read(str(path), known_list_len={"face": {"vertex_indices": 3}})
        except PlyElementParseError:
            ply = PlyData.read(str(path))
        # A copy: a view would pin the memory map, and rewriting the file would then crash.
        return np.array(ply["vertex"].data[list(fields)])
    except (PlyParseError, KeyError, ValueError, EOFError) as error:
        raise DataFormatError(path, f"unreadable PLY or no vertex {fields}: {error}") from error


def read_mesh_vertices(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a ``_vh_clean_2.ply``: coord float32 (N, 3) and colour uint8 (N, 3)."""
    path = Path(path)
    vertex = _vertices(path, ("x", "y", "z", "red", "green", "blue"))
    coord = np.column_stack([vertex["x"], vertex["y"], vertex["z"]]).astype(np.float32)
    check_coords(path, coord)
    color = np.column_stack([vertex["red"], vertex["green"], vertex["blue"]])
    return coord, color.astype(np.uint8)


def read_labels_ply(path: str | Path, num_points: int) -> np.ndarray:
    """NYU40 ids int64 (N,) from a ``.labels.ply``."""
    path = Path(path)
    labels = np.asarray(_vertices(path, ("label",))["label"], dtype=np.int64)
    check_count(path, "label", len(labels), num_points)
    return labels


def read_label_table(path: str | Path) -> dict[str, int]:
    """``scannetv2-labels.combined.tsv`` as raw category name -> NYU40 id."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found (the label table maps aggregation labels)")
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream, delimiter="\t")
        if not {"raw_category", "nyu40id"} <= set(reader.fieldnames or ()):
            raise DataFormatError(path, "columns 'raw_category' and 'nyu40id' are required")
        table = {}
        for number, row in enumerate(reader, start=2):
            try:
                table[row["raw_category"]] = int(row["nyu40id"])
            except (TypeError, ValueError) as error:
                raise DataFormatError(path, f"line {number}: bad nyu40id {row}") from error
    return table


def _load_json(path: Path, key: str) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataFormatError(path, f"missing list {key!r}")
    return data


def read_aggregation(
    segs_path: str | Path, aggregation_path: str | Path, num_points: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vertex-to-object assignment: group index int64 (N,) into the segGroups (-1 = in no
    group), each group's objectId int64 (G,) and raw label (G,)."""
    segs_path, aggregation_path = Path(segs_path), Path(aggregation_path)
    seg_indices = np.asarray(_load_json(segs_path, "segIndices")["segIndices"], dtype=np.int64)
    check_count(segs_path, "segIndices", len(seg_indices), num_points)
    groups = _load_json(aggregation_path, "segGroups")["segGroups"]
    try:
        object_ids = np.asarray([g["objectId"] for g in groups], dtype=np.int64)
        names = [str(g["label"]) for g in groups]
        members = [np.asarray(g["segments"], dtype=np.int64).reshape(-1) for g in groups]
    except (KeyError, TypeError, ValueError) as error:
        raise DataFormatError(aggregation_path, f"malformed segGroups: {error!r}") from error
    segments = np.concatenate([np.empty(0, np.int64), *members])
    owner = np.repeat(np.arange(len(groups)), np.asarray([len(m) for m in members], np.int64))
    # np.unique keeps the first occurrence; reversing makes the last group win, as ScanNet does.
    unique, first = np.unique(segments[::-1], return_index=True)
    owner = np.append(owner[::-1][first], -1)  # position len(unique) = segment in no group
    pos = np.searchsorted(unique, seg_indices)
    pos[np.append(unique, 0)[pos] != seg_indices] = len(unique)
    group = owner[pos]
    return group, object_ids, names


def read_axis_alignment(path: str | Path) -> np.ndarray:
    """The 4x4 ``axisAlignment`` matrix from a scene's ``<scene>.txt``."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            try:
                matrix = np.array(value.split(), dtype=np.float64)
            except ValueError:
                matrix = np.empty(0)
            if matrix.size != 16 or not np.isfinite(matrix).all():
                raise DataFormatError(path, "axisAlignment must hold 16 finite numbers")
            return matrix.reshape(4, 4)
    raise DataFormatError(path, "no axisAlignment entry")


def nyu40_to_class(path: str | Path, nyu40: np.ndarray) -> np.ndarray:
    """NYU40 ids (0..40) -> benchmark classes 0..19, others -1; ids outside 0..40 are an error."""
    return map_ids(path, nyu40, _NYU40_TO_CLASS, what="NYU40")


def class_to_nyu40(classes: np.ndarray) -> np.ndarray:
    """Benchmark classes 0..19 -> NYU40 ids for export (ignore -1 -> 0, unannotated)."""
    return classes_to_ids(classes, _CLASS_TO_NYU40, ignore_id=0)


def write_predictions(path: str | Path, classes: np.ndarray, *, overwrite: bool = False) -> None:
    """Write per-vertex class predictions as a benchmark ``<scene>.txt`` of NYU40 ids.

    The name matches a scene's own ``<scene>.txt`` (its axis alignment), so an existing file is
    refused unless ``overwrite``: write predictions into their own folder.
    """
    ids = class_to_nyu40(classes)
    write_text(path, "".join(f"{i}\n" for i in ids.tolist()), overwrite=overwrite)


def _aggregation_labels(
    files: dict[str, Path], num_points: int, table: dict[str, int] | None
) -> tuple[np.ndarray | None, np.ndarray]:
    """(NYU40 ids or None without a table, instance ids) per vertex from the aggregation."""
    group, object_ids, names = read_aggregation(files["segs"], files["aggregation"], num_points)
    # Index -1 (no group) picks the appended trailing 0: unannotated / no instance.
    instance = np.append(object_ids + 1, 0)[group]
    if table is None:
        return None, instance
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise DataFormatError(files["aggregation"], f"labels not in the label table: {unknown}")
    return np.append(np.asarray([table[n] for n in names], np.int64), 0)[group], instance


def _label_mode(files: dict[str, Path], labels: str, has_aggregation: bool) -> str:
    if labels == "auto":
        return "ply" if files["labels"].is_file() else "aggregation" if has_aggregation else "none"
    if labels not in ("ply", "aggregation", "none"):
        raise ValueError(f"labels must be 'auto', 'ply', 'aggregation' or 'none', got {labels!r}")
    return labels


def read_scene(
    scene_dir: str | Path,
    *,
    label_table: dict[str, int] | str | Path | None = None,
    align: bool = False,
    labels: str = "auto",
) -> Sample:
    """Read one scene as a sample dict.

    Args:
        scene_dir: ``root/scans/<scene>`` (or ``scans_test``).
        label_table: the tsv (path or :func:`read_label_table` result); default
            ``root/scannetv2-labels.combined.tsv``. Needed only for labels from the aggregation.
        align: apply the scene's ``axisAlignment``.
        labels: "ply" (``.labels.ply``), "aggregation" (segs + aggregation + tsv), "none", or
            "auto": the ``.labels.ply`` if present, else the aggregation if present, else none.

    Sample keys: coord (N, 3), feat = color (N, 3) in [0, 1], color, label (N,) 0..19 / -1,
    instance (N,) when segs + aggregation exist (unless ``labels="none"``), scene_id.
    """
    scene_dir = Path(scene_dir)
    files = scene_files(scene_dir)
    coord, rgb = read_mesh_vertices(files["mesh"])
    has_aggregation = files["segs"].is_file() and files["aggregation"].is_file()
    mode = _label_mode(files, labels, has_aggregation)
    nyu40 = label = instance = None
    if mode == "ply":
        nyu40 = read_labels_ply(files["labels"], len(coord))
    if mode == "aggregation" and not isinstance(label_table, dict):
        label_table = read_label_table(label_table or scene_dir.parent.parent / meta.TABLE_NAME)
    if mode == "aggregation" or (mode == "ply" and has_aggregation):
        table = label_table if isinstance(label_table, dict) and mode == "aggregation" else None
        agg_nyu40, instance = _aggregation_labels(files, len(coord), table)
        nyu40 = agg_nyu40 if mode == "aggregation" else nyu40
    if nyu40 is not None:
        label = nyu40_to_class(files["labels" if mode == "ply" else "aggregation"], nyu40)
    if align:
        matrix = read_axis_alignment(files["meta"])
        coord = (coord @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)
    color = (rgb / 255.0).astype(np.float32)
    return make_sample(
        coord=coord, feat=color, label=label, scene_id=scene_dir.name,
        color=color, instance=instance,
    )  # fmt: skip


def list_scenes(root: str | Path, subdir: str = "scans") -> list[Path]:
    """Scene directories under ``root/subdir``, sorted by name."""
    base = Path(root) / subdir
    if not base.is_dir():
        raise DataFormatError(base, "directory not found")
    return sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))


def read_split(root: str | Path, split: str, *, split_file: str | Path | None = None) -> list[Path]:
    """Scene directories of a split listed in ``root/scannetv2_<split>.txt`` (or ``split_file``).

    Names resolve inside ``root/scans`` (``root/scans_test`` for "test"); a name that escapes
    it, or a scene that is missing, raises DataFormatError naming the split file.
    """
    root = Path(root)
    split_file = Path(split_file) if split_file else root / f"scannetv2_{split}.txt"
    if not split_file.is_file():
        problem = "split list not found (ScanNet's official lists are not bundled: copy them "
        raise DataFormatError(split_file, problem + "from its Tasks/Benchmark to the data root)")
    base = root / ("scans_test" if split == "test" else "scans")
    return read_path_list(split_file, base, what="scene")


def write_split(root: str | Path, split: str, names: list[str], *, overwrite: bool = False) -> Path:
    """Write ``root/scannetv2_<split>.txt``, one scene name per line."""
    path = Path(root) / f"scannetv2_{split}.txt"
    write_text(path, "".join(f"{name}\n" for name in names), overwrite=overwrite)
    return path


def write_label_table(path: str | Path, table: dict[str, int], *, overwrite: bool = False) -> Path:
    """Write a minimal ``scannetv2-labels.combined.tsv`` (raw_category -> nyu40id)."""
    path = Path(path)
    rows = [f"{i}\t{name}\t{name}\t{nyu}\t{meta.NYU40_NAMES[nyu]}\n" for i, (name, nyu) in
            enumerate(table.items(), start=1)]  # fmt: skip
    header = "id\traw_category\tcategory\tnyu40id\tnyu40class\n"
    write_text(path, header + "".join(rows), overwrite=overwrite)
    return path


def _vertex_table(coord: np.ndarray, color: np.ndarray, label: np.ndarray | None) -> np.ndarray:
    names = ("x", "y", "z", "red", "green", "blue", "alpha", "label")
    types = ("<f4",) * 3 + ("u1",) * 4 + ("<u2",)
    columns = [*coord.T, *color.T, np.full(len(coord), 255), label]
    count = 8 if label is not None else 7
    vertex = np.empty(len(coord), dtype=list(zip(names[:count], types[:count], strict=True)))
    for name, column in zip(names[:count], columns[:count], strict=True):
        vertex[name] = column
    return vertex


def _write_ply(
    path: Path, vertex: np.ndarray, faces: np.ndarray | None, *, overwrite: bool
) -> None:
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces is not None:
        face = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
        face["vertex_indices"] = faces
        types = {"len_types": {"vertex_indices": "u1"}, "val_types": {"vertex_indices": "i4"}}
        elements.append(PlyElement.describe(face, "face", **types))
    with atomic_output(path, overwrite=overwrite) as tmp:
        PlyData(elements, byte_order="<", comments=["VCGLIB generated"]).write(str(tmp))


def _write_aggregation(
    files: dict[str, Path],
    scene_id: str,
    coord: np.ndarray,
    nyu40: np.ndarray,
    inst: np.ndarray,
    *,
    overwrite: bool,
) -> None:
    # Over-segments: each object (and the unassigned rest) cut into 1 m cells, so segments are
    # finer than objects, as in the real over-segmentation.
    cells = np.floor(coord).astype(np.int64)
    segment = np.unique(np.column_stack([inst, cells]), axis=0, return_inverse=True)[1].ravel()
    groups = []
    for obj in np.unique(inst[inst > 0]).tolist():
        ids = np.unique(nyu40[inst == obj])
        if len(ids) != 1:
            raise ValueError(f"instance {obj} mixes NYU40 ids {ids.tolist()}")
        segments = np.unique(segment[inst == obj]).tolist()
        label = meta.NYU40_NAMES[int(ids[0])]
        groups.append({"id": obj - 1, "objectId": obj - 1, "label": label, "segments": segments})
    segs = json.dumps({"sceneId": scene_id, "segIndices": segment.tolist()})
    write_text(files["segs"], segs, overwrite=overwrite)
    segs_name = f"scannet.{scene_id}{_SUFFIXES['segs']}"
    aggregation = {"sceneId": f"scannet.{scene_id}", "segGroups": groups, "segmentsFile": segs_name}
    write_text(files["aggregation"], json.dumps(aggregation), overwrite=overwrite)


def _check_scene_arrays(coord: np.ndarray, color: np.ndarray, faces: np.ndarray | None) -> None:
    n = len(coord)
    if coord.shape != (n, 3) or color.shape != (n, 3) or n == 0:
        raise ValueError("coord and color must be (N, 3) with N > 0")
    if not np.issubdtype(color.dtype, np.integer) or color.min() < 0 or color.max() > 255:
        raise TypeError("color must be integers 0..255, as the files store it")
    if faces is not None and (faces.ndim != 2 or faces.shape[1] != 3 or not np.all(faces < n)):
        raise ValueError("faces must be (F, 3) vertex indices")


def write_scene(
    scene_dir: str | Path,
    scene_id: str,
    coord: np.ndarray,
    color: np.ndarray,
    nyu40: np.ndarray | None,
    *,
    faces: np.ndarray | None = None,
    instance: np.ndarray | None = None,
    axis_alignment: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a scene in ScanNet's files (binary little-endian PLY, as released).

    Args:
        scene_dir: the scene's folder, normally ``root/scans/<scene_id>`` (readers find the
            files by the folder name, so it must be named ``scene_id``).
        coord: (N, 3) metres; color: (N, 3) integers 0..255.
        nyu40: (N,) NYU40 ids for ``.labels.ply`` (None for an unlabelled test scene).
        faces: (F, 3) non-negative vertex indices of the mesh triangles.
        instance: (N,) ids (0 = none; one NYU40 id per instance): writes segs + aggregation,
            whose labels are the NYU40 names (see :func:`write_label_table`).
        axis_alignment: (4, 4) written to ``<scene>.txt``.
        overwrite: replace existing files of the scene (refused otherwise).
    """
    scene_dir = Path(scene_dir)
    if scene_dir.name != scene_id:
        raise ValueError(f"scene_dir {scene_dir} must be named after scene_id {scene_id!r}")
    coord, color = np.asarray(coord, np.float64), np.asarray(color)
    faces = None if faces is None else np.asarray(faces, np.uint32)
    _check_scene_arrays(coord, color, faces)
    scene_dir.mkdir(parents=True, exist_ok=True)
    files = scene_files(scene_dir)
    _write_ply(files["mesh"], _vertex_table(coord, color, None), faces, overwrite=overwrite)
    if nyu40 is not None:
        nyu40 = np.asarray(nyu40, np.int64)
        check_count(files["labels"], "label", len(nyu40), len(coord))
        palette = _PALETTE[nyu40.clip(0, meta.NUM_NYU40 - 1)]
        labels = _vertex_table(coord, palette, nyu40)
        _write_ply(files["labels"], labels, faces, overwrite=overwrite)
    if instance is not None:
        if nyu40 is None:
            raise ValueError("instances need NYU40 labels for the aggregation")
        instance = np.asarray(instance, np.int64)
        _write_aggregation(files, scene_id, coord, nyu40, instance, overwrite=overwrite)
    if axis_alignment is not None:
        values = " ".join(f"{v:.6f}" for v in np.asarray(axis_alignment, np.float64).ravel())
        text = f"axisAlignment = {values}\nsceneType = Synthetic\n"
        write_text(files["meta"], text, overwrite=overwrite)
    return scene_dir
