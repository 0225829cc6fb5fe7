"""Write class-range-balanced pseudo-labels for a SemanticKITTI-format training split.

Two passes over the training frames with a trained model (a mean teacher's teacher by default):
the first predicts every frame and fills the confidence histograms of
:mod:`pcseg.methods.pseudo_labels` with the points whose labels are hidden (frames outside
``data.labelled_frames``, points outside ``data.sparse_labels``), keeping each frame's
predictions in a cache; the second gives each hidden point its class where it passes its
(range band, class) threshold and writes ``OUT/sequences/XX/labels/NNNNNN.label``: the visible
labels as they were, pseudo-labels elsewhere, 0 (unlabelled) where neither. ``OUT/crb.json``,
written last, records the settings, the per-class counts and, where the hidden labels exist, the
pseudo-labels' accuracy. Nothing is written over an existing file and the data root is only
read; an interrupted run (its folder still marked as ours) is cleared and redone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pcseg.config import Config
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.formats import semantickitti
from pcseg.data.formats.files import write_text
from pcseg.engine import build
from pcseg.engine.distributed import select_device
from pcseg.engine.inference import load_model, predict_scan
from pcseg.methods.pseudo_labels import ConfidenceHistogram, CRBSettings, assign

MANIFEST = "crb.json"
LABEL_DIR = "labels"
MARKER = ".pcseg-pseudo-labels"  # an output folder this module started (safe to clear)


def _prepare(out_dir: Path) -> None:
    """Make ``out_dir`` ready: new, empty, or an interrupted run of ours (cleared); anything
    else is refused, so that no folder a person filled is ever cleared."""
    if (out_dir / MANIFEST).exists():
        raise FileExistsError(f"{out_dir / MANIFEST} exists: these pseudo-labels are written")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).exists():
            raise FileExistsError(
                f"{out_dir} is not empty and is no unfinished pseudo-label run: choose a new folder"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).touch()


def _predict(
    config: Config, model, dataset, index: int, device
) -> tuple[dict, np.ndarray, np.ndarray]:
    sample, probabilities = predict_scan(config, model, dataset, index, device)
    confidence, predicted = probabilities.max(1)
    order = np.argsort(sample["point_index"])  # the file's point order
    return (
        {key: np.asarray(sample[key])[order] for key in ("coord", "label", "label_mask")},
        predicted.cpu().numpy()[order],
        confidence.cpu().numpy().astype(np.float32)[order],
    )


def write_crb_labels(
    config: Config,
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    settings: CRBSettings | None = None,
    weights: str = "teacher",
    progress: bool = True,
) -> dict:
    """Pseudo-label the training split of ``config`` into ``out_dir`` (see the module); returns
    the manifest. ``out_dir`` must not hold a finished run (its ``crb.json``)."""
    out_dir, settings = Path(out_dir), settings or CRBSettings()
    if config.data.name != "semantickitti":
        raise ValueError(
            f"pseudo-labels are written for SemanticKITTI-format data, not {config.data.name}"
        )
    device = select_device(config.train.device)
    model = load_model(config, checkpoint, device, weights=weights).eval()
    dataset = build.build_dataset(config, "train", augment=False)
    _prepare(out_dir)
    cache = out_dir / ".predictions"
    cache.mkdir()
    histogram = ConfidenceHistogram(settings, dataset.num_classes)
    for index in tqdm(range(len(dataset)), desc="predicting", unit="scan", disable=not progress):
        points, predicted, confidence = _predict(config, model, dataset, index, device)
        hidden = ~points["label_mask"]
        histogram.add(points["coord"][hidden], predicted[hidden], confidence[hidden])
        np.savez(cache / f"{index}.npz", predicted=predicted, confidence=confidence, **points)
    counts = _write_labels(dataset, histogram, cache, out_dir, progress=progress)
    shutil.rmtree(cache)
    manifest = {
        "checkpoint": str(checkpoint),
        "weights": weights,
        "settings": asdict(settings),
        "frames": len(dataset),
        "pseudo_labelled": int(counts[0].sum()),
        "accuracy": float(counts[2].sum() / counts[1].sum()) if counts[1].sum() else None,
        "per_class": {
            name: {"pseudo_labelled": int(n), "checked": int(c), "correct": int(r)}
            for name, n, c, r in zip(dataset.class_names, *counts, strict=True)
        },
    }
    write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2), overwrite=False)
    (out_dir / MARKER).unlink()
    return manifest


def _write_labels(
    dataset: SemanticKITTIDataset,
    histogram: ConfidenceHistogram,
    cache: Path,
    out_dir: Path,
    *,
    progress: bool,
) -> np.ndarray:
    """The second pass: threshold, merge with the visible labels, write. Returns per class
    (3, K): pseudo-labelled points, those with a hidden label to check, those right."""
    thresholds = histogram.thresholds()
    counts = np.zeros((3, dataset.num_classes), dtype=np.int64)
    for index in tqdm(range(len(dataset)), desc="writing", unit="scan", disable=not progress):
        with np.load(cache / f"{index}.npz") as saved:
            frame = {key: saved[key] for key in saved.files}
        hidden = ~frame["label_mask"]
        pseudo = assign(
            frame["coord"], frame["predicted"], frame["confidence"], histogram, thresholds
        )
        chosen = hidden & (pseudo >= 0)
        checked = chosen & (frame["label"] >= 0)
        right = checked & (frame["label"] == pseudo)
        for row, points in enumerate((chosen, checked, right)):
            counts[row] += np.bincount(pseudo[points], minlength=dataset.num_classes)
        seq_dir, frame_id = dataset.items[index]
        path = out_dir / "sequences" / seq_dir.name / LABEL_DIR / f"{frame_id:06d}.label"
        classes = np.where(hidden, pseudo, frame["label"])
        semantickitti.write_predictions(path, classes, overwrite=False)
    return counts
