"""Training throughput of the torch backend: milliseconds per time step of GraphNetwork's
forward pass (no gradient, as in evaluation) and of forward + backward (the gradient of
one BPTT update), for zoo models at two batch sizes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_throughput.py [--json]
        [--models digits-mlp lsnn-cue digits-conv] [--batch 8 64] [--steps 100]
        [--repeats 3] [--device cpu]

Each row: float32, the default surrogate, T input steps of Bernoulli spikes (p = 0.2 per
channel), and the loss the bptt method uses (cross-entropy of the class scores averaged
over all steps, summed over the batch). A time is the minimum over ``--repeats`` runs
after one warm-up run, divided by T. On the CPU it is the process's CPU time (one thread:
OMP_NUM_THREADS=1 and torch.set_num_threads(1)), which other jobs on a shared machine
disturb far less than the wall clock; the wall-clock times are given as well. On CUDA
both are wall-clock, synchronised. The models are small, so a step costs per-operation
overhead more than arithmetic: ``b/8`` is a row's time over the same model's time at the
smallest batch (1.0 would be pure overhead, the batch ratio pure arithmetic).

To measure another version of the code (say, the commit before a change), run the script
against a clone of it. The editable install maps ``neuromorph.backends`` and
``neuromorph.models`` to this checkout whatever PYTHONPATH says, so link them in the clone
(the script prints the files it measures and refuses a mixed tree):

    git clone -q . /tmp/before
    ln -s ../backends /tmp/before/neuromorph/backends
    ln -s ../models /tmp/before/neuromorph/models
    PYTHONPATH=/tmp/before OMP_NUM_THREADS=1 .venv/bin/python benchmarks/training_throughput.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

MODELS = ("digits-mlp", "lsnn-cue", "digits-conv")


def measured_tree() -> str:
    """The checkout the measured code comes from; exits if its packages come from two."""
    import neuromorph
    import neuromorph.backends
    import neuromorph.models

    packages = (neuromorph, neuromorph.backends, neuromorph.models)  # each a folder of the checkout
    roots = {os.path.dirname(os.path.dirname(os.path.realpath(str(p.__file__)))) for p in packages}
    if len(roots) != 1:
        sys.exit("the measured code comes from more than one checkout: "
                 + ", ".join(f"{p.__name__} {p.__file__}" for p in packages)
                 + " (link backends/ and models/ into the clone's neuromorph/: see the docstring)")
    return roots.pop()


def one_row(name: str, batch: int, steps: int, repeats: int, device: str) -> dict[str, Any]:
    import numpy as np
    import torch

    import neuromorph as nm
    from neuromorph.backends.torch.network import GraphNetwork
    from neuromorph.streams import class_scores

    graph = nm.models.get(name)
    net = GraphNetwork(graph, dt=graph.dt).to(device)
    rng = np.random.default_rng(0)
    x = torch.as_tensor((rng.random((batch, steps, *graph.shape("input"))) < 0.2).astype(np.float32), device=device)
    n_classes = graph.shape(graph.outputs[0])[0]
    labels = torch.as_tensor(rng.integers(0, n_classes, batch), device=device)
    decision = slice(0, steps)
    cuda = torch.device(device).type == "cuda"

    def forward() -> None:
        with torch.no_grad():
            net(x)

    def forward_backward() -> None:
        net.zero_grad()
        out = net(x)[graph.outputs[0]]
        torch.nn.functional.cross_entropy(class_scores(out, decision), labels, reduction="sum").backward()

    def best(run: Any) -> tuple[float, float]:
        """(CPU seconds, wall seconds), each the minimum over the repeats."""
        run()  # warm-up
        cpu, wall = [], []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            c0, w0 = time.process_time(), time.perf_counter()
            run()
            if cuda:
                torch.cuda.synchronize()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        return min(cpu), min(wall)

    fwd_cpu, fwd_wall = best(forward)
    fb_cpu, fb_wall = best(forward_backward)
    per_step = 1000.0 / steps
    main_fwd, main_fb = (fwd_wall, fb_wall) if cuda else (fwd_cpu, fb_cpu)
    return {"model": name, "batch": batch, "steps": steps, "device": device,
            "fwd_ms": round(main_fwd * per_step, 4), "fwd_bwd_ms": round(main_fb * per_step, 4),
            "fwd_wall_ms": round(fwd_wall * per_step, 4), "fwd_bwd_wall_ms": round(fb_wall * per_step, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of a table')
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    tree = measured_tree()
    rows = [one_row(m, b, args.steps, args.repeats, args.device) for m in args.models for b in args.batch]
    for row in rows:  # cost of a bigger batch relative to the smallest one
        base = min((r for r in rows if r["model"] == row["model"]), key=lambda r: r["batch"])
        row["fwd_vs_smallest_batch"] = round(row["fwd_ms"] / base["fwd_ms"], 2)
        row["fwd_bwd_vs_smallest_batch"] = round(row["fwd_bwd_ms"] / base["fwd_bwd_ms"], 2)
    if args.json:
        print(json.dumps({"tree": tree, "torch": torch.__version__, "rows": rows}))
        return 0
    clock = "wall clock" if args.device.startswith("cuda") else "process CPU time"
    b0 = min(args.batch)
    print(f"code measured: {tree} (torch {torch.__version__}, {args.device}, {clock}, min of {args.repeats})")
    print(f"{'model':<12} {'batch':>5} {'fwd ms/step':>12} {'fwd+bwd ms/step':>16} {f'fwd b/{b0}':>9} "
          f"{f'f+b b/{b0}':>9} {'wall fwd':>9} {'wall f+b':>9}")
    for r in rows:
        print(f"{r['model']:<12} {r['batch']:>5} {r['fwd_ms']:>12.3f} {r['fwd_bwd_ms']:>16.3f} "
              f"{r['fwd_vs_smallest_batch']:>9.2f} {r['fwd_bwd_vs_smallest_batch']:>9.2f} "
              f"{r['fwd_wall_ms']:>9.3f} {r['fwd_bwd_wall_ms']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
