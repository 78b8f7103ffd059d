"""Data parallelism over torch.distributed, started by ``torchrun``.

``Cluster.from_environment()`` joins the process group that torchrun describes in
RANK / WORLD_SIZE / MASTER_ADDR (gloo on CPU, nccl on CUDA). Without those variables it
is a cluster of one and every method is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Cluster:
    rank: int
    world_size: int
    device: torch.device

    @classmethod
    def single(cls) -> "Cluster":
        return cls(0, 1, torch.device("cpu"))

    @classmethod
    def from_environment(cls, device: str = "auto") -> "Cluster":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        rank = dist.get_rank()
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
        else:
            dev = torch.device("cpu")
        return cls(rank, dist.get_world_size(), dev)

    def shard(self, idx: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of a global batch (sizes differ by at most one)."""
        return np.array_split(idx, self.world_size)[self.rank]

    def sum_gradients(self, module: torch.nn.Module) -> None:
        if self.world_size == 1:
            return
        for p in module.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def sum_scalar(self, value: float) -> float:
        if self.world_size == 1:
            return value
        return float(self.sum_tensor(torch.tensor([value], dtype=torch.float64, device=self.device)).item())

    def sum_tensor(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over ranks (in place)."""
        if self.world_size > 1:
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
