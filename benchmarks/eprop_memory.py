"""Peak memory and time per step of one training update, BPTT against e-prop, as the
sequence grows: BPTT keeps every step for its backward pass, e-prop keeps none.

    .venv/bin/python benchmarks/eprop_memory.py [--json] [--steps 100 1000 5000 10000] [--batch 8]

The model is the zoo's cue-accumulation LSNN (40 inputs, 50 LIF + 50 ALIF recurrent, 2 LI
readouts); the input is Bernoulli spikes (p = 0.02 per channel and step) with random
labels scored on the last 50 steps. Each row runs in a fresh process (so peaks do not
mix): it builds everything, records its resident memory, then does one update (forward,
gradients, Adam step) and reports the process's peak resident memory (``peak_mb``), its
growth over the memory before the update (``update_mb``: what the update itself needed,
the input stream included) and the time per step. One thread (OMP_NUM_THREADS=1).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

METHODS = ("bptt", "eprop")


def one_row(method: str, steps: int, batch: int) -> dict[str, float | int | str]:
    """Runs in the child process."""
    import numpy as np
    import torch

    import neuromorph as nm
    from neuromorph.backends.torch.eprop import Eprop, EpropOptions, make_plan
    from neuromorph.backends.torch.network import GraphNetwork
    from neuromorph.backends.torch.surrogate import Surrogate
    from neuromorph.streams import class_scores

    torch.set_num_threads(1)
    graph = nm.models.get("lsnn-cue")
    rng = np.random.default_rng(0)
    x = torch.as_tensor((rng.random((batch, steps, 40)) < 0.02).astype(np.float32))
    y = torch.as_tensor(rng.integers(0, 2, batch))
    decision = slice(steps - 50, steps)
    net = GraphNetwork(graph, dt=graph.dt, surrogate=Surrogate("triangle", 0.3))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    eprop = Eprop(net, make_plan(graph), EpropOptions())
    before = _rss_mb()
    start = time.perf_counter()
    optimiser.zero_grad()
    if method == "bptt":
        loss = torch.nn.functional.cross_entropy(class_scores(net(x)["output"], decision), y)
        loss.backward()
    else:
        _, grads = eprop.gradients(x, y, decision)
        eprop.apply(grads)
    optimiser.step()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "T": steps, "peak_mb": round(peak, 1), "update_mb": round(peak - before, 1),
            "ms_per_step": round(1000 * seconds / steps, 3)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 5000, 10000])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of a table')
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_row(args.child[0], int(args.child[1]), args.batch)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for method in METHODS:
        for steps in args.steps:
            proc = subprocess.run([sys.executable, __file__, "--child", method, str(steps), "--batch", str(args.batch)],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"{method} T={steps} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(proc.stdout))
            if not args.json:
                print(f"  done {method} T={steps}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": rows}))
        return 0
    print(f"one update of the lsnn-cue model, batch {args.batch}, 1 thread\n")
    print(f"{'method':<7} {'T':>6} {'peak MB':>9} {'update MB':>10} {'ms/step':>9}")
    for r in rows:
        print(f"{r['method']:<7} {r['T']:>6} {r['peak_mb']:>9.1f} {r['update_mb']:>10.1f} {r['ms_per_step']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
