"""How fast a deployed network runs in Lava, against torch and the numpy chip model.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_throughput.py [--digits-model M.json]
        [--repeat 1] [--trials 32] [--naive-samples 0] [--naive-trials 4] [--json] [--quick]

Two workloads, each compiled for Loihi 2 in fixed point:

- digits: the digits test split (360 samples x 16 steps; ``--repeat`` passes it several
  times) through a digits model (``--digits-model``, else the zoo's digits-mlp trained
  here for 3 epochs);
- cue: the zoo's LSNN (untrained, seed 0: the arithmetic and the messages are the same
  whatever the weights) on ``--trials`` cue-accumulation trials (775 steps each).

Rows, all from one run of this script, each the minimum of ``--runs`` (3) timings:
torch's batched float32 inference of the model (``backends/torch``, no gradients, one
thread; timed in a child process, so that this one, like ``neuromorph run``, never
imports torch: a parent holding torch's memory makes every fork of Lava's workers
slower), the
vectorised numpy fixed-point model of the artifact (``quantize.simulate_fixed``), Lava
one sample at a time (Lava's Dense, LoihiProtocol: one process per input, population and
connection; on the first ``--naive-samples`` / ``--naive-trials`` samples and
extrapolated linearly to all, labelled so, when fewer than all), Lava lanes synchronous,
and Lava's default plan (lanes, asynchronous: what ``neuromorph run`` uses). The lane
plan is one Lava process per input port and per population, each population's process
holding the synapses of its incoming connections as a neuron core does (lava/lanes.py:
``LaneCore``), so that the messages between processes are the spikes between cores:
3 processes and 2 messages per chip step for both workloads. Seconds are the whole call (Lava: building, starting, running,
stopping, reading back); ``x torch`` is the ratio to the torch row of the same workload.
``agreement`` compares every Lava row's outputs and spike counts with the numpy model
(bit-exact: 1.0 means identical).

``--json`` prints ``{"rows": [...]}`` and, from those rows, ``samples`` (digits),
``ratio`` (digits, default plan / torch), ``naive_ratio`` (digits, one at a time / torch,
extrapolated where the row says so), ``lsnn_ratio`` (cue, default plan / torch) and
``agreement`` (the lowest of the Lava rows), ``limit_ratio`` (digits) and ``lsnn_limit_ratio``
(cue): Lava's steady-state time per sample in the default plan over the numpy model's
time per sample. The steady state leaves out what a run costs whatever its length
(building, compiling and starting the Lava processes, stopping them): the default plan
is timed on a quarter, a half, three quarters and all of its rounds, ``--runs`` times,
the lengths interleaved (and the numpy model timed again in each round), and the slope
of a least-squares line through each length's fastest time is its time per sample (the
default-plan row also gives ``startup_s``, the line's intercept, ``steady_fit``, the
times it went through, and ``half_agreement``, the quarter run's agreement); the numpy
model's time is the fastest of all its timings. (The earlier estimate, the difference
of a half and a whole run, moved between 0.9 and 2.8 on one quiet machine in four runs
of this script.) ``--quick`` caps the one-at-a-time rows at
360 digits samples (one pass of the test split) and 4 cue trials, extrapolated, so that
``--repeat 10`` (3600 samples) stays within about two minutes on a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

import neuromorph as nm
from neuromorph import tasks
from neuromorph.backends.loihi2.lava.runner import Plan, run_lava
from neuromorph.backends.loihi2.quantize import simulate_fixed
from neuromorph.backends.loihi2.target import run_plan
from neuromorph.compile import compile_graph
from neuromorph.models import get

CALIBRATION = 256


def best(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """The shortest of ``runs`` timings of ``fn()``, and its last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def agreement(got: tuple, want: tuple) -> float:
    """Fraction of output values equal to the bit-exact model's (1.0 when the spike counts
    differ is impossible: then 0.0)."""
    (out, counts), (ref, ref_counts) = got, want
    if counts != ref_counts:
        return 0.0
    equal = sum(int(np.sum(out[k] == ref[k])) for k in ref)
    return equal / sum(ref[k].size for k in ref)


def digits_graph(path: str | None, folder: Path) -> nm.Graph:
    """The digits model given, or the zoo's digits-mlp trained for 3 epochs (by the
    ``neuromorph`` command, in a child process: this one does not import torch)."""
    if not path:
        print("training digits-mlp for 3 epochs ...", file=sys.stderr, flush=True)
        path = str(folder / "digits.json")
        subprocess.run([sys.executable, "-m", "neuromorph", "train", "--task", "digits", "--epochs", "3",
                        "--quiet", "-o", path], check=True, stdout=subprocess.DEVNULL)
    return nm.load(path)


