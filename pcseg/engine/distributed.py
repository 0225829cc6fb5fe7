"""Data-parallel set-up from ``torchrun``'s environment, and the few collectives the loop needs.

``torchrun --nproc_per_node N tools/train.py CONFIG`` sets RANK, WORLD_SIZE and LOCAL_RANK; the
process group uses NCCL on GPUs and gloo on CPUs. Without those variables everything here is a
single-process no-op.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(preference: str, local_rank: int = 0) -> torch.device:
    """ "auto" = this process's GPU when there is one, else the CPU; or "cpu" / "cuda"."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup(device_preference: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun; choose the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world_size=world_size, device=device)


def teardown() -> None:
    """Leave the process group after a successful run.

    All ranks meet at a barrier first: a rank that destroys its group while another still
    talks to it can make gloo abort that other process ("terminate called without an active
    exception"). After a failure do not call this (other ranks may be stuck in a collective);
    the launcher stops them.
    """
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over ranks (in place; returned for chaining)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every rank (so all ranks take the same branch)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    if dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() == 1.0)


def parameter_checksums(model: nn.Module) -> list[float]:
    """One float64 checksum of all parameters per rank (position-weighted, so that swapped
    values change it); equal entries mean the replicas are identical to rounding."""
    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64, device=next(model.parameters()).device)
        for i, param in enumerate(model.parameters()):
            flat = param.detach().double().flatten()
            ramp = torch.linspace(1.0, 2.0, len(flat), dtype=torch.float64, device=flat.device)
            total += (i + 1) * (flat * ramp).sum()
    if not dist.is_initialized():
        return [total.item()]
    gathered = [torch.zeros_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return [g.item() for g in gathered]
