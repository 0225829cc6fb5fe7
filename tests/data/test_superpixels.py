"""SLIC superpixels: dense ids on a real camera image, the on-disk cache keyed by parameters,
parallel computation, and a stale map rejected."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcseg.data.formats.validation import DataFormatError
from pcseg.data.superpixels import SlicParams, SuperpixelCache, slic_superpixels


@pytest.fixture()
def images(tmp_path):
    """Three small images under a data root: halves of different colours plus noise."""
    root = tmp_path / "data"
    paths = []
    rng = np.random.default_rng(0)
    for k in range(3):
        image = np.zeros((60, 90, 3), np.uint8)
        image[:, :45] = (200, 40, 40)
        image[:, 45:] = (30, 30 + 50 * k, 200)
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        path = root / "cam" / f"{k:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return root, paths


def test_real_image_gives_about_150_dense_superpixels(shared_data):
    image = np.asarray(Image.open(shared_data / "kitti_object/000008.png").convert("RGB"))
    segments = slic_superpixels(image, SlicParams())
    ids = np.unique(segments)
    assert segments.shape == image.shape[:2] and segments.dtype == np.uint8
    assert np.array_equal(ids, np.arange(len(ids))) and 60 <= len(ids) <= 200


def test_superpixels_are_colour_homogeneous_on_a_real_image(shared_data):
    image = np.asarray(Image.open(shared_data / "kitti_object/000008.png").convert("RGB"))
    segments = slic_superpixels(image, SlicParams()).ravel()
    pixels = image.reshape(-1, 3).astype(np.float64)
    count = np.bincount(segments)
    mean = np.stack([np.bincount(segments, pixels[:, c]) for c in range(3)], 1) / count[:, None]
    within = np.sqrt(((pixels - mean[segments]) ** 2).sum(1).mean())
    spread = np.sqrt(((pixels - pixels.mean(0)) ** 2).sum(1).mean())
    # Pixels sit far closer to their superpixel's mean colour than to the image's.
    assert within < 0.5 * spread


def test_cache_is_keyed_by_parameters_and_never_recomputes(images, tmp_path):
    root, paths = images
    cache = SuperpixelCache(root, tmp_path / "cache", SlicParams(n_segments=20))
    assert cache.compute_all(paths, workers=2, progress=False) == 3
    stored = cache.path(paths[1])
    assert stored == tmp_path / "cache/slic_n20_c6_s3/cam/000001.png"
    first = cache.read(paths[1], (60, 90))
    mtime = stored.stat().st_mtime_ns
    assert cache.compute_all(paths, progress=False) == 0 and stored.stat().st_mtime_ns == mtime
    other = SuperpixelCache(root, tmp_path / "cache", SlicParams(n_segments=6))
    coarse = other.read(paths[1], (60, 90))
    assert other.path(paths[1]) != stored and coarse.max() < first.max()


def test_stale_map_is_rejected_by_name(images, tmp_path):
    root, paths = images
    cache = SuperpixelCache(root, tmp_path / "cache")
    cache.compute(paths[0])
    with pytest.raises(DataFormatError, match=r"000000\.png: superpixel map is"):
        cache.read(paths[0], (30, 90))


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="n_segments"):
        SlicParams(n_segments=300)
