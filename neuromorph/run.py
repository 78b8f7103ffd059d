"""Running a model or a deployment: over a task's data set, or on a user's own stream.

Model files run on the Norse backend, in float64: it is the reference, and float64 keeps
it spike-for-spike with the written semantics. Compiled artifacts run in Lava (the
Loihi 2 simulator); their outputs come back aligned with the reference's time steps.
torch is imported only on the Norse paths: Lava forks its workers, and keeping torch's
thread pools out of the parent of that fork avoids the hangs Lava's docs warn about.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import NeuromorphError
from .ir import Graph, Neuron
from .documents import write_atomic
from .tasks import Dataset

BACKENDS = ("norse", "lava")

Progress = Callable[[int, int], None]  # (chip steps done, chip steps in total)


def _network(graph: Graph, backend: str, dt: float | None) -> Any:
    if backend != "norse":
        raise NeuromorphError(f"model files run on the norse backend; compile for '{backend}' first "
                              "(neuromorph compile) and run the artifact")
    import torch

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


def _save_stream(path: str | Path, arrays: dict[str, np.ndarray], batched: bool) -> dict[str, Any]:
    """Write ``{name: [B, T, ...]}`` as .npz atomically, without the batch axis when the
    input had none; returns the part of the report that describes it."""
    arrays = {k: (v if batched else v[0]) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())
    first = next(iter(arrays.values()))
    return {
        "steps": int(first.shape[1] if batched else first.shape[0]),
        "batch": int(first.shape[0]) if batched else None,
        "arrays": {k: list(v.shape) for k, v in arrays.items()}, "output": str(path),
    }


def run_stream(graph: Graph, input_path: str | Path, output_path: str | Path, *,
               backend: str = "norse", membrane: bool = False,
               dt: float | None = None) -> dict[str, Any]:
    import torch

    x, batched = load_stream(input_path, graph)
    net = _network(graph, backend, dt)
    record = _membrane_probes(graph) if membrane else []
    start = time.perf_counter()
    with torch.no_grad():
        out = net(torch.as_tensor(x), record=record)
    seconds = time.perf_counter() - start
    return {"backend": backend, **_save_stream(output_path, {k: v.numpy() for k, v in out.items()}, batched),
            "seconds": round(seconds, 3)}


def run_dataset(graph: Graph, data: Dataset, *, split: str = "test", limit: int | None = None,
                backend: str = "norse", dt: float | None = None,
                batch_size: int = 128) -> dict[str, Any]:
    import torch

    x, y = _dataset_split(data, split, limit)
    output = data.check_model(graph)
    net = _network(graph, backend, dt if dt is not None else data.dt)
    spiking = [n for n, node in graph.nodes.items() if isinstance(node, Neuron) and node.spiking]
    correct, spikes = 0, 0
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = net(torch.as_tensor(x[i : i + batch_size], dtype=torch.float64), record=spiking)
            pred = _predict(out[output].numpy(), data.decision_steps)
            correct += int((pred == y[i : i + batch_size]).sum())
            spikes += int(sum(out[n].sum().item() for n in spiking))
    return {
        "backend": backend, "accuracy": correct / len(x), "samples": int(len(x)),
        "steps": int(x.shape[1]), "seconds": round(time.perf_counter() - start, 3),
        "spikes": spikes, "split": split, "task": data.name,
    }


# ------------------------------------------------------------------ deployments


def _runner(artifact: Any) -> Callable[..., Any]:
    """The run function of the backend the artifact was compiled for (registry.py)."""
    from .registry import get

    return get(artifact.backend).load("run")


def _dataset_split(data: Dataset, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    if limit is not None:
        if limit < 1:
            raise NeuromorphError(f"--limit must be >= 1, got {limit}")
        x, y = x[:limit], y[:limit]
    return x, y


def _predict(outputs: np.ndarray, decision: slice) -> np.ndarray:
    scores = outputs[:, decision].mean(axis=1)
    return scores.reshape(scores.shape[0], -1).argmax(axis=1)


def run_artifact_dataset(artifact: Any, data: Dataset, *, split: str = "test",
                         limit: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run a compiled deployment in Lava over a data set in one Lava run (state is reset
    between samples on the chip) and score it."""
    run = _runner(artifact)
    x, y = _dataset_split(data, split, limit)
    output = data.check_model(artifact.graph)
    net = artifact.netlist
    start = time.perf_counter()
    outputs, spikes, info = run(net, x, precision=artifact.precision, quantized=artifact.quantized,
                                progress=progress)
    seconds = time.perf_counter() - start
    pred = _predict(outputs[output], data.decision_steps)
    return {
        "backend": "lava", "precision": artifact.precision, "accuracy": float(np.mean(pred == y)),
        "samples": int(len(x)), "steps": int(x.shape[1]), "chip_steps": int(getattr(info, "chip_steps", 0)),
        "seconds": round(seconds, 3), "spikes": int(sum(spikes.values())),
        "spikes_per_population": {k: int(v) for k, v in spikes.items()},
        "split": split, "task": data.name,
    }


