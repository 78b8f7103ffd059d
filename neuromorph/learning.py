"""Learning on the chip after deployment: ``neuromorph run ARTIFACT --task T --learn``.

A deployment whose connections carry plasticity (neuromorph.ir.plasticity) is scored on
the task's test split, then plays the task's labelled learning stream with its rules on
(one Lava run: the weights persist from sample to sample, the neurons restart at every
sample as in every run), then is scored again with the weights it learned. The label
stream is an input of the deployment like any other (one-hot per sample, every step):
the error is computed on the chip, no host round trip per step.

The learning curve is the online accuracy on the stream: each sample's prediction from
the readout while it is being learned, over blocks of samples, which costs no extra test
runs. It is optimistic: the label already acts on the weights during its own sample, so
a sample's prediction has seen its label (the before/after scores on the test split are
the measure).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from .artifact import Artifact
from .errors import NeuromorphError
from .ir import Graph
from .ir.plasticity import learning_ports, third_factor_streams
from .registry import target, targets
from .streams import predict
from .target import Progress
from .tasks import Dataset

CURVE_WINDOW = 100
"""Samples per point of the learning curve (the online accuracy over that many)."""


def plastic_connections(graph: Graph) -> list[str]:
    return [n for n, node in graph.nodes.items() if getattr(node, "plasticity", None) is not None]


def check_learnable(artifact: Artifact) -> tuple[str, str]:
    """(data input, label input) of a deployment that can learn on chip, or a one-line
    refusal saying what is missing."""
    graph = artifact.graph
    if not target(artifact.target).plasticity:
        learners = ", ".join(n for n, t in targets().items() if t.plasticity) or "none registered"
        raise NeuromorphError(f"target '{artifact.target}' does not learn on chip: compile the model for a "
                              f"target that does ({learners}) and run the artifact")
    if not plastic_connections(graph):
        raise NeuromorphError("--learn needs a model with plasticity (e.g. one trained with --task "
                              "digits-incremental, or neuromorph.build.delta_rule): this one has none")
    labels, _ = learning_ports(graph)
    data = [n for n in graph.inputs if n not in labels]
    streams = third_factor_streams(graph.nodes)
    direct = [n for n in labels if n in streams]
    if direct:
        raise NeuromorphError(f"--learn plays the task's labels, but the model's third factor '{direct[0]}' is "
                              "an Input of its own (an error or reward stream the task cannot fill): give it "
                              "with the run API (target.run(..., learn=True)), or compute the error in the "
                              "graph from a label input (neuromorph.build.delta_rule)")
    if len(labels) != 1 or len(data) != 1:
        raise NeuromorphError(f"--learn needs one data Input and one label Input feeding the error; the "
                              f"model has data inputs {data} and label inputs {labels}")
    return data[0], labels[0]


def task_inputs(graph: Graph, x: np.ndarray, y: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The inputs of a run of ``x``: the data, and for a plastic model its label stream:
    one-hot ``y`` at every step, or zeros (no label) when ``y`` is None."""
    labels, _ = learning_ports(graph)
    data = [n for n in graph.inputs if n not in labels]
    inputs = {data[0]: x}
    for name in labels:
        n_out = int(np.prod(graph.shape(name)))
        stream = np.zeros((len(x), x.shape[1], n_out), dtype=np.float32)
        if y is not None:
            stream[np.arange(len(x)), :, y] = 1.0
        inputs[name] = stream
    return inputs


def class_scores(pred: np.ndarray, y: np.ndarray, new_classes: tuple[int, ...]) -> dict[str, float | None]:
    """Accuracy over all samples, and over the new and old classes when there are new ones
    (None for a group the samples do not have: JSON has no NaN)."""
    out: dict[str, float | None] = {"accuracy": float(np.mean(pred == y))}
    if new_classes:
        for key, group in (("new_classes_accuracy", np.isin(y, new_classes)),
                           ("old_classes_accuracy", ~np.isin(y, new_classes))):
            out[key] = float(np.mean(pred[group] == y[group])) if group.any() else None
    return out


def online_curve(pred: np.ndarray, y: np.ndarray, window: int | None = None) -> list[dict[str, float]]:
    """The online accuracy over each block of ``window`` samples of the stream (default:
    CURVE_WINDOW, or a tenth of a shorter stream, so that a short stream has a curve too)."""
    if window is None:
        window = min(CURVE_WINDOW, max(1, len(y) // 10))
    return [{"samples": int(min(i + window, len(y))), "accuracy": float(np.mean(pred[i:i + window] == y[i:i + window]))}
            for i in range(0, len(y), window)]


def learn_on_chip(artifact: Artifact, data: Dataset, *, limit: int | None = None,
                  progress: Progress | None = None, options: dict[str, Any] | None = None,
                  report: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Artifact]:
    """Score, learn over the stream, score again. Returns the results and the deployment
    holding the weights learned on chip (what ``--save-learned`` writes)."""
    check_learnable(artifact)
    chip = target(artifact.target)
    output = data.check_model(artifact.graph)
    x_learn, y_learn = data.learning_stream()
    if limit is not None:
        x_learn, y_learn = x_learn[:limit], y_learn[:limit]
    given = {k: v for k, v in (options or {}).items() if v is not None}
    say = report or (lambda _: None)

    def score(art: Artifact, what: str) -> tuple[dict[str, float], dict[str, Any]]:
        say(f"scoring {what} on {len(data.x_test)} test samples")
        rec = chip.run(art, task_inputs(art.graph, data.x_test), probes=[], **given)
        pred = predict(rec.outputs[output], data.decision_steps)
        return class_scores(pred, data.y_test, data.new_classes), rec.info

    before, _ = score(artifact, "before learning")
    say(f"learning on chip from {len(x_learn)} labelled samples (one at a time)")
    start = time.perf_counter()
    rec = chip.run(artifact, task_inputs(artifact.graph, x_learn, y_learn), probes=[], progress=progress,
                   learn=True, **{k: v for k, v in given.items() if k != "lanes"})
    learn_s = time.perf_counter() - start
    learned = chip.learned(artifact, rec)
    online = predict(rec.outputs[output], data.decision_steps)
    after, info = score(learned, "after learning")
    steps = len(x_learn) * x_learn.shape[1]
    result = {
        "backend": artifact.target, "precision": artifact.precision, "task": data.name,
        "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
        **{f"{k}_before": v for k, v in before.items() if k != "accuracy"},
        **{k: v for k, v in after.items() if k != "accuracy"},
        "learning_samples": int(len(x_learn)), "learning_seconds": round(learn_s, 3),
        "learning_steps_per_second": round(rec.info.get("steps_per_second", steps / learn_s), 1),
        "online_accuracy": float(np.mean(online == y_learn)),
        "curve": online_curve(online, y_learn),
        "test_samples": int(len(data.x_test)), "plastic": plastic_connections(artifact.graph),
        "learn_plan": rec.info.get("plan"), "test_plan": info.get("plan"),
    }
    return result, learned
