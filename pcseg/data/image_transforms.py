"""Augmentations of image-to-LiDAR samples that keep cloud, images, superpixels and pairings
consistent (SLidR's mixed augmentations): drop a cuboid of points, a resized crop of every image,
a horizontal flip of every image. Cloud-only rotations and flips need nothing special: pairings
name points, and :func:`pcseg.data.sample.index_points` renumbers them whenever points go.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pcseg.data.sample import Sample, index_points
from pcseg.data.transforms import TRANSFORMS, _interval, _probability, _Repr


def _require_cameras(sample: Sample, transform: str) -> None:
    if "pairing" not in sample or "images" not in sample:
        raise KeyError(
            f"{transform} needs camera data (images, superpixels, pairing), which sample "
            f"{sample.get('scene_id', '?')!r} lacks: set the dataset's cameras option"
        )


def _pairings_per_camera(pairing: np.ndarray, cameras: int) -> np.ndarray:
    return np.bincount(pairing[:, 1], minlength=cameras)


@TRANSFORMS.register("drop_cuboids")
class DropCuboids(_Repr):
    """Remove the points inside a cuboid centred on a random point, with half-sizes
    ``extent * U(0, max_fraction) / 2`` per axis (``extent``: the cloud's range); a draw that
    leaves a camera with fewer than ``min_pairings`` pairings is rejected (up to ``tries``)."""

    def __init__(
        self, *, max_fraction: float = 0.2, min_pairings: int = 1024, tries: int = 10
    ) -> None:
        self.max_fraction = _probability("max_fraction", max_fraction)
        self.min_pairings, self.tries = int(min_pairings), int(tries)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        _require_cameras(sample, "drop_cuboids")
        coord = sample["coord"]
        if len(coord) == 0:
            return sample
        cameras = len(sample["images"])
        before = _pairings_per_camera(sample["pairing"], cameras)
        extent = coord.max(0) - coord.min(0)
        for _ in range(self.tries):
            centre = coord[rng.integers(len(coord))]
            half = extent * rng.uniform(0, self.max_fraction, 3) / 2
            keep = np.any(np.abs(coord - centre) > half, axis=1)
            kept = _pairings_per_camera(sample["pairing"][keep[sample["pairing"][:, 0]]], cameras)
            if np.all((kept >= self.min_pairings) | (kept == before)):
                return index_points(sample, keep)
        return sample


def _crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng
) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of a random crop of ``scale`` of the area with
    width/height in ``ratio`` (log-uniform), clipped to the image."""
    area = height * width * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    crop_w = int(min(width, max(1, round(np.sqrt(area * aspect)))))
    crop_h = int(min(height, max(1, round(np.sqrt(area / aspect)))))
    return (
        int(rng.integers(height - crop_h + 1)),
        int(rng.integers(width - crop_w + 1)),
        crop_h,
        crop_w,
    )


@TRANSFORMS.register("resized_crop")
class ResizedCrop(_Repr):
    """Crop every image to a random box (``scale`` of its area, width/height in ``ratio``) and
    resize it to ``size`` (height, width): images bilinear, superpixels nearest, pairings moved
    with them. A box is re-drawn (up to ``tries``) until more than ``min_pairings`` or more than
    ``min_kept`` of the camera's pairings survive."""

    def __init__(
        self,
        *,
        size: Sequence[int] = (224, 416),
        scale: Sequence[float] = (0.3, 1.0),
        ratio: Sequence[float] = (14 / 9, 17 / 9),
        min_pairings: int = 1024,
        min_kept: float = 0.75,
        tries: int = 10,
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.scale, self.ratio = _interval("scale", scale), _interval("ratio", ratio)
        self.min_pairings, self.min_kept = int(min_pairings), _probability("min_kept", min_kept)
        self.tries = int(tries)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        _require_cameras(sample, "resized_crop")
        images, segments, moved = [], [], []
        for camera, (image, superpixels) in enumerate(
            zip(sample["images"], sample["superpixels"], strict=True)
        ):
            rows = sample["pairing"][sample["pairing"][:, 1] == camera]
            box, kept = self._draw(image.shape[:2], rows, rng)
            images.append(self._resize_image(image, box))
            segments.append(self._resize_nearest(superpixels, box))
            moved.append(kept)
        return {**sample, "images": images, "superpixels": segments,
                "pairing": np.concatenate(moved) if moved else sample["pairing"]}  # fmt: skip

    def _draw(self, shape, rows: np.ndarray, rng) -> tuple[tuple[int, int, int, int], np.ndarray]:
        for _ in range(self.tries):
            box = _crop_box(*shape, self.scale, self.ratio, rng)
            kept = self._move(rows, box)
            if len(kept) > self.min_pairings or len(kept) > self.min_kept * len(rows):
                return box, kept
        box = (0, 0, *shape)  # no box kept enough pairings: resize the whole image
        return box, self._move(rows, box)

    def _move(self, rows: np.ndarray, box) -> np.ndarray:
        top, left, crop_h, crop_w = box
        out_h, out_w = self.size
        row = np.floor((rows[:, 2] - top + 0.5) * out_h / crop_h).astype(np.int64)
        col = np.floor((rows[:, 3] - left + 0.5) * out_w / crop_w).astype(np.int64)
        inside = (rows[:, 2] >= top) & (rows[:, 2] < top + crop_h)
        inside &= (rows[:, 3] >= left) & (rows[:, 3] < left + crop_w)
        moved = rows[inside].copy()
        moved[:, 2], moved[:, 3] = row[inside], col[inside]
        return moved

    def _resize_image(self, image: np.ndarray, box) -> np.ndarray:
        from PIL import Image

        top, left, crop_h, crop_w = box
        crop = Image.fromarray(image[top : top + crop_h, left : left + crop_w])
        return np.asarray(crop.resize(self.size[::-1], Image.Resampling.BILINEAR))

    def _resize_nearest(self, superpixels: np.ndarray, box) -> np.ndarray:
        top, left, crop_h, crop_w = box
        out_h, out_w = self.size
        # Output pixel i samples the crop pixel whose span holds its centre, the inverse of the
        # pairing move above, so a moved point lands on its own superpixel.
        rows = top + np.minimum((np.arange(out_h) * crop_h) // out_h, crop_h - 1)
        cols = left + np.minimum((np.arange(out_w) * crop_w) // out_w, crop_w - 1)
        return superpixels[np.ix_(rows, cols)]


@TRANSFORMS.register("flip_images")
class FlipImages(_Repr):
    """Mirror each image (and its superpixels and pairings) left-right with probability ``p``."""

    def __init__(self, *, p: float = 0.5) -> None:
        self.p = _probability("p", p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        _require_cameras(sample, "flip_images")
        images, segments = list(sample["images"]), list(sample["superpixels"])
        pairing = sample["pairing"].copy()
        for camera, image in enumerate(images):
            if rng.random() < self.p:
                images[camera] = image[:, ::-1].copy()
                segments[camera] = segments[camera][:, ::-1].copy()
                rows = pairing[:, 1] == camera
                pairing[rows, 3] = image.shape[1] - 1 - pairing[rows, 3]
        return {**sample, "images": images, "superpixels": segments, "pairing": pairing}
