"""Running and verifying deployments, on any registered target.

A model file runs by being compiled in memory (float) for a target (by default the
registry's ``MODEL_TARGET``, the float64 torch simulator); an artifact runs on the target
it was compiled for. Everything goes through the target interface (neuromorph/target.py)
and the stream contract (neuromorph/streams.py): same inputs, same probe names, same
prediction rule, same output files whichever target runs.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .artifact import Artifact, is_artifact, load_artifact
from .compile import compile_graph
from .learning import task_inputs
from .documents import file_kind
from .errors import NeuromorphError
from .ir import Graph
from .ir.plasticity import frozen
from .registry import MODEL_TARGET, target
from .streams import (
    Probe, Recording, check_memory, check_streams, input_shapes, load_stream,
    parse_probes, predict, readout_membranes, save_streams, spiking_nodes,
)
from .target import Progress
from .tasks import Dataset


def deployment(model: Graph | Artifact, backend: str | None = None, dt: float | None = None) -> Artifact:
    """An artifact as it is, or a model compiled in memory (float) for ``backend``."""
    if isinstance(model, Artifact):
        if backend is not None and backend != model.target:
            raise NeuromorphError(f"the artifact was compiled for '{model.target}', not '{backend}': "
                                  "compile the model again for that backend")
        if dt is not None:
            raise NeuromorphError("an artifact's dt was fixed when it was compiled: --dt applies to model files")
        return model
    # a model file runs as it is: its plasticity learns only on chip (run --learn on an artifact)
    return compile_graph(frozen(model), backend=backend or MODEL_TARGET, precision="float", dt=dt)


def load_deployment(path: str, backend: str | None = None, dt: float | None = None) -> Artifact:
    """A path to an artifact, or a model file / zoo name (models.resolve). Only a regular
    file is opened to sniff it (a FIFO or a device is refused, unread)."""
    from .models import resolve

    if file_kind(path) == "file" and is_artifact(path):
        return deployment(load_artifact(path), backend, dt)
    return deployment(resolve(path), backend, dt)


RECORD_COPIES = 2
"""A target holds what it records about twice at its peak (per-batch parts, then joined)."""


def check_run_memory(graph: Graph, samples: int, steps: int, probes: Sequence[Probe] = ()) -> None:
    """Refuse a run whose recorded arrays ([samples, steps, *shape] float64 for the inputs,
    the outputs, the probes and every spiking node's spikes) would exceed MEMORY_BOUND.
    Names the node that takes the most."""
    names = [*graph.inputs, *graph.outputs, *spiking_nodes(graph), *(p.node for p in probes)]
    sizes = {n: int(np.prod(graph.shape(n), dtype=object)) for n in names}
    per_step = sum(sizes[n] for n in names)
    total = RECORD_COPIES * 8 * int(samples) * int(steps) * per_step
    largest = max(sizes, key=lambda n: sizes[n])
    check_memory(total, f"a run of {samples} sample(s) x {steps} steps, recording {per_step} "
                 f"values per step ({sizes[largest]} of them here)", node=largest)


def run_options(artifact: Artifact, options: dict[str, Any] | None) -> dict[str, Any]:
    """The run options given (None values left out), checked against those the artifact's
    target declares (``run_options``: how it runs, e.g. the Loihi 2 target's ``lanes``);
    one that it does not take is refused (one line)."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    declared = target(artifact.target).run_options
    for name in given:
        if name not in declared:
            flag = "--" + name.replace("_", "-")
            raise NeuromorphError(f"{flag} is a run option of other targets; '{artifact.target}' takes "
                                  f"{', '.join('--' + k.replace('_', '-') for k in declared) or 'none'}")
    return given


def record(artifact: Artifact, x: Any, probes: Sequence[str | Probe] = (),
           progress: Progress | None = None, options: dict[str, Any] | None = None) -> Recording:
    """Run inputs ({Input: [N, T, *shape]} or one array) through the deployment;
    ``options``: the target's run options (:func:`run_options`)."""
    given = run_options(artifact, options)
    inputs, _ = check_streams(input_shapes(artifact.graph), x)  # refuses 0 samples or 0 steps
    n, t = next(iter(inputs.values())).shape[:2]
    parsed = parse_probes(artifact.graph, [p.text if isinstance(p, Probe) else p for p in probes])
    check_run_memory(artifact.graph, n, t, parsed)
    return target(artifact.target).run(artifact, inputs, probes=parsed, progress=progress, **given)


def _split(data: Dataset, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    if split not in ("train", "test"):
        raise NeuromorphError(f"split must be train or test, got '{split}'")
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    if limit is not None:
        if limit < 1:
            raise NeuromorphError(f"--limit must be >= 1, got {limit}")
        x, y = x[:limit], y[:limit]
    return x, y


def run_dataset(artifact: Artifact, data: Dataset, *, split: str = "test",
                limit: int | None = None, progress: Progress | None = None,
                options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a deployment over a task's split and score it."""
    x, y = _split(data, split, limit)
    output = data.check_model(artifact.graph)
    start = time.perf_counter()
    rec = record(artifact, task_inputs(artifact.graph, x), progress=progress, options=options)
    seconds = time.perf_counter() - start
    pred = predict(rec.outputs[output], data.decision_steps)
    return {
        "backend": artifact.target, "precision": artifact.precision,
        "accuracy": float(np.mean(pred == y)), "samples": int(len(x)), "steps": int(x.shape[1]),
        "seconds": round(seconds, 3), "spikes": int(sum(rec.spikes.values())),
        "spikes_per_population": {k: int(v) for k, v in rec.spikes.items()},
        "split": split, "task": data.name, **rec.info,
    }


def run_stream(artifact: Artifact, input_path: str | Path, output_path: str | Path, *,
               membrane: bool = False, progress: Progress | None = None,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``X.npy`` in, ``Y.npz`` out: the Output nodes' streams, and with ``membrane`` the
    membrane (``NAME.v``) of every neuron node that feeds an Output."""
    inputs, batched = load_stream(input_path, artifact.graph)
    probes = readout_membranes(artifact.graph) if membrane else []
    start = time.perf_counter()
    rec = record(artifact, inputs, probes, progress, options)
    seconds = time.perf_counter() - start
    return {
        "backend": artifact.target, "precision": artifact.precision,
        **save_streams(output_path, {**rec.outputs, **rec.probes}, batched),
        "seconds": round(seconds, 3), "spikes": int(sum(rec.spikes.values())), **rec.info,
    }


def verify(artifact: Artifact, x: Any, decision: slice = slice(None),
           progress: Progress | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The deployment beside its target's reference on the same inputs: spike for spike
    on every spiking node, and prediction for prediction on the first Output."""
    graph = artifact.graph
    inputs, _ = check_streams(input_shapes(graph), x)
    probes = [Probe(n) for n in spiking_nodes(graph)]
    got = record(artifact, inputs, probes, progress, options)
    ref = target(artifact.target).reference(artifact, inputs, probes=probes)
    want = ref.recording
    equal = sum(int(np.sum(got.probes[p.text] == want.probes[p.text])) for p in probes)
    total = sum(int(want.probes[p.text].size) for p in probes)
    per_node = {p.text: float(np.mean(got.probes[p.text] == want.probes[p.text])) for p in probes}
    out = graph.outputs[0]
    agreement = equal / total if total else 1.0
    return {
        "spike_agreement": agreement, "expected_agreement": ref.expected_agreement,
        "passed": agreement >= ref.expected_agreement,
        "prediction_agreement": float(np.mean(predict(got.outputs[out], decision)
                                              == predict(want.outputs[out], decision))),
        "max_output_difference": float(np.max(np.abs(got.outputs[out] - want.outputs[out])))
        if got.outputs[out].size else 0.0,
        "spike_agreement_per_node": per_node,
        "reference": ref.name, "backend": artifact.target, "precision": artifact.precision,
        "samples": int(len(next(iter(inputs.values())))), "steps": int(next(iter(inputs.values())).shape[1]),
        "spikes_compared": total,
        **{k: got.info[k] for k in ("plan", "lanes", "cores", "cores_available") if k in got.info},
    }
