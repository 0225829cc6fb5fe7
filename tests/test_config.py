"""Configs: shipped files build, base merging, ``--set`` overrides, errors, safety, round trip."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from pcseg.config import (
    Config,
    apply_overrides,
    config_from_dict,
    dump_config,
    load_config,
    load_raw,
)
from pcseg.engine.build import build_model, check_config, in_channels
from pcseg.models.segmentor import count_parameters
from pcseg.registry import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(
    p for p in CONFIGS.glob("**/*.yaml") if "_base_" not in p.relative_to(CONFIGS).parts
)
DEMO = CONFIGS / "demo" / "spunet_small_outdoor.yaml"


def _write(path: Path, data: dict | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_configs_are_shipped() -> None:
    assert DEMO in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_shipped_config_loads_checks_and_builds(path: Path) -> None:
    config = load_config(path)
    check_config(config)
    num_classes = importlib.import_module(f"pcseg.data.meta.{config.data.name}").NUM_CLASSES
    model = build_model(config, num_classes)
    assert model.head.out_features == num_classes
    assert model.head.in_features == config.model.backbone["planes"][-1]
    assert model.backbone.stem[0].in_channels == in_channels(config)
    assert count_parameters(model) > 0


def test_demo_config_resolves_its_two_bases() -> None:
    config = load_config(DEMO)
    # from _base_/semantickitti.yaml, overridden by the demo file
    assert config.data.name == "semantickitti"
    assert config.data.features == ["coord", "remission"]
    assert config.data.voxel_size == 0.1 and config.data.point_budget == 120_000
    assert config.data.train == {"sequences": ["00", "01", "02", "03"]}
    assert config.data.val == {"sequences": ["04"]} and config.data.test is None
    assert config.data.train_transforms[0]["name"] == "random_rotate"
    # from _base_/spunet_small.yaml
    assert config.model.backbone["planes"] == [16, 32, 64, 64, 64, 32, 32, 32]
    assert config.optim == {"name": "adamw", "lr": 0.01, "weight_decay": 0.0001}
    assert config.train.max_steps == 300 and config.train.keep_checkpoints == 2  # a default
    assert in_channels(config) == 4


# --- base merging -----------------------------------------------------------------------------


def test_base_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    base = {"a": {"x": 1, "y": {"p": 1, "q": 2}}, "items": [1, 2, 3], "keep": "base"}
    _write(tmp_path / "base.yaml", base)
    child = _write(
        tmp_path / "child.yaml",
        {"base": "base.yaml", "a": {"y": {"q": 20}, "z": 3}, "items": [9]},
    )
    assert load_raw(child) == {
        "a": {"x": 1, "y": {"p": 1, "q": 20}, "z": 3},
        "items": [9],
        "keep": "base",
    }


def test_multiple_bases_apply_in_order_then_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "one.yaml", {"v": 1, "only_one": True, "m": {"a": 1}})
    _write(tmp_path / "two.yaml", {"v": 2, "m": {"b": 2}})
    child = _write(tmp_path / "c.yaml", {"base": ["one.yaml", "two.yaml"], "m": {"c": 3}})
    assert load_raw(child) == {"v": 2, "only_one": True, "m": {"a": 1, "b": 2, "c": 3}}
    reverse = _write(tmp_path / "r.yaml", {"base": ["two.yaml", "one.yaml"]})
    assert load_raw(reverse)["v"] == 1


def test_base_paths_are_relative_to_the_file(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path / "_base_" / "b.yaml", {"base": "deeper/c.yaml", "from_b": 1})
    _write(tmp_path / "_base_" / "deeper" / "c.yaml", {"from_c": 2})
    child = _write(tmp_path / "runs" / "x.yaml", {"base": "../_base_/b.yaml", "own": 3})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_raw(child) == {"from_c": 2, "from_b": 1, "own": 3}


def test_base_cycles_are_errors(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", {"base": "b.yaml", "x": 1})
    _write(tmp_path / "b.yaml", {"base": "a.yaml", "y": 1})
    _write(tmp_path / "self.yaml", {"base": "self.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_raw(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_raw(tmp_path / "self.yaml")


def test_missing_base_and_bad_base_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_raw(_write(tmp_path / "m.yaml", {"base": "nope.yaml"}))
    with pytest.raises(ConfigError, match="'base'"):
        load_raw(_write(tmp_path / "n.yaml", {"base": {"a": 1}}))


def test_a_shared_base_is_not_a_cycle(tmp_path: Path) -> None:
    _write(tmp_path / "common.yaml", {"c": 1})
    _write(tmp_path / "left.yaml", {"base": "common.yaml", "l": 1})
    _write(tmp_path / "right.yaml", {"base": "common.yaml", "r": 1})
    top = _write(tmp_path / "top.yaml", {"base": ["left.yaml", "right.yaml"]})
    assert load_raw(top) == {"c": 1, "l": 1, "r": 1}


# --- overrides --------------------------------------------------------------------------------


def test_overrides_set_nested_values_parsed_as_yaml() -> None:
    config = load_config(
        DEMO,
        [
            "optim.lr=1e-3",
            "data.features=[coord]",
            "model.backbone.stem_channels=8",
            "train.clip_grad_norm=null",
            "data.voxel_size=1",
            "eval.tta.scales=[1, 2.5]",
        ],
    )
    assert isinstance(config.optim["lr"], float) and config.optim["lr"] == 1e-3
    assert config.optim["weight_decay"] == 0.0001  # the rest of the mapping is kept
    assert config.data.features == ["coord"]
    assert config.model.backbone["stem_channels"] == 8
    assert config.model.backbone["planes"][0] == 16
    assert config.train.clip_grad_norm is None
    assert isinstance(config.data.voxel_size, float) and config.data.voxel_size == 1.0
    assert config.eval.tta.scales == [1.0, 2.5]
    assert in_channels(config) == 3
    check_config(config)


def test_exponent_floats_without_a_dot_are_floats(tmp_path: Path) -> None:
    values = apply_overrides({}, ["a=1e-3", "b=-2.5E+4", "c=1e3", "d=10", "e=e5", "f=1.0"])
    assert values == {"a": 0.001, "b": -25000.0, "c": 1000.0, "d": 10, "e": "e5", "f": 1.0}
    assert [type(values[k]) for k in "abcdef"] == [float, float, float, int, str, float]
    path = _write(tmp_path / "c.yaml", f"base: {DEMO}\noptim: {{name: sgd, lr: 5e-2}}\n")
    assert load_config(path).optim["lr"] == 0.05


def test_overrides_do_not_change_their_input() -> None:
    data = {"a": {"b": 1}}
    assert apply_overrides(data, ["a.b=2", "a.c.d=3"]) == {"a": {"b": 2, "c": {"d": 3}}}
    assert data == {"a": {"b": 1}}


def test_unknown_key_lists_the_valid_keys() -> None:
    with pytest.raises(ConfigError, match="max_step") as error:
        load_config(DEMO, ["train.max_step=5"])
    message = str(error.value)
    assert "train" in message and "max_steps" in message and "checkpoint_every" in message
    with pytest.raises(ConfigError, match="valid keys: data, model, optim"):
        load_config(DEMO, ["trian.max_steps=5"])


@pytest.mark.parametrize(
    "override", ["train.max_steps=abc", "train.max_steps=1.5", "train.amp=1", "train.max_steps=no"]
)
def test_wrong_type_is_an_error(override: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(DEMO, [override])


def test_override_errors() -> None:
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(DEMO, ["train.max_steps"])
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(DEMO, ["=5"])
    with pytest.raises(ConfigError, match="is a value"):
        load_config(DEMO, ["seed.x=1"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(DEMO, ["optim.lr=[1"])


def test_unknown_backbone_argument_lists_the_valid_ones() -> None:
    config = load_config(DEMO, ["model.backbone.widths=[1]"])
    with pytest.raises(ConfigError, match="widths") as error:
        check_config(config)
    message = str(error.value)
    assert "model.backbone" in message and "planes" in message and "stem_channels" in message
    assert "in_channels" not in message.partition("valid")[2]  # supplied by the builder


def test_unknown_transform_lists_the_valid_names() -> None:
    config = load_config(DEMO, ["data.train_transforms=[{name: spin}]"])
    with pytest.raises(ConfigError, match="spin") as error:
        check_config(config)
    message = str(error.value)
    assert "data.train_transforms[0]" in message
    assert "random_rotate" in message and "sphere_crop" in message


def test_unknown_dataset_lists_the_valid_names() -> None:
    config = load_config(DEMO, ["data.name=kitti360"])
    with pytest.raises(ConfigError, match="kitti360") as error:
        check_config(config)
    assert all(name in str(error.value) for name in ("semantickitti", "s3dis", "scannet"))


def test_other_check_config_errors() -> None:
    with pytest.raises(ConfigError, match="depth"):
        check_config(load_config(DEMO, ["data.features=[coord, depth]"]))
    with pytest.raises(ConfigError, match=r"data\.voxel_size must be > 0"):
        check_config(load_config(DEMO, ["data.voxel_size=0"]))
    with pytest.raises(ConfigError, match=r"eval\.split"):
        check_config(load_config(DEMO, ["eval.split=dev"]))
    with pytest.raises(ConfigError, match="needs"):
        check_config(load_config(DEMO, ["data.train_transforms=[{name: sphere_crop}]"]))


def test_missing_required_section(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", {"data": {"name": "s3dis", "root": ".", "train": {}}})
    with pytest.raises(ConfigError, match="model: missing"):
        load_config(path)


# --- safety -----------------------------------------------------------------------------------


def test_python_tags_are_refused_and_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write(
        tmp_path / "evil.yaml",
        f'base: {DEMO}\nseed: !!python/object/apply:os.system ["touch {marker}"]\n',
    )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    assert not marker.exists()
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(DEMO, [f'seed=!!python/object/apply:os.system ["touch {marker}"]'])
    assert not marker.exists()


# --- round trip -------------------------------------------------------------------------------


def test_config_round_trips_through_dict_and_yaml(tmp_path: Path) -> None:
    config = load_config(DEMO, ["optim.lr=1e-7", "train.clip_grad_norm=2"])
    config.data.root = "1e5"  # a string that reads as a number must stay a string
    assert config_from_dict(config.to_dict()) == config
    text = dump_config(config)
    path = _write(tmp_path / "saved.yaml", text)
    loaded = load_config(path)
    assert isinstance(loaded, Config) and loaded == config
    assert loaded.optim["lr"] == 1e-7 and loaded.data.root == "1e5"
    assert loaded.train.clip_grad_norm == 2.0
    assert load_config(_write(tmp_path / "again.yaml", dump_config(loaded))) == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.log_every=0", "train.log_every must be >= 1"),
        ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1"),
        ("train.clip_grad_norm=-1", "train.clip_grad_norm must be > 0"),
        ("schedule.warmup_start=-1", "warmup_start must be in [0, 1]"),
        ("eval.tta.flips=[]", "must not be empty"),
        ("eval.tta.scales=[0]", "eval.tta.scales must be > 0"),
        ("data.batch_size=0", "data.batch_size must be >= 1"),
        ("method={name: supervised, class_weights: [1, 2]}", "2 values for 19 classes"),
    ],
)
def test_values_that_would_fail_mid_run_are_rejected_up_front(override, message):
    config = load_config(DEMO, [override])
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(config)


def test_unknown_tta_flip_is_rejected_before_training():
    with pytest.raises(ConfigError, match=re.escape("eval.tta.flips: 'z'")):
        check_config(load_config(DEMO, ["eval.tta.flips=[none, z]"]))
