"""``digits-incremental``: learn new classes on the chip after deployment.

The user story of on-chip learning (docs/onchip-learning.md): a network is trained off
chip on the digits ``0 .. old_classes-1`` of scikit-learn's 8x8 digits (the ``digits``
task's fixed split and encodings), deployed, and its readout then learns the remaining
classes on the (simulated) chip from one pass over a labelled stream
(``neuromorph run ARTIFACT --task digits-incremental --learn``). It is tested on all ten.

- train split: the training samples of the old classes (what ``neuromorph train`` sees);
- test split: all 360 test samples, ten classes;
- learning stream: the training samples, shuffled with ``seed``; ``stream="all"`` plays
  every class (the old ones keep being seen, as in a deployment that keeps running),
  ``stream="new"`` only the new classes (strict class-incremental learning: nothing
  reminds the readout of the old classes); ``per_class=N`` keeps the first N examples
  of each class of the stream (0: all).

A model for this task is prepared for learning when it is trained
(:func:`prepare`): the readout rows of the new classes start at zero (the off-chip
training never saw those classes), and the readout connection gets the delta rule with
its error computed on the chip from a ``label`` input (``neuromorph.build.delta_rule``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NeuromorphError
from . import digits
from .base import DT, Dataset, TaskInfo, check_choice, check_float, check_int

NAME = "digits-incremental"
STREAMS = ("all", "new")

INFO = TaskInfo(
    description="digits 0-4 trained off chip, 5-9 learned on chip from a labelled stream; "
                "tested on all ten (on-chip learning)",
    input_shape=(64,),
    n_classes=10,
    defaults={**digits.INFO.defaults, "old_classes": 5, "stream": "all", "per_class": 0},
)

LEARNING_RATE = 2.0 ** -17 / DT
"""The delta rule's rate in 1/s: ``dt*lr = 2**-17`` per step, a power of two so that
the fixed-point engine holds it exactly (docs/onchip-learning.md). Chosen on the numpy
model of the rule (one pass over the stream, the 64-512-10 zoo model): 5e-6 per step
learns the new classes more slowly, 1e-5 costs the old classes more."""

TARGET = 10.0
"""The readout membrane the delta rule drives the labelled class towards (the others
towards 0): the scale of the old classes' trained readout."""


def footprint(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(samples, steps, values per step) that ``make`` would allocate: the digits, plus
    the learning stream (at most the train split again)."""
    return 1797 + 1437, options["steps"], 64


def make(seed: int, options: dict[str, Any]) -> Dataset:
    old = check_int(NAME, "old_classes", options["old_classes"], 1)
    if old > 9:
        raise NeuromorphError(f"task {NAME!r}: option old_classes must be 1..9 (one new class at least), got {old}")
    stream = check_choice(NAME, "stream", options["stream"], STREAMS)
    per_class = check_int(NAME, "per_class", options["per_class"], 0)
    base = digits.make(seed, {k: options[k] for k in digits.INFO.defaults})
    seen = base.y_train < old
    order = np.random.default_rng(seed).permutation(len(base.y_train))
    if stream == "new":
        order = order[base.y_train[order] >= old]
    if per_class:
        kept = np.zeros(10, dtype=np.int64)
        keep = []
        for i in order:
            c = base.y_train[i]
            if kept[c] < per_class:
                kept[c] += 1
                keep.append(i)
        order = np.asarray(keep, dtype=np.int64)
    check_float(NAME, "max_prob", options["max_prob"], 0.0, 1.0, low_open=True)
    return Dataset(
        name=NAME,
        x_train=base.x_train[seen], y_train=base.y_train[seen],
        x_test=base.x_test, y_test=base.y_test,
        n_classes=10, dt=DT, decision_steps=base.decision_steps,
        description=f"{base.description}; classes 0-{old - 1} off chip, {old}-9 on chip "
                    f"(stream: {stream}, {len(order)} samples)",
        x_learn=base.x_train[order], y_learn=base.y_train[order],
        new_classes=tuple(range(old, 10)),
    )


def prepare(graph: Any, options: dict[str, Any]) -> Any:
    """The trained model made ready to learn the new classes on chip: the readout rows of
    the classes it never saw set to zero, and the delta rule on the readout connection."""
    from ..build import delta_rule

    old = int({**INFO.defaults, **options}["old_classes"])
    return delta_rule(graph, lr=LEARNING_RATE, target=TARGET, zero_rows=range(old, 10))