def run_artifact_stream(artifact: Any, input_path: str | Path, output_path: str | Path, *,
                        membrane: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Like :func:`run_stream`, on the deployment: same array names, same time axis."""
    run = _runner(artifact)
    x, batched = load_stream(input_path, artifact.graph)
    probes = _membrane_probes(artifact.graph) if membrane else []  # every neuron node is a population
    start = time.perf_counter()
    outputs, spikes, info = run(artifact.netlist, x, precision=artifact.precision,
                                quantized=artifact.quantized, probes=probes, progress=progress)
    seconds = time.perf_counter() - start
    return {
        "backend": "lava", "precision": artifact.precision,
        **_save_stream(output_path, {**outputs, **info.probes}, batched),
        "seconds": round(seconds, 3), "spikes": int(sum(spikes.values())),
        "latency_steps": artifact.netlist.latency,
    }


def verify_artifact(artifact: Any, x: np.ndarray, decision: slice,
                    progress: Progress | None = None) -> dict[str, Any]:
    """Deployment vs its reference on the same inputs: for float the Norse backend
    (float64), for fixed point the bit-exact numpy model of the integer arithmetic."""
    net = artifact.netlist
    got = lava_with_spikes(artifact, x, progress)
    if artifact.precision == "fixed":
        from .compiler.quantize import simulate_fixed

        want, _ = simulate_fixed(artifact.quantized, x, record_spikes=True)
        reference = "numpy bit-exact fixed-point model"
    else:
        want = _norse_reference(artifact, x)
        reference = "norse (float64)"
    spike_keys = [k for k in want if k.endswith(".spikes") and k in got]
    equal = sum(int(np.sum(got[k].reshape(want[k].shape) == want[k])) for k in spike_keys)
    total = sum(int(np.asarray(want[k]).size) for k in spike_keys)
    out = net.outputs[0].name
    pred_got, pred_want = _predict(got[out], decision), _predict(want[out], decision)
    return {
        "spike_agreement": equal / total if total else 1.0,
        "prediction_agreement": float(np.mean(pred_got == pred_want)),
        "max_output_difference": float(np.max(np.abs(got[out] - want[out]))) if got[out].size else 0.0,
        "reference": reference, "precision": artifact.precision, "samples": int(len(x)),
        "steps": int(x.shape[1]), "spikes_compared": total,
    }


def lava_with_spikes(artifact: Any, x: np.ndarray, progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Lava outputs plus ``"<population>.spikes"`` [N, T, *shape] of every spiking population."""
    spiking = [p.name for p in artifact.netlist.populations if p.spiking]
    out, _, info = _runner(artifact)(artifact.netlist, x, precision=artifact.precision,
                                     quantized=artifact.quantized, probes=spiking, progress=progress)
    return {**out, **{f"{k}.spikes": v for k, v in info.probes.items()}}


def _norse_reference(artifact: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs and every spiking population's spikes from the Norse backend."""
    import torch

    graph = artifact.graph
    net = _network(graph, "norse", artifact.dt)
    spiking = [p.name for p in artifact.netlist.populations if p.spiking]
    with torch.no_grad():
        out = net(torch.as_tensor(x, dtype=torch.float64), record=spiking)
    result = {o: out[o].numpy() for o in graph.outputs}
    for name in spiking:
        result[f"{name}.spikes"] = out[name].numpy()
    return result
