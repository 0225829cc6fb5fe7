"""Sample transforms: augmentation, cropping and feature assembly.

A transform is built from keyword arguments (a config spec such as ``{"name": "random_rotate",
"degrees": [-180, 180]}``) and called as ``transform(sample, rng) -> sample``. All randomness
comes from the ``numpy.random.Generator`` passed in, so a seeded generator reproduces an epoch
exactly. Transforms return a new dict and never write into the caller's arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from pcseg.data.sample import Sample, index_points
from pcseg.registry import ConfigError, Registry

AXES = {"x": 0, "y": 1, "z": 2}

# Widths of the inputs :func:`assemble_features` knows, so a model's input width follows from
# a config alone: ``sum(FEATURE_CHANNELS[k] for k in keys)``.
FEATURE_CHANNELS: dict[str, int] = dict(
    coord=3, color=3, remission=1, reflectivity=1, normal=3, height=1, ones=1
)


Transform = Callable[[Sample, np.random.Generator], Sample]


TRANSFORMS: Registry[Transform] = Registry("transform")


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _interval(name: str, value: Sequence[float]) -> tuple[float, float]:
    if isinstance(value, str) or len(value) != 2 or value[0] > value[1]:
        raise ValueError(f"{name} must be [low, high] with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value}")
    return float(value)


def _choice(name: str, value: str, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


class _Repr:
    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


@TRANSFORMS.register("random_rotate")
class RandomRotate(_Repr):
    """Rotate ``coord`` (and ``normal``) about one axis by a uniform random angle.

    Args:
        axis: "x", "y" or "z"; small x/y tilts are configured as separate entries.
        degrees: [low, high] range of the angle in degrees.
        center: "origin" (the sensor, for LiDAR scans) or "centroid" (mean point, for rooms).
        p: probability of rotating at all.
    """

    def __init__(
        self,
        *,
        axis: str = "z",
        degrees: Sequence[float] = (-180.0, 180.0),
        center: Literal["origin", "centroid"] = "origin",
        p: float = 1.0,
    ) -> None:
        self.axis = _choice("axis", axis, tuple(AXES))
        self.degrees = _interval("degrees", degrees)
        self.center = _choice("center", center, ("origin", "centroid"))
        self.p = _probability("p", p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if len(sample["coord"]) == 0 or rng.random() >= self.p:
            return sample
        angle = np.deg2rad(rng.uniform(*self.degrees))
        c, s = np.cos(angle), np.sin(angle)
        # Right-handed rotation: the two other axes in cyclic order (y, z), (z, x), (x, y).
        i, j = (AXES[self.axis] + 1) % 3, (AXES[self.axis] + 2) % 3
        rot = np.eye(3)
        rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
        coord = np.asarray(sample["coord"])
        pivot = coord.mean(0, dtype=np.float64) if self.center == "centroid" else np.zeros(3)
        out = dict(sample)
        out["coord"] = ((coord - pivot) @ rot.T + pivot).astype(coord.dtype)
        if "normal" in sample:
            normal = np.asarray(sample["normal"])
            out["normal"] = (normal @ rot.T).astype(normal.dtype)
        return out


@TRANSFORMS.register("random_flip")
class RandomFlip(_Repr):
    """Negate each listed axis of ``coord`` (and ``normal``) independently with probability p."""

    def __init__(self, *, axes: Sequence[str] = ("x", "y"), p: float = 0.5) -> None:
        if isinstance(axes, str):
            raise ValueError(f"axes must be a list of axis names, got {axes!r}")
        self.axes = tuple(_choice("axes", a, tuple(AXES)) for a in axes)
        self.p = _probability("p", p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        sign = np.ones(3, dtype=np.float32)
        for axis in self.axes:
            if rng.random() < self.p:
                sign[AXES[axis]] = -1.0
        if (sign == 1).all():
            return sample
        out = dict(sample)
        for key in ("coord", "normal"):
            if key in sample:
                value = np.asarray(sample[key])
                out[key] = (value * sign).astype(value.dtype)
        return out


@TRANSFORMS.register("random_scale")
class RandomScale(_Repr):
    """Scale ``coord`` about the origin by a uniform factor in [low, high].

    Args:
        low: smallest factor (> 0; a negative factor would be a flip).
        high: largest factor.
        anisotropic: draw one factor per axis instead of one for all.
    """

    def __init__(self, *, low: float = 0.9, high: float = 1.1, anisotropic: bool = False) -> None:
        if _positive("low", low) > high:
            raise ValueError(f"low must be <= high, got low={low}, high={high}")
        self.low, self.high = float(low), float(high)
        self.anisotropic = bool(anisotropic)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        scale = rng.uniform(self.low, self.high, 3 if self.anisotropic else 1)
        coord = np.asarray(sample["coord"])
        out = dict(sample)
        out["coord"] = (coord * scale).astype(coord.dtype)
        if self.anisotropic and "normal" in sample:
            # Normals transform by the inverse transpose: divide by the scale, renormalise.
            normal = np.asarray(sample["normal"])
            scaled = normal / scale
            length = np.linalg.norm(scaled, axis=1, keepdims=True)
            out["normal"] = (scaled / np.maximum(length, 1e-12)).astype(normal.dtype)
        return out


@TRANSFORMS.register("random_jitter")
class RandomJitter(_Repr):
    """Add Gaussian noise (std ``sigma``, clipped to ±``clip`` metres) to every coordinate."""

    def __init__(self, *, sigma: float = 0.01, clip: float = 0.05) -> None:
        self.sigma = _positive("sigma", sigma, allow_zero=True)
        self.clip = _positive("clip", clip)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        coord = np.asarray(sample["coord"])
        noise = np.clip(self.sigma * rng.standard_normal(coord.shape), -self.clip, self.clip)
        return {**sample, "coord": (coord + noise).astype(coord.dtype)}


@TRANSFORMS.register("elastic_distortion")
class ElasticDistortion(_Repr):
    """Smooth random warp of ``coord`` (the elastic distortion of MinkowskiEngine / Pointcept).

    With probability ``p``, for each ``[granularity, magnitude]`` of ``params`` in order:
    blurred Gaussian noise on a grid of ``granularity`` metre cells over the cloud's bounds (so
    meant for rooms, not 100 m sweeps), interpolated trilinearly at each point, × ``magnitude``.
    """

    def __init__(
        self,
        *,
        params: Sequence[Sequence[float]] = ((0.2, 0.4), (0.8, 1.6)),
        p: float = 0.95,
    ) -> None:
        if any(isinstance(g, str) or len(g) != 2 or g[0] <= 0 or g[1] < 0 for g in params):
            raise ValueError(f"params must be [[granularity > 0, magnitude >= 0], ...]: {params!r}")
        self.params = tuple((float(g), float(m)) for g, m in params)
        self.p = _probability("p", p)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if len(sample["coord"]) == 0 or rng.random() >= self.p:
            return sample
        coord = np.asarray(sample["coord"])
        warped = coord.astype(np.float64)
        for granularity, magnitude in self.params:
            warped += magnitude * _smooth_noise_at(warped, granularity, rng)
        return {**sample, "coord": warped.astype(coord.dtype)}


def _smooth_noise_at(coord: np.ndarray, granularity: float, rng: np.random.Generator) -> np.ndarray:
    """Blurred unit Gaussian noise on a ``granularity`` grid, interpolated at ``coord`` (N, 3)."""
    lo = coord.min(0)
    # One extra cell of margin below and up to two above, so every point lies strictly inside.
    shape = ((coord.max(0) - lo) // granularity).astype(int) + 3
    noise = rng.standard_normal((*shape, 3))
    kernel = np.full(3, 1.0 / 3.0)
    for _ in range(2):  # twice, as in MinkowskiEngine: a wider, smoother bump
        for axis in range(3):
            noise = ndimage.convolve1d(noise, kernel, axis=axis, mode="constant", cval=0.0)
    grid = [lo[d] - granularity + granularity * np.arange(shape[d]) for d in range(3)]
    interp = RegularGridInterpolator(grid, noise, bounds_error=False, fill_value=0.0)
    return interp(coord)


class _ColorTransform(_Repr):
    """Base for transforms of ``color`` (float (N, 3) in [0, 1]); skips samples without it."""

    p: float

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if "color" not in sample or len(sample["coord"]) == 0 or rng.random() >= self.p:
            return sample
        color = np.asarray(sample["color"])
        new = np.clip(self._apply(color.astype(np.float64), rng), 0.0, 1.0)
        return {**sample, "color": new.astype(color.dtype)}

    def _apply(self, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


@TRANSFORMS.register("chromatic_auto_contrast")
class ChromaticAutoContrast(_ColorTransform):
    """Blend colours with their per-channel min-max stretch, by ``blend_factor`` (None: random)."""

    def __init__(self, *, p: float = 0.2, blend_factor: float | None = None) -> None:
        self.p = _probability("p", p)
        self.blend_factor = (
            None if blend_factor is None else _probability("blend_factor", blend_factor)
        )

    def _apply(self, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = color.min(0), color.max(0)
        span = hi - lo
        # A constant channel has nothing to stretch; leave it as it is.
        stretched = np.where(span > 0, (color - lo) / np.where(span > 0, span, 1.0), color)
        blend = rng.random() if self.blend_factor is None else self.blend_factor
        return (1.0 - blend) * color + blend * stretched


@TRANSFORMS.register("chromatic_translation")
class ChromaticTranslation(_ColorTransform):
    """Shift all colours by one random RGB offset in [-ratio, ratio]."""

    def __init__(self, *, p: float = 0.95, ratio: float = 0.05) -> None:
        self.p = _probability("p", p)
        self.ratio = _probability("ratio", ratio)

    def _apply(self, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return color + rng.uniform(-self.ratio, self.ratio, (1, 3))


@TRANSFORMS.register("chromatic_jitter")
class ChromaticJitter(_ColorTransform):
    """Add independent Gaussian noise (std ``std``, in [0, 1] colour units) to every colour."""

    def __init__(self, *, p: float = 0.95, std: float = 0.05) -> None:
        self.p = _probability("p", p)
        self.std = _positive("std", std, allow_zero=True)

    def _apply(self, color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return color + self.std * rng.standard_normal(color.shape)


@TRANSFORMS.register("sphere_crop")
class SphereCrop(_Repr):
    """Keep the ``max_points`` points nearest to a centre point when the cloud is larger.

    The centre is a random point (``mode="random"``) or the point nearest the bounding box's
    centre (``mode="center"``).
    """

    def __init__(self, *, max_points: int, mode: Literal["random", "center"] = "random") -> None:
        if max_points < 1:
            raise ValueError(f"max_points must be >= 1, got {max_points}")
        self.max_points, self.mode = int(max_points), _choice("mode", mode, ("random", "center"))

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        coord = np.asarray(sample["coord"], dtype=np.float64)
        if len(coord) <= self.max_points:
            return sample
        if self.mode == "random":
            center = coord[rng.integers(len(coord))]
        else:
            box_center = (coord.min(0) + coord.max(0)) / 2
            center = coord[np.argmin(((coord - box_center) ** 2).sum(1))]
        dist = ((coord - center) ** 2).sum(1)
        keep = np.argpartition(dist, self.max_points - 1)[: self.max_points]
        # Sorted, so the kept points stay in file order.
        return index_points(sample, np.sort(keep))


@TRANSFORMS.register("center_shift")
class CenterShift(_Repr):
    """Move the bounding box's xy centre to the origin and, if ``apply_z``, its floor to z = 0."""

    def __init__(self, *, apply_z: bool = True) -> None:
        self.apply_z = bool(apply_z)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if len(sample["coord"]) == 0:
            return sample
        coord = np.asarray(sample["coord"])
        lo, hi = coord.min(0).astype(np.float64), coord.max(0).astype(np.float64)
        shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2] if self.apply_z else 0])
        return {**sample, "coord": (coord - shift).astype(coord.dtype)}


