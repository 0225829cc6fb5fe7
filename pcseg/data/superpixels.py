"""SLIC superpixels of camera images, computed once and cached on disk.

Each image's superpixels are a uint8 PNG of ids 0..S-1 (S <= 255), written under
``<cache_dir>/slic_n<segments>_c<compactness>_s<sigma>/`` with the image's path relative to the
data root, so changing a parameter computes into a new folder and never reuses stale maps. Files
are written atomically and never overwritten; a map whose size differs from its image is
rejected with the file named.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pcseg.data.cameras import read_rgb
from pcseg.data.formats.files import atomic_output
from pcseg.data.formats.validation import DataFormatError


@dataclass(frozen=True)
class SlicParams:
    """SLIC settings (SLidR's defaults: 150 segments, compactness 6, Gaussian sigma 3)."""

    n_segments: int = 150
    compactness: float = 6.0
    sigma: float = 3.0

    def __post_init__(self) -> None:
        if not 1 <= self.n_segments <= 255:
            raise ValueError(f"n_segments must lie in [1, 255] (uint8 maps), got {self.n_segments}")
        if self.compactness <= 0 or self.sigma < 0:
            raise ValueError(f"compactness must be > 0 and sigma >= 0, got {self}")

    @property
    def folder(self) -> str:
        return f"slic_n{self.n_segments}_c{self.compactness:g}_s{self.sigma:g}"


def slic_superpixels(image: np.ndarray, params: SlicParams) -> np.ndarray:
    """Superpixel ids uint8 (H, W), numbered 0..S-1 without gaps."""
    from skimage.segmentation import slic

    segments = slic(
        image,
        n_segments=params.n_segments,
        compactness=params.compactness,
        sigma=params.sigma,
        start_label=0,
    )
    # SLIC may return a few more segments than asked for; renumbering keeps ids dense, and ids
    # past 255 (never seen with n_segments <= 150) merge into the last one.
    _, dense = np.unique(segments, return_inverse=True)
    return np.minimum(dense.reshape(segments.shape), 255).astype(np.uint8)


class SuperpixelCache:
    """Superpixel maps of the images under ``data_root``, kept in ``cache_dir``."""

    def __init__(
        self, data_root: str | Path, cache_dir: str | Path, params: SlicParams | None = None
    ) -> None:
        self.data_root = Path(data_root).resolve()
        self.params = params or SlicParams()
        self.folder = Path(cache_dir) / self.params.folder

    def path(self, image: str | Path) -> Path:
        relative = Path(image).resolve().relative_to(self.data_root)
        return (self.folder / relative).with_suffix(".png")

    def compute(self, image: str | Path) -> Path:
        """Compute and store the map of one image unless it is already cached."""
        from PIL import Image

        path = self.path(image)
        if not path.exists():
            segments = slic_superpixels(read_rgb(image), self.params)
            with atomic_output(path, overwrite=False) as tmp:
                Image.fromarray(segments).save(tmp, format="PNG")
        return path

    def read(self, image: str | Path, shape: tuple[int, int]) -> np.ndarray:
        """The map of ``image`` (computed now if missing), checked against its (H, W)."""
        from PIL import Image

        path = self.compute(image)
        with Image.open(path) as stored:
            segments = np.asarray(stored)
        if segments.shape != tuple(shape):
            raise DataFormatError(
                path, f"superpixel map is {segments.shape}, its image {tuple(shape)}; delete it"
            )
        return segments

    def compute_all(
        self, images: Sequence[str | Path], *, workers: int = 1, progress: bool = True
    ) -> int:
        """Compute every missing map, in ``workers`` processes; returns how many were new."""
        from tqdm import tqdm

        missing = [Path(i) for i in images if not self.path(i).exists()]
        bar = tqdm(total=len(missing), desc="superpixels", unit="image", disable=not progress)
        if workers <= 1:
            for image in missing:
                self.compute(image)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for _ in pool.map(self.compute, missing, chunksize=4):
                    bar.update()
        bar.close()
        return len(missing)
