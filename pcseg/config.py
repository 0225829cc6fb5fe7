"""Run configuration: YAML files with an explicit base, dotted overrides and a typed schema.

A config file is plain YAML read with a ``yaml.SafeLoader`` (no Python tags, nothing executed). It
may name one or more base files (``base: ../_base_/x.yaml`` or a list), relative to itself; the
file's own keys are merged over its bases (mappings key by key, everything else replaced).
``--set a.b=value`` overrides are applied last, each value parsed as YAML. The merged mapping is
then checked against the dataclasses below: an unknown key is an error that lists the valid ones.
Components (backbone, method, optimiser, schedule, datasets, transforms) are ``{name, **kwargs}``
mappings, checked against their registered constructors by ``pcseg.engine.build.check_config``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pcseg.registry import ConfigError


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent floats without a dot (``1e-3``) as floats.

    PyYAML follows YAML 1.1, whose float pattern needs a dot, so ``lr: 1e-3`` would otherwise
    load as the string "1e-3" and pass unchecked into free-form specs such as ``optim``.
    """


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes strings :class:`_Loader` would read as floats."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )


@dataclasses.dataclass
class DataConfig:
    """Dataset, splits, voxelisation, features, augmentation and batching."""

    name: str
    root: str
    train: dict[str, Any]
    val: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    voxel_size: float = 0.05
    features: list[str] = dataclasses.field(default_factory=lambda: ["coord"])
    train_transforms: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    test_transforms: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    point_budget: int = 1_000_000
    batch_size: int = 8
    num_workers: int = 2
    sparse_labels: str | None = None
    labelled_frames: str | None = None


@dataclasses.dataclass
class ModelConfig:
    """The network; ``init_from`` starts it from a training checkpoint's model weights."""

    backbone: dict[str, Any]
    init_from: str | None = None


@dataclasses.dataclass
class TrainConfig:
    """Length of the run, checkpoints, logging and numerics."""

    max_steps: int = 1000
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    amp: bool = True
    clip_grad_norm: float | None = None
    device: str = "auto"


@dataclasses.dataclass
class TTAConfig:
    """Test-time augmentation: every combination of rotation, flip and scale is averaged."""

    rotations: int = 4
    flips: list[str] = dataclasses.field(default_factory=lambda: ["none", "x"])
    scales: list[float] = dataclasses.field(default_factory=lambda: [0.95, 1.0, 1.05])


@dataclasses.dataclass
class EvalConfig:
    split: str = "val"
    tta: TTAConfig = dataclasses.field(default_factory=TTAConfig)


@dataclasses.dataclass
class Config:
    """A whole run. ``pcseg.engine.build`` turns it into objects."""

    data: DataConfig
    model: ModelConfig
    optim: dict[str, Any]
    schedule: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "constant"})
    method: dict[str, Any] = dataclasses.field(default_factory=lambda: {"name": "supervised"})
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            data = yaml.load(stream, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML (only plain data is allowed): {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``: nested mappings merge key by key, other values replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_raw(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file merged over its bases, as a plain mapping."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: base files form a cycle: {' -> '.join(map(str, _seen))}")
    data = _read_yaml(path)
    bases = data.pop("base", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge(merged, load_raw(path.parent / base, (*_seen, path)))
    return merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings; values are parsed as YAML (``1e-3``, ``[1, 2]``, ``null``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {error}") from None
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: depth + 1])} is a value")
            node = child
        node[parts[-1]] = value
    return data


def _check_value(value: Any, hint: Any, where: str) -> Any:
    """Convert/validate one value against a type hint of the schema."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return _check_value(value, options[0], where)
    if hint is Any:
        return value
    expected = origin or hint
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown and missing keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        path = f"{where}.{name}" if where != "config" else name
        if name in data:
            values[name] = _check_value(data[name], hints[name], path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path}: missing (required)")
    return cls(**values)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a config file with its bases and ``--set`` overrides into a :class:`Config`."""
    return from_dict(Config, apply_overrides(load_raw(path), overrides))


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """A :class:`Config` from a resolved mapping (e.g. the one saved in a checkpoint)."""
    return from_dict(Config, data)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}``: sections and component specs opened one level deep."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value and not prefix:
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Keys (``section.key``, e.g. ``optim.lr``, ``model.backbone``) whose values differ, sorted,
    with their (old, new) values."""
    before, after = _flatten(old.to_dict()), _flatten(new.to_dict())
    return {
        key: (before.get(key), after.get(key))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }


def dump_config(config: Config) -> str:
    return yaml.dump(config.to_dict(), Dumper=_Dumper, sort_keys=False)
