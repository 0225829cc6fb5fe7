"""Shared fixtures: the real sample data beside the project (skipped when absent), and tiny
synthetic SemanticKITTI-format data with config dicts for training tests."""

from __future__ import annotations

import copy
import struct
import zipfile
from pathlib import Path

import pytest

from pcseg.data.synthetic import write_outdoor_sequences

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of ``../shared/data``; tests using it skip on machines without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real sample data (../shared/data) not present")
    return SHARED_DATA


TINY_BACKBONE = {
    "name": "spunet",
    "stem_channels": 8,
    "planes": [8, 16, 32, 32, 16, 16],
    "layers": [1, 1, 1, 1, 1, 1],
}


@pytest.fixture(scope="session")
def one_scene(tmp_path_factory) -> Path:
    """One synthetic street scan (~16k points) in SemanticKITTI format, sequence 00."""
    root = tmp_path_factory.mktemp("one_scene")
    write_outdoor_sequences(root, frames=1, azimuth_steps=256, image_size=None, seed=0)
    return root


@pytest.fixture(scope="session")
def small_sequences(tmp_path_factory) -> Path:
    """Two sequences of two small scans (~8k points each): 00 trains, 01 validates."""
    root = tmp_path_factory.mktemp("small_sequences")
    write_outdoor_sequences(
        root, sequences=("00", "01"), frames=2, azimuth_steps=128, image_size=None, seed=1
    )
    return root


def config_dict(root: Path, **sections) -> dict:
    """A complete config for SemanticKITTI-format data at ``root``; ``sections`` update it."""
    config = {
        "data": {
            "name": "semantickitti",
            "root": str(root),
            "train": {"sequences": ["00"]},
            "val": {"sequences": ["00"]},
            "voxel_size": 0.1,
            "features": ["coord", "remission"],
            "point_budget": 200_000,
            "batch_size": 1,
            "num_workers": 0,
        },
        "model": {"backbone": copy.deepcopy(TINY_BACKBONE)},
        "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "train": {"max_steps": 10, "checkpoint_every": 1000, "log_every": 1000},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    return config


@pytest.fixture
def make_config():
    """:func:`config_dict` as a fixture."""
    return config_dict


def flip_record_byte(path: Path, suffix: str) -> None:
    """Flip one bit in the middle of the stored bytes of the zip record ending in ``suffix``.

    The middle of the whole file may fall in a record header's alignment padding, which no
    CRC covers and which cannot change what loads; a record's own bytes always matter.
    """
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    offset = info.header_offset + 30 + name_len + extra_len
    data[offset + info.compress_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.fixture
def corrupt_record():
    """:func:`flip_record_byte` as a fixture."""
    return flip_record_byte
