"""``randman``: random-manifold spike-timing classification (Zenke & Vogels, 2021).

Written from the idea of F. Zenke's ``randman`` package, not from its code. Each class
is a smooth random map from a ``dim_manifold``-dimensional latent coordinate z in
[0, 1)^d to one firing time per input unit. A sample draws z uniformly; unit u then
fires exactly once, at step ``round_half_up(f_cu(z) * (steps - 1))``.

Per class c and unit u, ``f_cu(z) = prod_d g_cud(z_d)`` with
``g(z) = sum_{k=1..K} a_k k^-alpha sin(2 pi (k b_k z + c_k))`` and a, b, c ~ U[0, 1):
components of frequency up to k have amplitude ~k^-alpha, so ``alpha`` sets smoothness.
K is where k^-alpha falls below 1e-3 (32 for alpha = 2), at most 128. Each f_cu is then
min-max normalised to [0, 1] over the class's samples (as the original does), so every
unit's firing times span the whole window in every class.

Because every unit fires exactly once, spike counts carry no information: only timing
separates the classes. Each class keeps 80% of its samples for training, 20% for test.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import NeuromorphError
from .base import DT, Dataset, TaskInfo, check_float, check_int, round_half_up

NAME = "randman"
TEST_FRACTION = 0.2
MAX_COMPONENTS = 128

INFO = TaskInfo(
    description="random smooth manifolds in spike-time space (Zenke & Vogels 2021): "
                "every unit fires once per sample, only timing carries the class",
    input_shape=(20,),
    n_classes=10,
    defaults={"n_classes": 10, "n_units": 20, "dim_manifold": 1, "samples_per_class": 100,
              "steps": 100, "alpha": 2.0},
)


def n_components(alpha: float) -> int:
    """Sinusoids per random function: until amplitude k^-alpha drops below 1e-3."""
    return min(MAX_COMPONENTS, max(1, math.ceil(1000.0 ** (1.0 / alpha))))


def manifold_values(rng: np.random.Generator, z: np.ndarray, n_units: int,
                     alpha: float) -> np.ndarray:
    """One class's random manifold evaluated at ``z`` [S, d] -> [S, n_units] in [0, 1]."""
    dim = z.shape[1]
    k = np.arange(1, n_components(alpha) + 1, dtype=np.float64)
    amplitude = rng.random((n_units, dim, k.size)) * k ** -alpha
    frequency = rng.random((n_units, dim, k.size)) * k
    phase = rng.random((n_units, dim, k.size))
    values = np.ones((z.shape[0], n_units))
    for d in range(dim):  # one latent dimension at a time keeps memory at S*U*K
        arg = 2 * np.pi * (z[:, None, d, None] * frequency[None, :, d] + phase[None, :, d])
        values *= (amplitude[None, :, d] * np.sin(arg)).sum(axis=-1)
    low, high = values.min(axis=0), values.max(axis=0)
    return (values - low) / np.maximum(high - low, 1e-12)


def footprint(options: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(samples, steps, values per step) that ``make`` would allocate."""
    o = options
    return o["n_classes"] * o["samples_per_class"], o["steps"], o["n_units"]


def make(seed: int, options: dict[str, Any]) -> Dataset:
    """Generate the classes from ``seed`` and split each 80/20."""
    n_classes = check_int(NAME, "n_classes", options["n_classes"], 2)
    n_units = check_int(NAME, "n_units", options["n_units"], 1)
    dim = check_int(NAME, "dim_manifold", options["dim_manifold"], 1)
    per_class = check_int(NAME, "samples_per_class", options["samples_per_class"], 5)
    steps = check_int(NAME, "steps", options["steps"], 2)
    alpha = check_float(NAME, "alpha", options["alpha"], 0.0, 100.0, low_open=True)
    if dim > 8:
        raise NeuromorphError(f"task {NAME!r}: option dim_manifold must be <= 8, got {dim}")

    rng = np.random.default_rng(seed)
    n_test = int(round(TEST_FRACTION * per_class))
    times, labels = [], []
    for c in range(n_classes):
        z = rng.random((per_class, dim))
        times.append(round_half_up(manifold_values(rng, z, n_units, alpha) * (steps - 1)))
        labels.append(np.full(per_class, c, dtype=np.int64))
    t = np.stack(times)    # [C, S, U]
    y = np.stack(labels)   # [C, S]
    split = per_class - n_test
    train = rng.permutation(n_classes * split)
    test = rng.permutation(n_classes * n_test)
    t_train, y_train = t[:, :split].reshape(-1, n_units)[train], y[:, :split].ravel()[train]
    t_test, y_test = t[:, split:].reshape(-1, n_units)[test], y[:, split:].ravel()[test]
    return Dataset(
        name=NAME,
        x_train=raster(t_train, steps),
        y_train=y_train,
        x_test=raster(t_test, steps),
        y_test=y_test,
        n_classes=n_classes,
        dt=DT,
        decision_steps=slice(0, steps),
        description=f"randman: {n_classes} classes, {n_units} units, {dim}-d manifolds, "
                    f"alpha={alpha:g}, {steps} steps, {per_class} samples per class",
    )


def raster(times: np.ndarray, steps: int) -> np.ndarray:
    """Spike times [N, U] (one per unit) -> float32 raster [N, steps, U]."""
    n, units = times.shape
    x = np.zeros((n, steps, units), dtype=np.float32)
    x[np.arange(n)[:, None], times, np.arange(units)[None, :]] = 1.0
    return x
