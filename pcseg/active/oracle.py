"""The human side of an active-labelling round: files a person can answer, and their answers.

:func:`write_queries` puts one round's query points in a folder: ``queries.csv`` (one row per
query, an empty ``label`` column to fill in), one PLY per scene with the queries highlighted,
and a ``README.txt`` saying how to answer. The annotator saves the filled-in table as
``answers.csv``; :func:`read_answers` checks it against the round's queries and reports every
problem at once (file, line, what is wrong), so a file can be fixed in one pass.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.formats.files import atomic_output, write_text

QUERIES_NAME = "queries.csv"
ANSWERS_NAME = "answers.csv"
README_NAME = "README.txt"
COLUMNS = ("scene", "point_index", *"xyz", "predicted_class", "predicted_name", "score", "label")
HIGHLIGHT = (255, 0, 255)  # magenta: rare in real scans, so queries stand out
GREY = (128, 128, 128)  # ordinary points of a scan without colour
DARKEN = 0.4  # ordinary points keep 40 % of their colour, so the highlight dominates
SKIP_LABELS = frozenset({"", "ignore", "-1"})  # "cannot tell": the point stays unlabelled
MAX_PROBLEMS = 20
_RGB = ("red", "green", "blue")
_PLY_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", *_RGB, "query", "predicted"],
        "formats": ["<f4", "<f4", "<f4", "u1", "u1", "u1", "u1", "<i4"],
    }
)
_INTEGER = re.compile(r"^[+-]?\d+$")


class AnswerError(ValueError):
    """An answers file is unusable; the message names the file and each problem with its line."""

    def __init__(self, path: str | Path, problems: Sequence[str], *, total: int | None = None):
        total = len(problems) if total is None else total
        lines = [f"  {problem}" for problem in problems]
        if total > len(problems):
            lines.append(f"  ... and {total - len(problems)} more")
        noun = "problem" if total == 1 else "problems"
        super().__init__(f"{path}: {total} {noun}:\n" + "\n".join(lines))
        self.path = Path(path)
        self.problems = list(problems)


@dataclass
class QueryScene:
    """One scan and the points queried in it this round.

    Attributes:
        scene_id: dataset scene id ("00/000000", "Area_1/office_1").
        coord: float (N, 3), every point of the scan as read.
        color: uint8 (N, 3) or None.
        queries: int64 (Q,) distinct indices into the scan.
        predicted: int64 (N,) predicted class of every point; -1 where there is no prediction
            yet (the random queries before the first model).
        scores: float32 (Q,) selection score of each query.
    """

    scene_id: str
    coord: np.ndarray
    color: np.ndarray | None
    queries: np.ndarray
    predicted: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.queries = np.asarray(self.queries, dtype=np.int64)
        self.predicted = np.asarray(self.predicted, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        problem = _scene_problem(self)
        if problem:
            raise ValueError(f"scene {self.scene_id!r}: {problem}")


def _scene_problem(scene: QueryScene) -> str | None:
    """What is inconsistent in a scene's arrays, if anything."""
    n, color, queries = len(scene.coord), scene.color, scene.queries
    if scene.coord.shape != (n, 3):
        return f"coord must be (N, 3), got {scene.coord.shape}"
    if color is not None and (color.shape != (n, 3) or color.dtype != np.uint8):
        return f"color must be uint8 ({n}, 3) or None, got {color.dtype} {color.shape}"
    if scene.predicted.shape != (n,):
        return f"predicted must be ({n},), got {scene.predicted.shape}"
    if queries.ndim != 1 or scene.scores.shape != queries.shape:
        return f"queries {queries.shape} and scores {scene.scores.shape} must both be (Q,)"
    if queries.size and not 0 <= queries.min() <= queries.max() < n:
        return f"query indices must lie in 0..{n - 1}"
    if len(np.unique(queries)) != len(queries):
        return "query indices must be distinct"
    return None


def ply_name(scene_id: str) -> str:
    """File name of a scene's PLY: the id with "/" replaced by "__" (one flat folder)."""
    return scene_id.replace("/", "__") + ".ply"


