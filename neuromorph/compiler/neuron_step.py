"""One chip step of a neuron population, float or fixed point (numpy only).

Shared by the Lava process models (backends/lava) and the numpy netlist simulator, so
the neuron arithmetic is written once; the synapses (Lava's Dense / DelayDense) are
Lava's own and are checked against the simulator's copy of their arithmetic in tests.
"""
from __future__ import annotations

import numpy as np


def init_float(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = params["v_init"].shape[0]
    return {"u": np.zeros(n), "v": params["v_init"].astype(np.float64).copy(), "a": np.zeros(n)}


def step_float(params: dict[str, np.ndarray], state: dict[str, np.ndarray], a_in: np.ndarray,
               spiking: bool) -> np.ndarray:
    """Lava-float style update in shifted coordinates (see compiler/netlist.py)."""
    state["u"] = state["u"] * (1.0 - params["du"]) + a_in + params["bias_u"]
    v = state["v"] * (1.0 - params["dv"]) + state["u"] + params["bias_v"]
    if not spiking:
        state["v"] = v
        return np.zeros_like(v)
    s = v > params["vth"] + params["beta"] * state["a"]
    state["v"] = np.where(s, 0.0, v)
    state["a"] = state["a"] * (1.0 - params["da"]) + s
    return s.astype(np.float64)
