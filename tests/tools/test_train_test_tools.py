"""tools/train.py and tools/test.py as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import yaml

from pcseg.data.formats import semantickitti

TOOLS = Path(__file__).resolve().parents[2] / "tools"
TINY = {"name": "spunet", "stem_channels": 4, "planes": [4, 8, 8, 4], "layers": [1, 1, 1, 1]}


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"pcseg_tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(tmp_path: Path, root: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        f"base: {(TOOLS.parent / 'configs/_base_/semantickitti.yaml').as_posix()}\n"
        + yaml.safe_dump(
            {
                "data": {
                    "root": str(root),
                    "train": {"sequences": ["00"]},
                    "val": {"sequences": ["01"]},
                    "test": None,
                    "voxel_size": 0.2,
                    "num_workers": 0,
                },
                "model": {"backbone": TINY},
                "optim": {"name": "adamw", "lr": 0.01},
                "train": {"max_steps": 3, "log_every": 1},
                "eval": {"tta": {"rotations": 2, "flips": ["none"], "scales": [1.0]}},
            }
        )
    )
    return path


def test_train_then_test_with_tta_and_export(small_sequences, tmp_path, capsys):
    config = _config(tmp_path, small_sequences)
    work = tmp_path / "run"
    assert load_tool("train").main([str(config), "--work-dir", str(work), "--no-progress"]) == 0
    checkpoint = work / "checkpoints" / "step_00000003.pth"
    assert "tensorboard --logdir" in capsys.readouterr().out
    export = tmp_path / "export"
    args = [str(config), "--checkpoint", str(checkpoint), "--tta", "--export", str(export)]
    assert load_tool("test").main(args) == 0
    printed = capsys.readouterr().out
    assert "car" in printed and "mIoU" in printed
    metrics = json.loads((work / "eval_val_tta" / "metrics.json").read_text())
    assert metrics["tta_views"] == 2 and metrics["split"] == "val"
    sequence = small_sequences / "sequences" / "01"
    for frame in semantickitti.frame_ids(sequence):
        exported = export / "sequences" / "01" / "predictions" / f"{frame:06d}.label"
        raw, _ = semantickitti.read_label(exported)
        assert len(raw) == len(semantickitti.read_scan(sequence / "velodyne" / f"{frame:06d}.bin"))
        classes = semantickitti.raw_to_class(exported, raw)
        assert classes.min() >= 0  # every point got a real class, mapped back to raw ids
    # Earlier results are never overwritten.
    assert load_tool("test").main(args) == 2
    assert "exists" in capsys.readouterr().err


def test_corrupt_checkpoint_is_refused(small_sequences, tmp_path, capsys, corrupt_record):
    config = _config(tmp_path, small_sequences)
    work = tmp_path / "run"
    assert load_tool("train").main([str(config), "--work-dir", str(work), "--no-progress"]) == 0
    good = work / "checkpoints" / "step_00000003.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    capsys.readouterr()
    code = load_tool("test").main([str(config), "--checkpoint", str(truncated)])
    assert code == 2
    error = capsys.readouterr().err
    assert str(truncated) in error and ("truncated" in error or "corrupt" in error)
    flipped = tmp_path / "flipped.pth"
    shutil.copy(good, flipped)
    corrupt_record(flipped, "data.pkl")
    capsys.readouterr()
    assert load_tool("test").main([str(config), "--checkpoint", str(flipped)]) == 2
    assert "CRC" in capsys.readouterr().err


def test_bad_override_is_rejected_with_valid_names(small_sequences, tmp_path, capsys):
    config = _config(tmp_path, small_sequences)
    code = load_tool("train").main([str(config), "--set", "train.max_step=3"])
    assert code == 2
    assert "max_steps" in capsys.readouterr().err


def test_checkpoint_from_another_setting_or_a_used_export_folder_is_refused(
    small_sequences, tmp_path, capsys
):
    config = _config(tmp_path, small_sequences)
    work = tmp_path / "run"
    assert load_tool("train").main([str(config), "--work-dir", str(work), "--no-progress"]) == 0
    checkpoint = str(work / "checkpoints" / "step_00000003.pth")
    capsys.readouterr()
    args = [str(config), "--checkpoint", checkpoint, "--set", "data.voxel_size=0.1"]
    assert load_tool("test").main(args) == 2
    assert "trained with data.voxel_size = 0.2" in capsys.readouterr().err
    used = tmp_path / "export"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert load_tool("test").main([str(config), "--checkpoint", checkpoint, "--export", str(used)])
    assert "not empty" in capsys.readouterr().err
    assert (used / "notes.txt").read_text() == "mine"