def write_queries(
    out_dir: Path, scenes: Sequence[QueryScene], *, class_names: Sequence[str]
) -> list[Path]:
    """Write one round's queries for a person to answer; returns the written paths.

    Writes ``queries.csv``, ``README.txt`` and one PLY per scene (see the module docstring).
    No file is replaced: if any target exists, FileExistsError names it and nothing is written.
    Each file is written atomically, and a failure part-way removes the files written so far.

    Raises:
        ValueError: duplicate scene ids (or ids that map to the same PLY name), or a query
            point whose predicted class is outside -1..K-1.
        FileExistsError: a target file already exists.
    """
    out_dir = Path(out_dir)
    _check_scenes(scenes, len(class_names))
    targets = [out_dir / QUERIES_NAME, out_dir / README_NAME]
    targets += [out_dir / ply_name(scene.scene_id) for scene in scenes]
    for target in targets:
        if target.exists():
            raise FileExistsError(f"{target}: already exists; refusing to overwrite it")
    written: list[Path] = []
    try:
        write_text(targets[0], _queries_csv(scenes, class_names), overwrite=False)
        written.append(targets[0])
        write_text(targets[1], _readme(class_names, len(scenes)), overwrite=False)
        written.append(targets[1])
        for scene, target in zip(scenes, targets[2:], strict=True):
            _write_scene_ply(target, scene)
            written.append(target)
    except BaseException:
        # All or nothing: a half-written round would be mistaken for a complete one.
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _check_scenes(scenes: Sequence[QueryScene], num_classes: int) -> None:
    names = [ply_name(scene.scene_id) for scene in scenes]
    if len(set(names)) != len(names):
        raise ValueError("scene ids must be distinct, also after '/' -> '__'")
    for scene in scenes:
        classes = scene.predicted[scene.queries]
        if classes.size and (classes.min() < -1 or classes.max() >= num_classes):
            raise ValueError(
                f"scene {scene.scene_id!r}: predicted classes of queries must lie in "
                f"0..{num_classes - 1} (or be -1: no prediction)"
            )


