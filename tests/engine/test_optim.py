"""Learning-rate schedules and optimisers built from config specs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from pcseg.engine.optim import OPTIMIZERS, SCHEDULES
from pcseg.registry import ConfigError


def _factors(spec: dict, max_steps: int) -> list[float]:
    schedule = SCHEDULES.build(spec, max_steps=max_steps)
    return [schedule(step) for step in range(max_steps + 1)]


def test_linear_warmup_then_poly_decay():
    factors = _factors({"name": "poly", "power": 2.0, "warmup_steps": 4, "warmup_start": 0.2}, 14)
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert factors[9] == pytest.approx((1 - 5 / 10) ** 2)
    assert factors[14] == 0.0


def test_cosine_reaches_its_floor_and_constant_stays_flat():
    factors = _factors({"name": "cosine", "min_factor": 0.1}, 10)
    assert factors[0] == 1.0 and factors[5] == pytest.approx(0.55) and factors[10] == 0.1
    assert all(a >= b for a, b in itertools.pairwise(factors))
    assert set(_factors({"name": "constant"}, 5)) == {1.0}


def test_cosine_annealing_is_periodic_like_torchs_cosine_annealing_lr():
    """HPAL's schedule: CosineAnnealingLR(T_max=5000) stepped every step of a longer run."""
    factors = _factors({"name": "cosine_annealing", "half_period_steps": 5}, 30)
    assert factors[0] == 1.0 and factors[5] == pytest.approx(0.0, abs=1e-12)
    assert factors[10] == pytest.approx(1.0) and factors[25] == pytest.approx(0.0, abs=1e-12)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5)
    expected = []
    for _ in range(30):
        expected.append(optimizer.param_groups[0]["lr"] / 0.1)
        optimizer.step()
        reference.step()
    assert factors[:30] == pytest.approx(expected, abs=1e-9)


def test_schedule_drives_the_optimizer_per_step():
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = OPTIMIZERS.build({"name": "sgd", "lr": 0.1}, params=[param])
    schedule = SCHEDULES.build({"name": "cosine"}, max_steps=4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rates = []
    for _ in range(4):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(1, 5)]
    assert rates == pytest.approx(expected)
    assert set(scheduler.state_dict()["lr_lambdas"][0]) >= {"max_steps", "warmup_steps"}


def test_bad_specs_are_rejected():
    with pytest.raises(ConfigError, match=r"valid: .*momentum"):
        OPTIMIZERS.check({"name": "sgd", "lr": 0.1, "beta": 1}, where="optim", provided=("params",))
    with pytest.raises(ValueError, match="warmup_steps"):
        SCHEDULES.build({"name": "poly", "warmup_steps": 10}, max_steps=10)