def torch_seconds(graph: nm.Graph, x: np.ndarray, runs: int, folder: Path) -> float:
    """The torch row, timed in a child process (see the module docstring)."""
    model, data = folder / "torch_model.json", folder / "torch_x.npy"
    nm.save(graph, model)
    np.save(data, x)
    done = subprocess.run([sys.executable, __file__, "--torch-row", str(model), str(data), "--runs", str(runs)],
                          check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def torch_row(model: str, data: str, runs: int) -> None:
    """Child process: torch's batched float32 inference, one thread; prints the seconds."""
    import torch

    from neuromorph.backends.torch import GraphNetwork

    torch.set_num_threads(1)
    net = GraphNetwork(nm.load(model))
    x = torch.as_tensor(np.load(data), dtype=torch.float32)
    with torch.no_grad():
        seconds, _ = best(lambda: net(x), runs)
    print(seconds)


def workload(name: str, graph: nm.Graph, x: np.ndarray, calibration: np.ndarray, args: argparse.Namespace,
             naive: int, folder: Path) -> list[dict[str, Any]]:
    artifact = compile_graph(graph, backend="lava", precision="fixed",
                             calibration={graph.inputs[0]: calibration})
    dep = artifact.payload
    n = len(x)
    rows: list[dict[str, Any]] = []

    def row(what: str, seconds: float, **extra: Any) -> None:
        rows.append({"task": name, "samples": n, "what": what, "seconds": round(seconds, 4), **extra})
        print(f"  {name}: {what}: {seconds:.3f} s", file=sys.stderr, flush=True)

    torch_s = torch_seconds(graph, x, args.runs, folder)
    row("torch float32, batched", torch_s)
    numpy_s, ref = best(lambda: simulate_fixed(dep.quantized, x), args.runs)
    row("numpy fixed-point model, vectorised", numpy_s)

    def lava(plan: Plan, xs: np.ndarray) -> tuple:
        out, counts, _ = run_lava(dep.netlist, xs, precision="fixed", quantized=dep.quantized, plan=plan)
        return out, counts

    k = n if naive <= 0 else min(naive, n)
    seconds, got = best(lambda: lava(Plan(1), x[:k]), args.runs)
    ref_k = simulate_fixed(dep.quantized, x[:k]) if k < n else ref
    row("Lava one at a time" + (f" (extrapolated from {k} samples)" if k < n else ""), seconds * n / k,
        plan=Plan(1).describe(), extrapolated_from=k if k < n else None, agreement=agreement(got, ref_k))
    default, cores = run_plan(artifact, n, None)
    sync = Plan(default.lanes, asynchronous=False)
    seconds, got = best(lambda: lava(sync, x), args.runs)
    row(f"Lava lanes ({default.lanes}), sync", seconds, plan=sync.describe(), agreement=agreement(got, ref))
    seconds, got = best(lambda: lava(default, x), args.runs)
    row(f"Lava lanes ({default.lanes}), async: the default plan", seconds, plan=default.describe(),
        cores=cores["per_lane"] * default.lanes, agreement=agreement(got, ref))
    rounds = -(-n // default.lanes)
    if rounds >= 4:  # the steady state: a line through the plan's times at 1/4 .. 4/4 of the rounds
        counts = sorted({default.lanes * -(-rounds * q // 4) for q in (1, 2, 3)} - {n}) + [n]
        times = {c: [] for c in counts}
        numpy_times = []
        for _ in range(args.runs):  # interleaved, so that the machine's load falls on every length alike
            for c in counts:
                start = time.perf_counter()
                got = lava(default, x[:c])
                times[c].append(time.perf_counter() - start)
                if c == counts[0]:
                    part_agreement = agreement(got, simulate_fixed(dep.quantized, x[:c]))
            start = time.perf_counter()
            simulate_fixed(dep.quantized, x)
            numpy_times.append(time.perf_counter() - start)
        fastest = [min(times[c]) for c in counts]
        per_sample, startup = np.polyfit(counts, fastest, 1)
        numpy_per_sample = min(numpy_s, *numpy_times) / n
        rows[-1].update(steady_per_sample_s=round(float(per_sample), 9), startup_s=round(max(float(startup), 0.0), 4),
                        steady_fit={str(c): round(t, 4) for c, t in zip(counts, fastest)},
                        limit_ratio=round(float(per_sample) / numpy_per_sample, 2),
                        half_agreement=part_agreement)
        print(f"  {name}: Lava steady state {per_sample * 1e6:.1f} us/sample (a line through {counts} samples), "
              f"numpy {numpy_per_sample * 1e6:.1f} us/sample", file=sys.stderr, flush=True)
    for r in rows:
        r["ratio_to_torch"] = round(r["seconds"] / torch_s, 2)
    numpy_row = rows[1]["seconds"]
    rows[-1]["ratio_to_numpy"] = round(rows[-1]["seconds"] / numpy_row, 2)
    return rows


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures issue 12 asks for, read off the rows."""
    def pick(task: str, start: str = "", end: str = "") -> dict[str, Any] | None:
        return next((r for r in rows if r["task"] == task and r["what"].startswith(start)
                     and r["what"].endswith(end)), None)

    out: dict[str, Any] = {}
    default = pick("digits", end="the default plan")
    naive = pick("digits", start="Lava one at a time")
    if default:
        out.update(samples=default["samples"], ratio=default["ratio_to_torch"])
        if "limit_ratio" in default:
            out["limit_ratio"] = default["limit_ratio"]
    if naive:
        out["naive_ratio"] = naive["ratio_to_torch"]
    cue = pick("cue LSNN", end="the default plan")
    if cue:
        out["lsnn_ratio"] = cue["ratio_to_torch"]
        if "limit_ratio" in cue:
            out["lsnn_limit_ratio"] = cue["limit_ratio"]
    agreements = [r[k] for r in rows for k in ("agreement", "half_agreement") if k in r]
    if agreements:
        out["agreement"] = min(agreements)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--digits-model", help="a trained digits model file (default: train one, 3 epochs)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the digits test split (default 1)")
    parser.add_argument("--trials", type=int, default=32, help="cue-accumulation trials (default 32)")
    parser.add_argument("--naive-samples", type=int, default=0,
                        help="digits samples for the one-at-a-time row (default 0: all)")
    parser.add_argument("--naive-trials", type=int, default=4,
                        help="cue trials for the one-at-a-time row, extrapolated (default 4; 0: all)")
    parser.add_argument("--runs", type=int, default=3, help="timings per row, the shortest counts (default 3)")
    parser.add_argument("--skip", choices=("digits", "cue"), action="append", default=[])
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} on stdout')
    parser.add_argument("--quick", action="store_true",
                        help="one-at-a-time rows on at most 360 digits samples and 4 cue trials, extrapolated")
    parser.add_argument("--torch-row", nargs=2, metavar=("MODEL", "X"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_row:
        torch_row(*args.torch_row, args.runs)
        return
    if args.quick:
        args.naive_samples = 360 if args.naive_samples <= 0 else min(args.naive_samples, 360)
        args.naive_trials = 4 if args.naive_trials <= 0 else min(args.naive_trials, 4)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="deploy-throughput-") as tmp:
        folder = Path(tmp)
        if "digits" not in args.skip:
            data = tasks.load("digits")
            x = np.concatenate([data.x_test] * max(1, args.repeat))
            rows += workload("digits", digits_graph(args.digits_model, folder), x, data.x_train[:CALIBRATION],
                             args, args.naive_samples, folder)
        if "cue" not in args.skip:
            data = tasks.load("cue-accumulation")
            rows += workload("cue LSNN", get("lsnn-cue", seed=0), data.x_test[:args.trials],
                             data.x_train[:CALIBRATION], args, args.naive_trials, folder)
    if args.json:
        print(json.dumps({**headline(rows), "rows": rows}))
        return
    print(f"{'task':<9} {'samples':>7}  {'what':<52} {'seconds':>8} {'x torch':>8}  agreement")
    for r in rows:
        agree = f"{r['agreement']:.3f}" if "agreement" in r else "-"
        print(f"{r['task']:<9} {r['samples']:>7}  {r['what']:<52} {r['seconds']:>8.3f} "
              f"{r['ratio_to_torch']:>8.1f}  {agree}")
    for r in rows:
        if "limit_ratio" in r:
            print(f"{r['task']}: Lava steady state {r['steady_per_sample_s'] * 1e6:.1f} us/sample, start-up "
                  f"{r['startup_s']:.3f} s; limit_ratio (steady / numpy per sample) {r['limit_ratio']:.2f}")


if __name__ == "__main__":
    main()