def _queries_csv(scenes: Sequence[QueryScene], class_names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for scene in scenes:
        for index, score in zip(scene.queries.tolist(), scene.scores.tolist(), strict=True):
            x, y, z = (f"{value:.4f}" for value in scene.coord[index].tolist())
            predicted = int(scene.predicted[index])
            name = class_names[predicted] if predicted >= 0 else ""
            writer.writerow([scene.scene_id, index, x, y, z, predicted, name, f"{score:.6g}", ""])
    return buffer.getvalue()


def _write_scene_ply(path: Path, scene: QueryScene) -> None:
    """Binary little-endian PLY of every point, queries highlighted and flagged."""
    from plyfile import PlyData, PlyElement

    n = len(scene.coord)
    if scene.color is None:
        rgb = np.tile(np.array(GREY, dtype=np.uint8), (n, 1))
    else:
        rgb = np.round(scene.color * DARKEN).astype(np.uint8)
    rgb[scene.queries] = HIGHLIGHT
    flag = np.zeros(n, dtype=np.uint8)
    flag[scene.queries] = 1
    vertex = np.empty(n, dtype=_PLY_DTYPE)
    for axis, name in enumerate("xyz"):
        vertex[name] = scene.coord[:, axis]
    for channel, name in enumerate(_RGB):
        vertex[name] = rgb[:, channel]
    vertex["query"] = flag
    vertex["predicted"] = scene.predicted
    with atomic_output(path, overwrite=False) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<").write(str(tmp))


def _readme(class_names: Sequence[str], num_scenes: int) -> str:
    classes = "\n".join(f"  {k:3d}  {name}" for k, name in enumerate(class_names))
    return f"""\
Labelling queries for one active-learning round
===============================================

{QUERIES_NAME} lists the points to label, one row per point. Each of the {num_scenes} scenes
has a PLY file (<scene id with "/" replaced by "__">.ply) holding the whole scan: query points
are magenta {HIGHLIGHT} with query = 1, all other points are darkened (or grey). In
CloudCompare or Open3D, filter on the "query" property to find them; "predicted" holds the
model's current class of every point.

How to answer
-------------
1. Open {QUERIES_NAME} in a spreadsheet or text editor.
2. For each row, write the point's class in the "label" column: the class id or the class
   name (either is fine, names are not case-sensitive).
3. If you cannot tell, leave "label" empty or write "ignore": the point stays unlabelled.
4. Do not change "scene" or "point_index"; the other columns are ignored. Rows may be
   reordered or deleted.
5. Save the file as CSV named {ANSWERS_NAME} in this same folder.

Classes
-------
{classes}
"""


def read_answers(
    path: Path, scenes: Sequence[QueryScene], *, class_names: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read an annotator's answers and check them against this round's queries.

    The file is CSV with a header holding at least ``scene``, ``point_index`` and ``label``
    (any order; other columns ignored), so a filled-in ``queries.csv`` is valid. ``label`` is
    a class id 0..K-1 or a class name (case-insensitive); empty, ``ignore`` or ``-1`` skip
    the row. Nothing is written.

    Returns:
        scene id -> (point indices int64 (A,), class ids int64 (A,)) sorted by point index,
        for each scene with at least one answer, in the order of ``scenes``.

    Raises:
        AnswerError: listing up to ``MAX_PROBLEMS`` problems, each with its line number.
    """
    path = Path(path)
    rows = _read_rows(path)
    columns = _header_columns(path, rows[0] if rows else None)
    by_scene = {scene.scene_id: scene for scene in scenes}
    queried = {scene.scene_id: frozenset(scene.queries.tolist()) for scene in scenes}
    by_name = {name.lower(): k for k, name in enumerate(class_names)}
    problems: list[str] = []
    seen: dict[tuple[str, int], int] = {}
    answers: dict[str, list[tuple[int, int]]] = {}
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue  # blank lines, often left at the end by spreadsheets
        scene_id, index_text, label_text = (row[c].strip() if c < len(row) else "" for c in columns)
        where = f"line {line}"
        scene = by_scene.get(scene_id)
        if scene is None:
            problems.append(f"{where}: unknown scene {scene_id!r}")
            continue
        index = _point_index(scene, queried[scene_id], index_text)
        if isinstance(index, str):
            problems.append(f"{where}: {index}")
            continue
        if (scene_id, index) in seen:
            problems.append(
                f"{where}: duplicate row for scene {scene_id!r} point {index} "
                f"(first on line {seen[scene_id, index]})"
            )
            continue
        seen[scene_id, index] = line
        label = _class_id(label_text, len(class_names), by_name)
        if isinstance(label, str):
            problems.append(f"{where}: {label}")
        elif label is not None:
            answers.setdefault(scene_id, []).append((index, label))
    if problems:
        raise AnswerError(path, problems[:MAX_PROBLEMS], total=len(problems))
    tables = {
        sid: np.array(sorted(answers[sid]), dtype=np.int64) for sid in by_scene if sid in answers
    }
    return {sid: (table[:, 0].copy(), table[:, 1].copy()) for sid, table in tables.items()}


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every CSV record; a comma, semicolon or tab delimiter."""
    try:
        # utf-8-sig: spreadsheets often prepend a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as error:
        raise AnswerError(path, ["file not found"]) from error
    except (OSError, UnicodeDecodeError) as error:
        raise AnswerError(path, [f"cannot read the file: {error}"]) from error
    first = text.split("\n", 1)[0]
    # Spreadsheets in locales with a decimal comma save CSV with ";" between fields.
    delimiter = max(",;\t", key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        return [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise AnswerError(path, [f"line {reader.line_num}: not valid CSV: {error}"]) from error


def _header_columns(path: Path, header: tuple[int, list[str]] | None) -> tuple[int, int, int]:
    """Positions of the scene, point_index and label columns in the header row."""
    if header is None:
        raise AnswerError(path, ["line 1: empty file, expected a header row"])
    line, cells = header
    names = [cell.strip().lower() for cell in cells]
    wanted = ("scene", "point_index", "label")
    missing = [name for name in wanted if name not in names]
    if missing:
        raise AnswerError(path, [f"line {line}: header lacks column(s) {missing}; it has {cells}"])
    scene, index, label = (names.index(name) for name in wanted)
    return scene, index, label


def _point_index(scene: QueryScene, queried: frozenset[int], text: str) -> int | str:
    """The row's point index if it is an integer, in range and queried, else the problem."""
    if not _INTEGER.match(text):
        return f"point_index {text!r} is not an integer"
    index, n, scene_id = int(text), len(scene.coord), scene.scene_id
    if not 0 <= index < n:
        return f"point_index {index} out of range 0..{n - 1} for scene {scene_id!r}"
    if index not in queried:
        return f"point {index} of scene {scene_id!r} was not queried this round"
    return index


def _class_id(text: str, num_classes: int, by_name: dict[str, int]) -> int | str | None:
    """The class id a label names, None for "cannot tell", else the problem."""
    if text.lower() in SKIP_LABELS:
        return None
    if _INTEGER.match(text):
        label = int(text)
        if label == -1:  # "-01" too
            return None
        valid = 0 <= label < num_classes
        return label if valid else f"unknown class id {label} (valid: 0..{num_classes - 1})"
    if text.lower() in by_name:
        return by_name[text.lower()]
    close = difflib.get_close_matches(text.lower(), list(by_name), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown class name {text!r}{hint}"
