"""Multi-process training through torchrun: which process this is, and the few collectives
training needs. One process (plain `python -m export train`) needs none of it.

    torchrun --nproc_per_node 2 -m export train --train data/scenes-train ...   # gloo on CPU
    torchrun --nproc_per_node 4 -m export train --train coco:... --device cuda   # nccl on GPUs
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from runtime.errors import InputError


@dataclass(frozen=True)
class Dist:
    rank: int  # this process, 0..world-1; rank 0 validates, saves and prints
    world: int  # processes in the run
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Dist:
    """Join the torchrun group when there is one; pick the device (auto: cuda if present)."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device {device!r}: choose auto, cpu or cuda")
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise InputError("--device cuda: this torch has no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    name = "cpu"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        name = f"cuda:{local}"
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
        if not cuda:  # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or world) // world))
    return Dist(rank, world, torch.device(name))


def teardown(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first(d: Dist):
    """Rank 0 runs the block first (e.g. writes a feature cache), then the others (read it)."""
    if not d.main:
        barrier(d)
    yield
    if d.main:
        barrier(d)


def mean(d: Dist, value: float) -> float:
    """The mean of a number over all processes."""
    if d.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def from_main(d: Dist, flag: bool) -> bool:
    """Rank 0's value of a flag, on every process (e.g. whether to stop early)."""
    if d.world == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.broadcast(t, 0)
    return bool(t.item())
