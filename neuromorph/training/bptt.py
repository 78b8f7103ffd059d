"""Surrogate-gradient BPTT on the Norse backend, single process or data-parallel.

The loss is the cross-entropy of the readout averaged over the task's decision steps.
Data parallelism (torchrun, any torch.distributed backend) splits every global batch
into equal-weight shards: each rank computes the summed loss of its shard divided by
the global batch size and gradients are summed across ranks, which is the same update
as one process on the whole batch (up to float summation order).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..backends.norse import GraphNetwork, Surrogate
from ..errors import NeuromorphError
from ..ir import Graph
from ..tasks import Dataset
from .distributed import Cluster

Progress = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-3
    seed: int = 0
    device: str = "auto"
    surrogate: Surrogate = field(default_factory=Surrogate)
    dtype: str = "float32"  # float64 for reference runs and exact comparisons

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise NeuromorphError("epochs and batch size must be >= 1 and the learning rate > 0")
        if self.dtype not in ("float32", "float64"):
            raise NeuromorphError(f"dtype must be float32 or float64, got '{self.dtype}'")


@dataclass
class TrainResult:
    graph: Graph
    accuracy: float
    history: list[dict[str, Any]]
    seconds: float
    device: str
    method: str = "bptt"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NeuromorphError("--device cuda was asked for but torch sees no CUDA device")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise NeuromorphError(f"unknown device '{device}' (auto, cpu, cuda)")
    return torch.device(device)


def scores(net: GraphNetwork, x: torch.Tensor, decision: slice) -> torch.Tensor:
    """Class scores: the (single) output averaged over the decision steps."""
    out = net(x)
    if len(out) != 1:
        raise NeuromorphError(f"training needs a model with one Output node, got {len(out)}")
    y = next(iter(out.values()))
    return y[:, decision].mean(dim=1).reshape(y.shape[0], -1)


def evaluate(net: GraphNetwork, x: np.ndarray, y: np.ndarray, decision: slice,
             batch_size: int = 256) -> float:
    device = next(net.parameters()).device
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i : i + batch_size], device=device)
            pred = scores(net, xb, decision).argmax(dim=1).cpu().numpy()
            correct += int((pred == y[i : i + batch_size]).sum())
    return correct / max(1, len(x))


def train_bptt(
    graph: Graph,
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    progress: Progress | None = None,
    cluster: Cluster | None = None,
) -> TrainResult:
    data.check_model(graph)
    cluster = cluster or Cluster.single()
    device = cluster.device if cluster.world_size > 1 else resolve_device(config.device)
    torch.manual_seed(config.seed)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    net = GraphNetwork(graph, dt=data.dt, surrogate=config.surrogate, dtype=dtype).to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    x_all = torch.as_tensor(data.x_train)
    y_all = torch.as_tensor(data.y_train)
    n = len(x_all)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        net.train()
        order = rng.permutation(n)  # same on every rank: same seed
        total_loss, batches = 0.0, 0
        for i in range(0, n, config.batch_size):
            idx = order[i : i + config.batch_size]
            mine = cluster.shard(idx)
            optimiser.zero_grad()
            loss_sum = 0.0
            if len(mine):  # a rank whose shard is empty contributes zero gradients
                loss = torch.nn.functional.cross_entropy(
                    scores(net, x_all[mine].to(device), data.decision_steps),
                    y_all[mine].to(device), reduction="sum")
                (loss / len(idx)).backward()
                loss_sum = float(loss.detach())
            cluster.sum_gradients(net)
            optimiser.step()
            total_loss += cluster.sum_scalar(loss_sum) / len(idx)
            batches += 1
        net.eval()
        record = {
            "epoch": epoch,
            "loss": total_loss / batches,
            "train_accuracy": evaluate(net, data.x_train, data.y_train, data.decision_steps),
            "test_accuracy": evaluate(net, data.x_test, data.y_test, data.decision_steps),
            "seconds": time.perf_counter() - start,
        }
        history.append(record)
        if progress is not None and cluster.rank == 0:
            progress(record)
    seconds = time.perf_counter() - start
    trained = net.to_graph()
    return TrainResult(trained, history[-1]["test_accuracy"], history, seconds, str(device))
