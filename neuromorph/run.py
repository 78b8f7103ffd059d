"""Running a model: over a task's data set (accuracy) or on a user's own input stream.

The Norse backend runs in float64 here: it is the reference, and float64 keeps it
spike-for-spike with the written semantics.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import NeuromorphError
from .ir import Graph, Neuron
from .model_file import write_atomic
from .tasks import Dataset

BACKENDS = ("norse",)


def _network(graph: Graph, backend: str, dt: float | None) -> Any:
    if backend != "norse":
        raise NeuromorphError(f"unknown backend '{backend}' (available: {', '.join(BACKENDS)})")
    from .backends.norse import GraphNetwork

    return GraphNetwork(graph, dt=dt, dtype=torch.float64).eval()


def load_stream(path: str | Path, graph: Graph) -> tuple[np.ndarray, bool]:
    """Read X.npy and check it against the model's single Input: returns [B, T, ...]
    and whether the file had a batch axis."""
    try:
        x = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise NeuromorphError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise NeuromorphError(f"{path}: not a .npy array file ({exc})") from None
    if len(graph.inputs) != 1:
        raise NeuromorphError("--input needs a model with exactly one Input node")
    shape = graph.shape(graph.inputs[0])
    if not np.issubdtype(x.dtype, np.number) and x.dtype != bool:
        raise NeuromorphError(f"{path}: array dtype {x.dtype} is not numeric")
    if tuple(x.shape[-len(shape):]) != shape or x.ndim not in (len(shape) + 1, len(shape) + 2):
        want = ", ".join(map(str, shape))
        raise NeuromorphError(
            f"{path}: input of shape {list(x.shape)} does not fit the model: expected "
            f"[T, {want}] or [batch, T, {want}]"
        )
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise NeuromorphError(f"{path}: input contains NaN or inf")
    batched = x.ndim == len(shape) + 2
    return (x if batched else x[None]), batched


def _membrane_probes(graph: Graph) -> list[str]:
    """Membrane potential of each neuron population that feeds an Output."""
    names = []
    for out in graph.outputs:
        for e in graph.incoming(out):
            if isinstance(graph.nodes[e.source], Neuron):
                names.append(f"{e.source}.v")
    return names


def run_stream(graph: Graph, input_path: str | Path, output_path: str | Path, *,
               backend: str = "norse", membrane: bool = False,
               dt: float | None = None) -> dict[str, Any]:
    x, batched = load_stream(input_path, graph)
    net = _network(graph, backend, dt)
    record = _membrane_probes(graph) if membrane else []
    start = time.perf_counter()
    with torch.no_grad():
        out = net(torch.as_tensor(x), record=record)
    seconds = time.perf_counter() - start
    arrays = {k: (v.numpy() if batched else v.numpy()[0]) for k, v in out.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(output_path, buf.getvalue())
    return {
        "backend": backend, "steps": int(x.shape[1]), "batch": int(x.shape[0]) if batched else None,
        "arrays": {k: list(v.shape) for k, v in arrays.items()}, "output": str(output_path),
        "seconds": round(seconds, 3),
    }


def run_dataset(graph: Graph, data: Dataset, *, split: str = "test", limit: int | None = None,
                backend: str = "norse", dt: float | None = None,
                batch_size: int = 128) -> dict[str, Any]:
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    if limit is not None:
        if limit < 1:
            raise NeuromorphError(f"--limit must be >= 1, got {limit}")
        x, y = x[:limit], y[:limit]
    if len(graph.outputs) != 1 or int(np.prod(graph.shape(graph.outputs[0]))) != data.n_classes:
        raise NeuromorphError(f"the model's output does not have one unit per class of '{data.name}' ({data.n_classes})")
    net = _network(graph, backend, dt if dt is not None else data.dt)
    spiking = [n for n, node in graph.nodes.items() if isinstance(node, Neuron) and node.spiking]
    correct, spikes = 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = net(torch.as_tensor(x[i : i + batch_size], dtype=torch.float64), record=spiking)
            readout = out[graph.outputs[0]][:, data.decision_steps].mean(dim=1)
            pred = readout.reshape(readout.shape[0], -1).argmax(dim=1).numpy()
            correct += int((pred == y[i : i + batch_size]).sum())
            spikes += int(sum(out[n].sum().item() for n in spiking))
    return {
        "backend": backend, "accuracy": correct / len(x), "samples": int(len(x)),
        "steps": int(x.shape[1]), "seconds": round(time.perf_counter() - start, 3),
        "spikes": spikes, "split": split, "task": data.name,
    }
