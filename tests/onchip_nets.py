"""Networks and references shared by the on-chip learning tests (test_onchip_eprop.py,
test_onchip_stdp.py, test_learning_async.py)."""
from __future__ import annotations

import numpy as np

from neuromorph.ir import LI, LIF, Graph, Input, Linear, Output
from neuromorph.simulate import simulate

DT = 1e-3


def ir_samples(g: Graph, inputs: dict) -> tuple[list, dict]:
    """The IR (simulate) sample after sample, each from the weights the previous ended with
    (the plastic connection 'w')."""
    from neuromorph.backends.loihi2.target import model_with_weights

    weights, outs = [], {}
    for j in range(len(inputs["x"])):
        res = simulate(g, {k: v[j] for k, v in inputs.items()}, record=["w.weight"])
        weights.append(res["w.weight"][-1])
        for k in g.outputs:
            outs.setdefault(k, []).append(res[k])
        g = model_with_weights(g, {"w": weights[-1]})
    return weights, {k: np.stack(v) for k, v in outs.items()}


def recurrent_net(rng: np.random.Generator, n_in: int = 5, n: int = 6, n_out: int = 3) -> Graph:
    """x -> w_in -> h (LIF, reset by subtraction) with h -(1)-> w_rec -> h; h -> w_out -> ro (LI) -> y."""
    w_rec = rng.normal(0.0, 0.3, (n, n))
    np.fill_diagonal(w_rec, 0.0)
    nodes = {"x": Input((n_in,)), "w_in": Linear(rng.uniform(0.0, 0.6, (n, n_in))),
             "h": LIF(tau=0.02, r=25.0, v_threshold=np.linspace(0.8, 1.2, n), v_leak=0.1, reset="subtract"),
             "w_rec": Linear(w_rec), "w_out": Linear(rng.normal(0.0, 0.5, (n_out, n))), "ro": LI(tau=0.03, r=10.0),
             "y": Output()}
    edges = [("x", "w_in"), ("w_in", "h"), ("h", "w_rec", 1), ("w_rec", "h"), ("h", "w_out"), ("w_out", "ro"),
             ("ro", "y")]
    return Graph(nodes, edges, dt=DT)
