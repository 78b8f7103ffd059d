"""How fast on-chip learning runs in Lava: the synchronous plan against the asynchronous one.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learning_throughput.py [--model M.json]
        [--samples 60 200] [--runs 2] [--json]

The workload: the zoo's digits-incremental model (its readout learns with the delta
rule, ``three_factor``), trained here for 1 epoch (``neuromorph train --task
digits-incremental --epochs 1``, in a child process: this one never imports torch, as
``neuromorph run`` does not), or ``--model``, compiled for Loihi 2 in fixed point
(calibrated on the task's training data, as ``neuromorph compile`` does), learning on
the first ``--samples`` samples of the task's learning split, one sample at a time as
``neuromorph run ART --learn`` does.

Rows, all from one run of this script, each the minimum of ``--runs`` (2) timings of the
whole call (building, starting, running, stopping, reading back), for each sample count:

- sync: the learning graph under LoihiProtocol (``Plan(1, asynchronous=False)``): Lava's
  runtime service drives every process through the phases of every chip step;
- async: the same graph, the same processes and messages, every process under
  AsyncProtocol (lava/learning_async.py): the default plan of a learning run.

``chip_steps_per_s`` is the chip steps over the seconds of the Lava run (compile, start,
steps, stop); ``x sync`` is the async row's rate over the sync row's of the same sample
count. ``steady_*``: the time per chip step without what a run costs whatever its length,
from the difference of the largest and the smallest sample count. ``identical``: the
async run's outputs, spike counts and learnt weights after every sample equal the sync
run's (np.array_equal). The machine is shared: read the ratios.

``--json`` prints ``{"rows": [...], "steady": {...}}``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import neuromorph as nm
from neuromorph import tasks
from neuromorph.backends.loihi2.lava.runner import Plan, run_lava
from neuromorph.compile import compile_graph
from neuromorph.learning import task_inputs

TASK = "digits-incremental"
CALIBRATION = 256
PLANS = {"sync": Plan(1, asynchronous=False), "async": Plan(1, asynchronous=True)}


def model(path: str | None, folder: Path) -> nm.Graph:
    """The model given, or the zoo's digits-incremental trained for 1 epoch (child process)."""
    if not path:
        print(f"training {TASK} for 1 epoch ...", file=sys.stderr, flush=True)
        path = str(folder / "model.json")
        subprocess.run([sys.executable, "-m", "neuromorph", "train", "--task", TASK, "--epochs", "1", "--quiet",
                        "-o", path], check=True, stdout=subprocess.DEVNULL)
    return nm.load(path)


def timed(dep: Any, inputs: dict, plan: Plan, runs: int) -> tuple[float, float, tuple]:
    """The shortest of ``runs`` learning runs: (whole call s, Lava run s, result)."""
    best, result = None, None
    for _ in range(runs):
        start = time.perf_counter()
        result = run_lava(dep.netlist, inputs, precision="fixed", quantized=dep.quantized, plan=plan, learn=True)
        whole = time.perf_counter() - start
        if best is None or whole < best[0]:
            best = (whole, result[2].seconds_run)
    return best[0], best[1], result


def identical(a: tuple, b: tuple) -> bool:
    (out_a, counts_a, info_a), (out_b, counts_b, info_b) = a, b
    return (counts_a == counts_b and all(np.array_equal(out_a[k], out_b[k]) for k in out_a)
            and all(np.array_equal(info_a.learned[k], info_b.learned[k]) for k in info_a.learned))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=f"a {TASK} model file (default: the zoo's, trained here for 1 epoch)")
    parser.add_argument("--samples", type=int, nargs="+", default=[60, 200])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="neuromorph-bench-") as tmp:
        graph = model(args.model, Path(tmp))
    data = tasks.load(TASK)
    artifact = compile_graph(graph, backend="lava", precision="fixed",  # calibrated as `neuromorph compile` does
                             calibration=task_inputs(graph, data.x_train[:CALIBRATION], data.y_train[:CALIBRATION]))
    dep = artifact.payload
    rows: list[dict[str, Any]] = []
    for n in sorted(set(args.samples)):
        inputs = task_inputs(graph, data.x_learn[:n], data.y_learn[:n])
        results = {}
        for name, plan in PLANS.items():
            whole, run_s, result = timed(dep, inputs, plan, args.runs)
            info = result[2]
            results[name] = result
            rows.append({"samples": len(inputs[graph.inputs[0]]), "plan": name, "describe": info.plan.describe(),
                         "processes": info.processes, "chip_steps": info.chip_steps, "seconds": round(whole, 3),
                         "seconds_run": round(run_s, 3), "chip_steps_per_s": round(info.chip_steps / run_s, 1)})
            print(f"  {n} samples, {name}: {whole:.2f} s, {info.chip_steps / run_s:.0f} chip steps/s",
                  file=sys.stderr, flush=True)
        same = identical(results["sync"], results["async"])
        sync_row, async_row = rows[-2], rows[-1]
        async_row["x_sync"] = round(async_row["chip_steps_per_s"] / sync_row["chip_steps_per_s"], 2)
        sync_row["identical"] = async_row["identical"] = same
    steady: dict[str, Any] = {}
    counts = sorted({r["samples"] for r in rows})
    if len(counts) >= 2:
        for name in PLANS:
            lo, hi = (next(r for r in rows if r["plan"] == name and r["samples"] == c) for c in (counts[0], counts[-1]))
            per_step = max(hi["seconds_run"] - lo["seconds_run"], 1e-9) / (hi["chip_steps"] - lo["chip_steps"])
            steady[f"{name}_ms_per_step"] = round(per_step * 1e3, 3)
            steady[f"{name}_chip_steps_per_s"] = round(1.0 / per_step, 1)
        steady["x_sync"] = round(steady["async_chip_steps_per_s"] / steady["sync_chip_steps_per_s"], 2)
    if args.json:
        print(json.dumps({"rows": rows, "steady": steady}, indent=1))
        return
    print(f"on-chip learning, {TASK}, fixed point, one sample at a time (min of {args.runs} runs)")
    print(f"{'samples':>7} {'plan':<6} {'procs':>5} {'chip steps':>10} {'seconds':>8} {'steps/s':>8} "
          f"{'x sync':>6} identical")
    for r in rows:
        print(f"{r['samples']:>7} {r['plan']:<6} {r['processes']:>5} {r['chip_steps']:>10} {r['seconds']:>8.2f} "
              f"{r['chip_steps_per_s']:>8.0f} {r.get('x_sync', ''):>6} {r['identical']}")
    if steady:
        print(f"steady state ({counts[0]} -> {counts[-1]} samples): sync {steady['sync_ms_per_step']} ms/step, "
              f"async {steady['async_ms_per_step']} ms/step (x{steady['x_sync']})")


if __name__ == "__main__":
    main()
