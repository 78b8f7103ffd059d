"""How fast each simulator runs the zoo models: time steps per second, per sample.

    .venv/bin/python benchmarks/simulators.py [--samples 8] [--steps 100] [--models digits-mlp,...] [--json]

Prints one row per model: the numpy reference (neuromorph.simulate), the torch backend
(float32, batched), the numpy chip-time netlist model (float and fixed point, all samples
side by side) and the Lava deployment (floating_pt and fixed_pt, Loihi2SimCfg, start-up
included): one sample at a time, and fixed point with the samples in lanes side by side
(asynchronous; benchmarks/deploy_throughput.py compares the plans on whole data sets).
``--json`` prints ``{"rows": [...]}`` (one row per model, the same rates in steps/s per sample).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from neuromorph.backends.loihi2.lava.runner import Plan, run_lava
from neuromorph.backends.loihi2.chip_model import simulate_netlist
from neuromorph.backends.loihi2.quantize import simulate_fixed
from neuromorph.backends.torch import GraphNetwork
from neuromorph.compile import compile_graph
from neuromorph.models import ZOO
from neuromorph.simulate import simulate


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--models", default=",".join(ZOO))
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of a table')
    args = parser.parse_args()
    n, t = args.samples, args.steps
    header = ("model", "numpy ref", "torch f32", "netlist f", "netlist fx", "lava float", "lava fixed",
              "lava lanes fx")
    keys = ("numpy_ref", "torch_f32", "netlist_float", "netlist_fixed", "lava_float", "lava_fixed",
            "lava_lanes_fixed")
    rows = []
    table = sys.stderr if args.json else sys.stdout  # with --json the table is progress on stderr
    print(f"steps/s per sample ({n} samples x {t} steps; higher is faster)", file=table)
    print("  ".join(f"{h:>11}" for h in header), file=table)
    for name in args.models.split(","):
        graph = ZOO[name].build(0)
        x = (np.random.default_rng(0).random((n, t, *graph.shape("input"))) < 0.2).astype(np.float64)
        floating = compile_graph(graph, precision="float")
        fixed = compile_graph(graph, precision="fixed", calibration={"input": x})
        net = GraphNetwork(graph)
        with torch.no_grad():
            torch_s = timed(lambda: net(torch.as_tensor(x, dtype=torch.float32)))
        seconds = [
            timed(lambda: simulate(graph, x)),
            torch_s,
            timed(lambda: simulate_netlist(floating.payload.netlist, x)),
            timed(lambda: simulate_fixed(fixed.payload.quantized, x)),
            timed(lambda: run_lava(floating.payload.netlist, x, precision="float")),
            timed(lambda: run_lava(fixed.payload.netlist, x, precision="fixed", quantized=fixed.payload.quantized)),
            timed(lambda: run_lava(fixed.payload.netlist, x, precision="fixed", quantized=fixed.payload.quantized,
                                   plan=Plan(n, asynchronous=True))),
        ]
        rates = [n * t / s for s in seconds]
        rows.append({"model": name, "samples": n, "steps": t, **{k: round(r, 1) for k, r in zip(keys, rates)}})
        print(f"{name:>11}  " + "  ".join(f"{r:>11.0f}" for r in rates), file=table, flush=True)
    if args.json:
        print(json.dumps({"unit": "time steps per second per sample (start-up included)", "rows": rows}))


if __name__ == "__main__":
    main()
