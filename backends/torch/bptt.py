"""Surrogate-gradient BPTT on the torch backend, single process or data-parallel.

Registered as the training method ``bptt`` (neuromorph/training.py).

The loss is the cross-entropy of the readout averaged over the task's decision steps.
Data parallelism (torchrun, any torch.distributed backend) splits every global batch
into equal-weight shards: each rank computes the summed loss of its shard divided by
the global batch size and gradients are summed across ranks, which is the same update
as one process on the whole batch (up to float summation order).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from neuromorph.errors import NeuromorphError
from neuromorph.ir import Graph
from neuromorph.streams import class_scores
from neuromorph.tasks import Dataset
from neuromorph.training import Progress, TrainConfig, TrainResult

from .distributed import Cluster
from .network import GraphNetwork
from .surrogate import Surrogate


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NeuromorphError("--device cuda was asked for but torch sees no CUDA device")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise NeuromorphError(f"unknown device '{device}' (auto, cpu, cuda)")
    return torch.device(device)


def scores(net: GraphNetwork, x: torch.Tensor, decision: slice) -> torch.Tensor:
    """Class scores of the (single) output (neuromorph.streams.class_scores)."""
    out = net(x)
    if len(out) != 1:
        raise NeuromorphError(f"training needs a model with one Output node, got {len(out)}")
    return class_scores(next(iter(out.values())), decision)


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
    """BPTT over the whole sequence. Under ``torchrun`` (or with ``cluster``) each process
    trains on its shard of every batch; only rank 0's result is to be written."""
    data.check_model(graph)
    if cluster is None:
        with Cluster.from_environment(config.device) as made:
            return train_bptt(graph, data, config, progress, made)
    device, net = network_for(graph, data, config, cluster, "fast_sigmoid")

    def batch_gradients(x: torch.Tensor, y: torch.Tensor, global_batch: int) -> float:
        loss = torch.nn.functional.cross_entropy(scores(net, x, data.decision_steps), y, reduction="sum")
        (loss / global_batch).backward()
        return float(loss.detach())

    history, seconds = fit(net, data, config, cluster, batch_gradients, progress)
    return TrainResult(net.to_graph(), history[-1]["test_accuracy"], history, seconds, str(device),
                       "bptt", cluster.rank, cluster.world_size)


BatchGradients = Callable[[torch.Tensor, torch.Tensor, int], float]
"""``(x, y, global_batch) -> summed loss``: leaves in the parameters' ``.grad`` the gradient
of this shard's summed loss divided by the global batch size."""


def dtype_of(config: TrainConfig) -> torch.dtype:
    return torch.float64 if config.dtype == "float64" else torch.float32


def network_for(graph: Graph, data: Dataset, config: TrainConfig, cluster: Cluster,
                default_surrogate: str) -> tuple[torch.device, GraphNetwork]:
    """What every training method starts from: this process's device, the seed set, and
    the graph as a torch network with the configured (or the method's default) surrogate."""
    device = cluster.device if cluster.world_size > 1 else resolve_device(config.device)
    torch.manual_seed(config.seed)
    surrogate = Surrogate.named(config.surrogate or default_surrogate, config.surrogate_alpha)
    return device, GraphNetwork(graph, dt=data.dt, surrogate=surrogate, dtype=dtype_of(config)).to(device)


def fit(
    net: GraphNetwork,
    data: Dataset,
    config: TrainConfig,
    cluster: Cluster,
    batch_gradients: BatchGradients,
    progress: Progress | None = None,
    after_step: Callable[[], None] | None = None,
    idle: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], float]:
    """The epoch loop every gradient method shares: shuffle, shard, gradients, all-reduce,
    Adam step, evaluate. Returns the per-epoch history and the seconds it took. ``idle``
    runs instead of ``batch_gradients`` on a rank whose shard is empty (to join any
    collective the method makes inside ``batch_gradients``)."""
    device = next(net.parameters()).device
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    updates = config.epochs * -(-len(data.x_train) // config.batch_size)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=updates)
                if config.lr_schedule == "cosine" else None)
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
                loss_sum = batch_gradients(x_all[mine].to(device), y_all[mine].to(device), len(idx))
            elif idle is not None:
                idle()
            cluster.sum_gradients(net)
            optimiser.step()
            if schedule is not None:
                schedule.step()
            if after_step is not None:
                after_step()
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
    return history, time.perf_counter() - start