class Compose:
    """Apply transforms in order: ``Compose([a, b])(sample, rng) == b(a(sample, rng), rng)``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def build_transforms(specs: Sequence[Mapping[str, Any]], *, where: str = "transforms") -> Compose:
    """Build a :class:`Compose` from config specs ``[{"name": ..., **kwargs}, ...]``.

    Raises:
        ConfigError: unknown name or argument, or an invalid argument value; the message names
            the entry (``where[i]``) and lists what is valid.
    """
    if isinstance(specs, str | Mapping):
        raise ConfigError(f"{where}: expected a list of transform specs, got {specs!r}")
    transforms = []
    for i, spec in enumerate(specs):
        entry = f"{where}[{i}]"
        if isinstance(spec, Mapping) and "name" in spec:
            # Name first: Registry.check reports an unknown name without the entry's location.
            TRANSFORMS.get(spec["name"], where=entry)
        try:
            transforms.append(TRANSFORMS.build(spec, where=entry))
        except ConfigError:
            raise
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{entry}: {error}") from error
    return Compose(transforms)


def assemble_features(sample: Sample, keys: Sequence[str]) -> np.ndarray:
    """Concatenate named inputs into the model's point features.

    Args:
        sample: the (augmented) sample.
        keys: names from :data:`FEATURE_CHANNELS`, in output order: "coord" (3, the current
            coordinates), "color" (3), "remission" (1), "reflectivity" (1, added by the
            ``reflectivity`` transform), "normal" (3), "height" (1, z minus the sample's lowest
            z), "ones" (1).

    Returns:
        float32 (N, C) with C = ``sum(FEATURE_CHANNELS[k] for k in keys)``.

    Raises:
        KeyError: a key needs an array the sample lacks.
        ValueError: an unknown feature name.
    """
    unknown, valid = [k for k in keys if k not in FEATURE_CHANNELS], ", ".join(FEATURE_CHANNELS)
    if isinstance(keys, str) or unknown:
        raise ValueError(f"unknown feature(s) {unknown or keys!r}; valid: {valid}")
    coord = np.asarray(sample["coord"])
    n = len(coord)
    columns = [np.zeros((n, 0), dtype=np.float32)]  # so that no keys give (N, 0)
    for key in keys:
        source = "coord" if key == "height" else key
        if key != "ones" and source not in sample:
            present = ", ".join(sorted(sample))
            raise KeyError(
                f"feature {key!r} needs {source!r}, which sample "
                f"{sample.get('scene_id', '?')!r} lacks; it has: {present}"
            )
        if key == "ones":
            column = np.ones((n, 1))
        elif key == "height":
            column = coord[:, 2:3] - (coord[:, 2].min() if n else 0.0)
        else:
            column = np.asarray(sample[key]).reshape(n, FEATURE_CHANNELS[key])
        columns.append(column.astype(np.float32, copy=False))
    return np.concatenate(columns, axis=1)


# Registers the LiDAR and camera transforms, which build on the helpers above.
from pcseg.data import image_transforms, lidar_features  # noqa: E402,F401
