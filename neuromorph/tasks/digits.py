"""``digits``: scikit-learn's bundled 8x8 handwritten digits, encoded in time.

The data ship inside scikit-learn (no download). The train/test split is fixed and does
not depend on ``seed``, so accuracies from different seeds/runs are comparable:
``train_test_split(X, y, test_size=360, stratify=y, random_state=0)`` -> 1437 / 360.

Encodings of a pixel value p = pixel/16 in [0, 1] over ``steps`` steps:

- ``current``: p at every step (a constant input current, not spikes);
- ``rate``: a spike at each step with probability ``p * max_prob`` (seeded);
- ``latency``: one spike at step ``round_half_up((1 - p) * (steps - 1))`` (bright pixels
  first), none for p = 0.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import NeuromorphError
from .base import DT, Dataset, TaskInfo, check_choice, check_float, check_int, round_half_up

NAME = "digits"
ENCODINGS = ("current", "rate", "latency")
TEST_SIZE = 360
SPLIT_RANDOM_STATE = 0

INFO = TaskInfo(
    description="scikit-learn 8x8 digits (1437 train / 360 test, fixed split), "
                "encoded as constant current, rate or latency spikes",
    input_shape=(64,),
    n_classes=10,
    defaults={"steps": 16, "encoding": "current", "max_prob": 1.0},
)


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel intensities in [0, 1] and labels of the fixed split (read once per process)."""
    from sklearn.datasets import load_digits  # lazy: only this task needs scikit-learn
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    p = (digits.data / 16.0).astype(np.float32)  # k/16 is exact in float32
    y = digits.target.astype(np.int64)
    i_train, i_test = train_test_split(
        np.arange(len(y)), test_size=TEST_SIZE, stratify=y, random_state=SPLIT_RANDOM_STATE)
    arrays = (p[i_train], y[i_train], p[i_test], y[i_test])
    for a in arrays:
        a.setflags(write=False)  # shared by every call: nobody may change it
    return arrays


def _encode(p: np.ndarray, steps: int, encoding: str, max_prob: float,
            rng: np.random.Generator) -> np.ndarray:
    """``p`` [N, 64] in [0, 1] -> float32 [N, steps, 64]."""
    n, d = p.shape
    if encoding == "current":
        return np.repeat(p[:, None, :], steps, axis=1)
    if encoding == "rate":
        return (rng.random((n, steps, d)) < p[:, None, :] * max_prob).astype(np.float32)
    x = np.zeros((n, steps, d), dtype=np.float32)
    sample, pixel = np.nonzero(p > 0)
    step = round_half_up((1.0 - p[sample, pixel].astype(np.float64)) * (steps - 1))
    x[sample, step, pixel] = 1.0
    return x


def footprint(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(samples, steps, values per step) that ``make`` would allocate."""
    return 1797, options["steps"], 64


def make(seed: int, options: dict[str, Any]) -> Dataset:
    """Build the digits dataset; ``seed`` only matters for the ``rate`` encoding."""
    steps = check_int(NAME, "steps", options["steps"], 1)
    encoding = check_choice(NAME, "encoding", options["encoding"], ENCODINGS)
    max_prob = check_float(NAME, "max_prob", options["max_prob"], 0.0, 1.0, low_open=True)
    if encoding != "rate" and max_prob != 1.0:
        raise NeuromorphError(
            f"task {NAME!r}: option max_prob applies only to encoding='rate', "
            f"not {encoding!r}")
    p_train, y_train, p_test, y_test = _split()
    rng = np.random.default_rng(seed)
    return Dataset(
        name=NAME,
        x_train=_encode(p_train, steps, encoding, max_prob, rng),
        y_train=y_train.copy(),
        x_test=_encode(p_test, steps, encoding, max_prob, rng),
        y_test=y_test.copy(),
        n_classes=10,
        dt=DT,
        decision_steps=slice(0, steps),
        description=f"digits 8x8, {encoding} encoding, {steps} steps"
                    + (f", max_prob={max_prob:g}" if encoding == "rate" else ""),
    )
