"""tools/superpixels.py computes the maps of every image a config reads, once."""

from __future__ import annotations

import yaml

from pcseg.data.synthetic import write_outdoor_sequences
from tests.conftest import config_dict


def test_computes_every_image_once_in_parallel(tmp_path, load_tool, capsys):
    root = tmp_path / "data"
    write_outdoor_sequences(root, frames=3, azimuth_steps=64, image_size=(160, 48), seed=2)
    config = config_dict(
        root,
        data={
            "train": {"sequences": ["00"], "label_dir": None, "cameras": ["image_2"],
                      "superpixels": {"n_segments": 20, "cache_dir": str(tmp_path / "sp")}},
        },
    )  # fmt: skip
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    tool = load_tool("superpixels")
    assert tool.main([str(path), "--workers", "2", "--no-progress"]) == 0
    maps = sorted((tmp_path / "sp/slic_n20_c6_s3/sequences/00/image_2").glob("*.png"))
    assert [m.name for m in maps] == ["000000.png", "000001.png", "000002.png"]
    assert "3 of 3 images computed" in capsys.readouterr().out
    assert tool.main([str(path), "--no-progress"]) == 0
    assert "0 of 3 images computed" in capsys.readouterr().out
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(config_dict(root)))
    assert tool.main([str(plain), "--no-progress"]) == 2
    assert "reads no cameras" in capsys.readouterr().err
