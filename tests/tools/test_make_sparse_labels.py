"""tools/make_sparse_labels.py as a user runs it."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pcseg.data.budgets import make_budget
from pcseg.data.datasets import SemanticKITTIDataset
from pcseg.data.label_budget import read_budget

TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_sparse_labels.py"


def tool():
    spec = importlib.util.spec_from_file_location("pcseg_tool_make_sparse_labels", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setup(small_sequences: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the sequences (the tool writes under data.root) and a config over it."""
    root = tmp_path / "data"
    shutil.copytree(small_sequences, root)
    config = tmp_path / "tiny.yaml"
    base = (TOOL.parents[1] / "configs/_base_/semantickitti.yaml").as_posix()
    data = {"root": str(root), "train": {"sequences": ["00", "01"]}, "test": None}
    body = {"data": data, "model": {"backbone": {"name": "spunet"}}, "optim": {"name": "adamw"}}
    config.write_text(f"base: {base}\n" + yaml.safe_dump(body))
    return config, root


def test_rate_budget_end_to_end(setup: tuple[Path, Path], capsys) -> None:
    config, root = setup
    assert tool().main([str(config), "--rate", "0.001", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    npz = root / "sparse_labels" / "train_rate0.001_seed0.npz"
    assert str(npz) in printed and "4 scenes" in printed and "Fewest labelled points" in printed
    assert "data.sparse_labels: sparse_labels/train_rate0.001_seed0.npz" in printed
    budget = read_budget(npz)
    m = budget.manifest
    assert [m[k] for k in ("mode", "rate", "seed", "split")] == ["rate", 0.001, 0, "train"]
    assert f"{m['labelled_points']:,} of {m['total_points']:,} points" in printed
    dataset = SemanticKITTIDataset(root, sequences=["00", "01"])
    same = make_budget(dataset, rate=0.001, seed=0, progress=False)
    for scene, chosen in same.indices.items():
        np.testing.assert_array_equal(budget.indices[scene], chosen)
    # The files are never replaced.
    before = npz.read_bytes()
    assert tool().main([str(config), "--rate", "0.001", "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err and npz.read_bytes() == before


def test_count_and_limited_annotation(setup: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    config, root = setup
    args = [str(config), "--count", "25", "--seed", "3", "--split", "val", "--no-progress"]
    args += ["--set", 'data.val.sequences=["01"]']
    assert tool().main(args) == 0
    budget = read_budget(root / "sparse_labels" / "val_count25_seed3.json")
    assert list(budget.indices) == ["01/000000", "01/000001"] and budget.manifest["count"] == 25
    assert budget.manifest["split"] == "val"
    capsys.readouterr()

    la = {"00/000000": np.arange(20), "00/000001": np.arange(5, 25), "01/000000": np.arange(20)}
    la["01/000001"] = np.arange(20)
    points20 = tmp_path / "points20"
    torch.save(la, points20, _use_new_zipfile_serialization=False)
    assert tool().main([str(config), "--limited-annotation", str(points20), "--no-progress"]) == 0
    assert "limited annotation budget: 4 scenes, 80 of" in capsys.readouterr().out
    manifest = json.loads((root / "sparse_labels" / "train_la_points20.json").read_text())
    assert manifest["source"] == str(points20) and manifest["count"] == 20
    named = [str(config), "--rate", "0.5", "--name", "half", "--no-progress"]
    assert tool().main(named) == 0
    assert (root / "sparse_labels" / "half.npz").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "0"], "--rate must be in (0, 1]"),
        (["--rate", "1.5"], "--rate must be in (0, 1]"),
        (["--count", "0"], "--count must be >= 1"),
        (["--rate", "0.1", "--seed", "-1"], "--seed must be >= 0"),
        (["--rate", "0.1", "--name", "../x"], "--name must be a plain file name"),
        (["--rate", "0.1", "--split", "test"], "no such split"),
        (["--rate", "0.1", "--split", "nonsense"], "no such split"),
        (["--limited-annotation", "missing"], "limited-annotation file not found"),
        (["--rate", "0.1", "--set", "data.bogus=1"], "bogus"),
    ],
)
def test_bad_input_exits_2(setup: tuple[Path, Path], capsys, args: list[str], message) -> None:
    config, root = setup
    assert tool().main([str(config), *args, "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (root / "sparse_labels").exists() or not any((root / "sparse_labels").iterdir())


def test_exactly_one_mode(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    for args in ([], ["--rate", "0.1", "--count", "3"]):
        with pytest.raises(SystemExit) as exit_:
            tool().main([str(config), *args])
        assert exit_.value.code == 2
