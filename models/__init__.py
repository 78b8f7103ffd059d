"""The model zoo: models defined once against the IR API, each made for a task.

``get(name, seed=0)`` builds a fresh Graph; ``ZOO`` lists the entries; ``resolve(spec)``
reads a model file or builds a zoo model, as every command's MODEL argument does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..errors import NeuromorphError
from ..ir import Graph
from . import conv, feedforward, lsnn


@dataclass(frozen=True)
class ZooEntry:
    name: str
    task: str
    description: str
    build: Callable[[int], Graph]


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("digits-mlp", "digits",
                 "64-256-10 feed-forward LIF network with a leaky-integrator readout (8x8 digits)",
                 feedforward.digits_mlp),
        ZooEntry("digits-conv", "digits",
                 "small convolutional SNN: conv 3x3 (8 ch) -> LIF -> sum-pool 2x2 -> dense -> LI readout",
                 conv.digits_conv),
        ZooEntry("randman-mlp", "randman",
                 "20-128-10 feed-forward LIF network for the Randman spike-timing task",
                 feedforward.randman_mlp),
        ZooEntry("digits-incremental", "digits-incremental",
                 "64-512-10 LIF network trained on digits 0-4 whose readout learns 5-9 on chip (delta rule)",
                 feedforward.digits_incremental),
        ZooEntry("lsnn-cue", "cue-accumulation",
                 "recurrent LSNN (50 LIF + 50 ALIF, delayed recurrent loop) with a 2-class LI readout (e-prop evidence accumulation)",
                 lsnn.lsnn_cue),
    )
}


def get(name: str, seed: int = 0) -> Graph:
    entry = ZOO.get(name)
    if entry is None:
        raise NeuromorphError(f"unknown zoo model '{name}' (known: {', '.join(ZOO)})")
    return entry.build(seed)


def resolve(spec: str) -> Graph:
    """A model file path, or the name of a zoo model (a file of that name wins). Only a
    regular file is read: a FIFO or a device is refused unopened (documents.file_kind)."""
    from ..model_file import load
    from ..documents import file_kind

    if file_kind(spec) == "missing" and spec in ZOO:
        return get(spec)
    return load(spec)


def default_for_task(task: str) -> str:
    """The zoo model a task trains by default (the first entry made for it)."""
    for entry in ZOO.values():
        if entry.task == task:
            return entry.name
    raise NeuromorphError(f"no zoo model for task '{task}'")
