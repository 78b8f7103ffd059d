"""What every task returns (:class:`Dataset`) and the option checks they share.

numpy only: a task must be usable by every backend (torch, Lava, plain numpy)
without importing any of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..discretize import DEFAULT_DT
from ..errors import NeuromorphError

DT: float = DEFAULT_DT
"""Seconds per time step that every task is defined for (rates in Hz assume it)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of spike (or current) sequences, ready for any backend.

    ``x_*`` is float32 ``[N, T, *input_shape]``; ``y_*`` int64 ``[N]``. A readout is
    scored on its output averaged over ``decision_steps`` (argmax = predicted class).
    ``x_learn``/``y_learn``: the labelled stream a deployed network learns from on chip
    (``neuromorph run --learn``), in the order it is played; None: the train split.
    ``new_classes``: classes the off-chip training never saw (class-incremental tasks),
    scored apart from the others after on-chip learning.
    ``eq=False``: comparing arrays with ``==`` has no single truth value.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    dt: float
    decision_steps: slice
    description: str
    x_learn: np.ndarray | None = None
    y_learn: np.ndarray | None = None
    new_classes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for split in ("train", "test", "learn"):
            if split == "learn" and self.x_learn is None:
                continue
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim < 3 or y.ndim != 1 or len(x) != len(y):
                raise NeuromorphError(
                    f"dataset {self.name!r}: x_{split} {x.shape} must be [N, T, *input_shape] "
                    f"and y_{split} {y.shape} must be [N]")
        if self.x_learn is not None and self.x_learn.shape[1:] != self.x_train.shape[1:]:
            raise NeuromorphError(f"dataset {self.name!r}: the learning stream's samples "
                                  f"{self.x_learn.shape[1:]} differ in shape from the train samples")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise NeuromorphError(
                f"dataset {self.name!r}: train samples {self.x_train.shape[1:]} and test "
                f"samples {self.x_test.shape[1:]} differ in shape")

    @property
    def steps(self) -> int:
        """Number of time steps T per sample."""
        return int(self.x_train.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one time step of one sample."""
        return tuple(int(n) for n in self.x_train.shape[2:])

    def check_model(self, graph: Any) -> str:
        """Refuse a model (an IR Graph) that cannot take this data set: one Input of the
        task's shape, one Output with a unit per class. Returns the Output's name."""
        from ..ir.plasticity import learning_ports

        labels, errors = learning_ports(graph)  # on-chip learning's own ports: not the task's
        inputs = [n for n in graph.inputs if n not in labels]
        outputs = [n for n in graph.outputs if n not in errors]
        if len(inputs) != 1:
            raise NeuromorphError(f"task {self.name!r} needs a model with exactly one Input node")
        if tuple(graph.shape(inputs[0])) != self.input_shape:
            raise NeuromorphError(f"model input '{inputs[0]}' has shape {graph.shape(inputs[0])} "
                                  f"but task {self.name!r} gives {self.input_shape}")
        n_out = int(np.prod(graph.shape(outputs[0]))) if len(outputs) == 1 else -1
        if n_out != self.n_classes:
            raise NeuromorphError(f"the model's output has {n_out} units but task {self.name!r} "
                                  f"has {self.n_classes} classes (one Output, one unit per class)")
        return outputs[0]

    def learning_stream(self) -> tuple[np.ndarray, np.ndarray]:
        """What on-chip learning plays: the task's learning stream, else its train split."""
        if self.x_learn is None:
            return self.x_train, self.y_train
        return self.x_learn, self.y_learn  # type: ignore[return-value]

    def chance(self) -> float:
        """Test accuracy of always predicting the most frequent test class."""
        counts = np.bincount(self.y_test, minlength=self.n_classes)
        return float(counts.max() / counts.sum())


class TaskInfo(NamedTuple):
    """What :data:`TASKS` says about a task (shape and classes with default options)."""

    description: str
    input_shape: tuple[int, ...]
    n_classes: int
    defaults: Mapping[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(task: str, name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, else a one-line NeuromorphError."""
    if not _is_int(value) or value < minimum:
        raise NeuromorphError(
            f"task {task!r}: option {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(task: str, name: str, value: Any, low: float, high: float,
                low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or (low, high] with ``low_open``)."""
    ok = (_is_int(value) or isinstance(value, (float, np.floating))) and np.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise NeuromorphError(
            f"task {task!r}: option {name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_choice(task: str, name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise NeuromorphError(
            f"task {task!r}: option {name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def round_half_up(x: np.ndarray) -> np.ndarray:
    """Nearest integer, halves rounded up (np.rint would round 7.5 and 8.5 both to 8)."""
    return np.floor(np.asarray(x) + 0.5).astype(np.int64)
