"""Label-efficiency sweeps: the plan, each method's settings, aggregation and the table."""

from __future__ import annotations

import pytest

from pcseg.config import config_from_dict
from pcseg.engine.label_efficiency import (
    Run,
    aggregate,
    markdown_table,
    method_spec,
    plan_runs,
)


def test_plan_runs_full_once_per_seed_others_per_rate_and_seed():
    runs = plan_runs(["full", "sparse", "cpcm"], [0.001, 0.0001], [0, 1, 2])
    assert len(runs) == 3 + 2 * 2 * 3
    assert {r.rate for r in runs if r.method == "full"} == {None}
    assert len({r.name for r in runs}) == len(runs)
    with pytest.raises(ValueError, match="unknown methods"):
        plan_runs(["magic"], [0.001], [0])
    with pytest.raises(ValueError, match="rates"):
        plan_runs(["cpcm"], [0.0], [0])


def test_method_variants_follow_the_official_settings(make_config, tmp_path):
    config = config_from_dict(
        make_config(tmp_path, method={"name": "cpcm", "grid": 4, "mask_weight": 5.0})
    )
    assert method_spec(config, Run("full", None, 0)) == {"name": "supervised"}
    sparse = method_spec(config, Run("sparse", 0.001, 0))
    assert sparse["mask_weight"] == sparse["consistency_weight"] == 0.0
    assert method_spec(config, Run("consistency", 0.001, 0))["consistency_weight"] == 1.0
    assert method_spec(config, Run("consistency", 0.0001, 0))["consistency_weight"] == 5.0
    assert method_spec(config, Run("cpcm", 0.001, 0))["grid"] == 4
    low = method_spec(config, Run("cpcm", 0.0001, 0))
    assert (low["grid"], low["mask_weight"]) == (8, 10.0)
    supervised = config_from_dict(make_config(tmp_path))
    with pytest.raises(ValueError, match="cpcm"):
        method_spec(supervised, Run("cpcm", 0.001, 0))


def test_aggregate_and_markdown_table():
    rows = [
        {"method": "cpcm", "rate": 0.001, "seed": s, "miou": m, "macc": m, "allacc": m,
         "labelled_fraction": 0.001}
        for s, m in enumerate([0.5, 0.6, 0.7])
    ] + [
        {"method": "full", "rate": None, "seed": 0, "miou": 0.8, "macc": 0.8, "allacc": 0.9,
         "labelled_fraction": 1.0}
    ]  # fmt: skip
    table = aggregate(rows)
    cpcm = next(e for e in table if e["method"] == "cpcm")
    assert cpcm["miou"] == pytest.approx(0.6) and cpcm["miou_std"] == pytest.approx(0.1)
    text = markdown_table(table)
    assert "| method | 0.1 % | 100 % |" in text
    assert "| cpcm | 60.0 ± 10.0 |  |" in text and "| full |  | 80.0 ± 0.0 |" in text
