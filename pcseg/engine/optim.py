"""Optimisers and learning-rate schedules (per step, with linear warm-up), by config name."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from pcseg.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(
    params: Iterable[nn.Parameter],
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = True,
    dampening: float = 0.0,
) -> torch.optim.Optimizer:
    if nesterov and dampening:
        raise ValueError("optim: Nesterov momentum requires dampening 0")
    return torch.optim.SGD(
        params,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
        dampening=dampening,
    )


@OPTIMIZERS.register("adamw")
def adamw(
    params: Iterable[nn.Parameter],
    *,
    lr: float,
    weight_decay: float = 0.01,
    betas: Sequence[float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


class _Schedule:
    """Learning-rate factor of a step: linear warm-up from ``warmup_start``, then ``decay``.

    Plain attributes only, so ``LambdaLR.state_dict`` saves it as weights-only data.
    """

    def __init__(self, *, max_steps: int, warmup_steps: int = 0, warmup_start: float = 0.01):
        if warmup_steps < 0 or warmup_steps >= max(max_steps, 1):
            raise ValueError(f"warmup_steps must be in [0, max_steps), got {warmup_steps}")
        self.max_steps, self.warmup_steps, self.warmup_start = max_steps, warmup_steps, warmup_start

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1 - self.warmup_start) * step / self.warmup_steps
        span = max(self.max_steps - self.warmup_steps, 1)
        return self.decay(min((step - self.warmup_steps) / span, 1.0))

    def decay(self, progress: float) -> float:
        return 1.0


@SCHEDULES.register("constant")
class Constant(_Schedule):
    pass


@SCHEDULES.register("poly")
class Poly(_Schedule):
    """(1 - progress) ** power."""

    def __init__(
        self,
        *,
        max_steps: int,
        power: float = 0.9,
        warmup_steps: int = 0,
        warmup_start: float = 0.01,
    ) -> None:
        super().__init__(max_steps=max_steps, warmup_steps=warmup_steps, warmup_start=warmup_start)
        self.power = power

    def decay(self, progress: float) -> float:
        return (1.0 - progress) ** self.power


@SCHEDULES.register("cosine")
class Cosine(_Schedule):
    """Half a cosine from 1 down to ``min_factor``."""

    def __init__(
        self,
        *,
        max_steps: int,
        min_factor: float = 0.0,
        warmup_steps: int = 0,
        warmup_start: float = 0.01,
    ) -> None:
        super().__init__(max_steps=max_steps, warmup_steps=warmup_steps, warmup_start=warmup_start)
        self.min_factor = min_factor

    def decay(self, progress: float) -> float:
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULES.register("cosine_annealing")
class CosineAnnealing(_Schedule):
    """PyTorch's ``CosineAnnealingLR(T_max=half_period_steps)`` stepped every step.

    ``min_factor + (1 - min_factor) * 0.5 * (1 + cos(pi * t / T))``, t counted after warm-up.
    It does not stop at T: the factor climbs back to 1 at 2T, so over a run longer than T the
    schedule is periodic. HPAL trains 60 000 steps with T = 5000, i.e. six full cycles.
    """

    def __init__(
        self,
        *,
        max_steps: int,
        half_period_steps: int,
        min_factor: float = 0.0,
        warmup_steps: int = 0,
        warmup_start: float = 0.01,
    ) -> None:
        super().__init__(max_steps=max_steps, warmup_steps=warmup_steps, warmup_start=warmup_start)
        if half_period_steps < 1:
            raise ValueError(f"half_period_steps must be >= 1, got {half_period_steps}")
        self.half_period_steps, self.min_factor = half_period_steps, min_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return super().__call__(step)
        phase = math.pi * (step - self.warmup_steps) / self.half_period_steps
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(phase))
