"""Backbones: sparse voxel features in, per-voxel features out. Registered by name for configs."""

from pcseg.registry import Registry

BACKBONES: Registry = Registry("backbone")

from pcseg.models.backbones import spunet  # noqa: E402,F401  (registers its backbones)
