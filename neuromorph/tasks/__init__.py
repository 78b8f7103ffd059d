"""Deterministic, download-free classification tasks for spiking networks.

No internet at run time: every task is generated or ships inside an installed package
(scikit-learn's digits). numpy only, so any backend can use them. The same ``seed``
gives bit-identical arrays (``np.random.default_rng(seed)``, never global state)::

    from neuromorph.tasks import load
    ds = load("digits", encoding="latency", input_shape=(1, 8, 8))
    ds.x_train.shape   # (1437, 16, 1, 8, 8)

Tasks (see each module's docstring): ``digits``, ``randman``, ``cue-accumulation``,
``digits-incremental``.
"""
from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import NeuromorphError
from . import cue, digits, digits_incremental, randman
from .base import DT, Dataset, TaskInfo

_MAKERS: dict[str, Callable[[int, dict[str, Any]], Dataset]] = {
    digits.NAME: digits.make,
    randman.NAME: randman.make,
    cue.NAME: cue.make,
    digits_incremental.NAME: digits_incremental.make,
}
_FOOTPRINTS = {m.NAME: m.footprint for m in (digits, randman, cue, digits_incremental)}

BYTES_PER_VALUE = 4 * 3
"""float32 data, and room for the generators' intermediate arrays (random draws in
float64, masks): what one value of a task's data costs while it is built, at most."""

TASKS: dict[str, TaskInfo] = {
    m.NAME: m.INFO._replace(defaults=MappingProxyType(dict(m.INFO.defaults)))
    for m in (digits, randman, cue, digits_incremental)
}
"""Task name -> description, input shape and classes (with default options), defaults."""


def load(name: str, *, seed: int = 0, input_shape: Sequence[int] | None = None,
         **options: Any) -> Dataset:
    """Build task ``name`` with ``options`` (see ``TASKS[name].defaults``).

    ``input_shape`` re-lays each time step (e.g. digits as (64,) or (1, 8, 8)); it must
    have as many elements as the task's own shape. Bad names, options or shapes raise
    :class:`~neuromorph.errors.NeuromorphError` with a one-line message.
    """
    if name not in TASKS:
        raise NeuromorphError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    info = TASKS[name]
    unknown = sorted(set(options) - set(info.defaults))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in info.defaults.items())
        raise NeuromorphError(
            f"task {name!r}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise NeuromorphError(f"task {name!r}: seed must be an integer >= 0, got {seed!r}")
    merged = {**info.defaults, **options}
    _check_size(name, merged)
    ds = _MAKERS[name](int(seed), merged)
    if input_shape is None:
        return ds
    shape = _check_shape(name, input_shape, ds.input_shape)
    n, steps = ds.x_train.shape[:2]
    learn = None if ds.x_learn is None else ds.x_learn.reshape(len(ds.x_learn), steps, *shape)
    return replace(ds, x_train=ds.x_train.reshape(n, steps, *shape),
                   x_test=ds.x_test.reshape(len(ds.x_test), steps, *shape), x_learn=learn)


_PREPARE: dict[str, Callable[[Any, dict[str, Any]], Any]] = {
    digits_incremental.NAME: digits_incremental.prepare,
}


def prepare(name: str, graph: Any, options: dict[str, Any]) -> Any:
    """A model trained on task ``name`` made ready for what the task does after
    deployment (digits-incremental: the readout learns new classes on chip); most tasks
    need nothing and get the model back unchanged."""
    step = _PREPARE.get(name)
    return graph if step is None else step(graph, options)


PROVENANCE = "trained_on"
"""The model-file metadata key under which ``train`` records the task it trained on."""


def provenance(name: str, seed: int, options: dict[str, Any], steps: int) -> dict[str, Any]:
    """What a trained model remembers of its data: task, seed, the options given and the
    steps per sample, so that compile, run and verify can rebuild the same data."""
    return {"task": name, "seed": int(seed), "options": {**options, "steps": int(steps)}}


def recorded(graph: Any) -> dict[str, Any] | None:
    """The task a model was trained on (``provenance``), or None. The metadata comes from
    a file: anything malformed is a one-line error rather than a guess."""
    record = graph.metadata.get(PROVENANCE)
    if record is None:
        return None
    ok = (isinstance(record, dict) and record.get("task") in TASKS
          and isinstance(record.get("seed"), int) and not isinstance(record.get("seed"), bool)
          and record["seed"] >= 0 and isinstance(record.get("options"), dict)
          and set(record["options"]) <= set(TASKS[record["task"]].defaults))
    if not ok:
        raise NeuromorphError(f"the model's metadata '{PROVENANCE}' is malformed (expected task, seed "
                              "and that task's options); give --task explicitly")
    return record


def _check_size(name: str, options: dict[str, Any]) -> None:
    """Refuse, before building it, a data set bigger than streams.MEMORY_BOUND. Options that
    are not positive integers are left to the task's own one-line checks."""
    from ..streams import check_memory

    try:
        dims = [int(d) for d in _FOOTPRINTS[name](options)]
    except (TypeError, ValueError, KeyError, OverflowError):  # inf, NaN, text: the task refuses
        return
    if any(d < 1 for d in dims):
        return
    samples, steps, values = dims
    check_memory(samples * steps * values * BYTES_PER_VALUE,
                 f"task {name!r}: {samples} samples x {steps} steps x {values} values")


def _check_shape(name: str, shape: Any, own: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints with as many elements as ``own``."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    if dims is None or not dims or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in dims):
        raise NeuromorphError(
            f"task {name!r}: input_shape must be a tuple of positive integers, got {shape!r}")
    dims = tuple(int(d) for d in dims)
    if int(np.prod(dims)) != int(np.prod(own)):
        raise NeuromorphError(
            f"task {name!r}: input_shape {dims} has {int(np.prod(dims))} elements, but each "
            f"time step has {int(np.prod(own))} (shape {own})")
    return dims


__all__ = ["DT", "Dataset", "PROVENANCE", "TASKS", "TaskInfo", "load", "prepare", "provenance", "recorded"]
