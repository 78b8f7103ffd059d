"""Compile time, peak memory and artifact size of the Loihi 2 compile against network size.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compile_scaling.py [--json] [--quick]
        [--sizes 100 1000 10000 100000] [--precision float,fixed] [--no-deep] [--no-conv]
        [--timeout 300] [--max-mb MB]

Networks (random weights, built with the IR's Python API):

- ``ff 64-H-10``: ``nm.feedforward(64, [H], 10)`` for H = 10^2 .. 10^5 (LIF hidden layer,
  LI readout; H + 10 neurons, 74 H synapses), one Loihi 2 chip;
- ``ff 64-H-10, f32``: the largest of those with its weights rounded to float32 values,
  as a network trained in torch holds them (the binary container stores such float64
  arrays at 4 bytes a value, neuromorph/documents.py, layout 3; the random float64
  weights of the rows above take 8);
- ``ff 64-10000-10000-10`` (not with ``--quick`` or ``--no-deep``): two hidden layers of
  10^4, 10^8 synapses, allowed 8 chips (it needs 5) -- the second figure of issue 12;
- ``N-MNIST CNN``: benchmarks/conv_memory.py's Sinabs CNN (8,970 IF neurons, three
  convolutions kept as kernels), one chip.

Each in float and fixed point; fixed point without calibration data (what ``neuromorph
compile --precision fixed`` does for a model without a task: binary input assumed).

Each compile runs in a fresh child process that imports neuromorph, builds the graph,
then times ``compile_graph(graph, backend="lava", ...)`` (check, discretise, lower,
quantise, map) and ``save_artifact`` (the atomic binary write) -- the same calls
``neuromorph compile`` makes after it has read the model file. ``seconds`` is compile +
save; ``peak_mb`` is the child's peak resident memory (``ru_maxrss`` from ``os.wait4``),
so it includes the interpreter, the imports and the graph itself (``before_mb``: the
resident memory just before the compile; ``peak_mb - before_mb`` is what compiling and
saving added). ``artifact_mb`` is the file's size, ``bytes_per_synapse`` that size over
the synapse count of the resource map (for the CNN that counts every connection of the
convolutions, not the 39,584 shared weights stored).

A compile whose child runs longer than ``--timeout`` seconds (imports and building
the graph included; default 300, 120 with ``--quick``), grows past ``--max-mb`` resident memory (default: 75% of the memory
available when the script starts; the parent watches the child and kills it) or fails
in any other way becomes a row with ``error`` instead of numbers; the script goes on.
``--json`` prints ``{"rows": [...], ...}``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1e6
SIZES = (100, 1000, 10000, 100000)
DEEP = (10000, 10000)  # 64-10000-10000-10
DEEP_CHIPS = 8


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _graph(case: str) -> Any:
    import neuromorph as nm

    if case == "conv":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from conv_memory import nmnist_cnn

        return nmnist_cnn()
    trained = case.endswith("f32")
    hidden = [int(h) for h in case.removesuffix("f32").split("-")]
    graph = nm.feedforward(64, hidden, 10, seed=0)
    if not trained:
        return graph
    import numpy as np  # weights rounded to float32, as torch's training leaves them

    return graph.replace_nodes(**{name: node.replace(weight=np.asarray(node.weight, np.float32).astype(np.float64))
                                  for name, node in graph.nodes.items() if hasattr(node, "weight")})


def _child(case: str, precision: str, chips: int, out: str) -> None:
    """Build one network, compile and save it; print what the parent cannot see."""
    import neuromorph.backends.loihi2 as loihi2
    from neuromorph.compile import compile_graph, save_artifact

    start = time.perf_counter()
    graph = _graph(case)
    build_s = time.perf_counter() - start
    before = _rss_mb()
    start = time.perf_counter()
    artifact = compile_graph(graph, backend="lava", precision=precision, chips=chips)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    save_artifact(artifact, out)
    save_s = time.perf_counter() - start
    totals = artifact.report["resources"]["totals"]
    print(json.dumps({"build_s": build_s, "compile_s": compile_s, "save_s": save_s, "before_mb": before,
                      "neurons": totals["neurons"], "synapses": totals["synapses"], "cores": totals["cores"],
                      "chips": totals["chips"], "backend": loihi2.__file__}))


def _available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / MB
    return 8000.0


def _child_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return 0.0


def measure(label: str, case: str, precision: str, chips: int, timeout: float, max_mb: float) -> dict[str, Any]:
    """One compile in a child process, watched for time and memory."""
    row: dict[str, Any] = {"network": label, "precision": precision}
    with tempfile.TemporaryDirectory(prefix="compile-scaling-") as tmp:
        out = os.path.join(tmp, "net.art")
        with open(os.path.join(tmp, "stdout"), "w+") as fout, open(os.path.join(tmp, "stderr"), "w+") as ferr:
            proc = subprocess.Popen([sys.executable, __file__, "--child", case, precision, str(chips), out],
                                    stdout=fout, stderr=ferr, start_new_session=True)
            start, killed, watched_peak = time.perf_counter(), None, 0.0
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                rss = _child_rss_mb(proc.pid)
                watched_peak = max(watched_peak, rss)
                if killed is None and rss > max_mb:
                    killed = f"out of memory: resident memory passed --max-mb {max_mb:.0f} MB, killed"
                elif killed is None and time.perf_counter() - start > timeout:
                    killed = f"timed out: still compiling after {timeout:.0f} s, killed"
                if killed is not None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            wall = time.perf_counter() - start
            fout.seek(0)
            ferr.seek(0)
            stdout, stderr = fout.read(), ferr.read()
        peak = max(usage.ru_maxrss * 1024 / MB, watched_peak)
        if killed is not None:
            return {**row, "error": killed, "peak_mb": round(peak, 1), "wall_s": round(wall, 2)}
        if proc.returncode != 0:
            if proc.returncode < 0:
                why = f"killed by signal {-proc.returncode}" + (" (the kernel's OOM killer?)"
                                                                   if proc.returncode == -signal.SIGKILL else "")
            else:
                lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
                why = lines[-1] if lines else f"exit status {proc.returncode}"
            return {**row, "error": why, "peak_mb": round(peak, 1), "wall_s": round(wall, 2)}
        info = json.loads(stdout.strip().splitlines()[-1])
        size = Path(out).stat().st_size
    return {**row, "neurons": info["neurons"], "synapses": info["synapses"], "cores": info["cores"],
            "chips": info["chips"], "seconds": round(info["compile_s"] + info["save_s"], 3),
            "compile_s": round(info["compile_s"], 3), "save_s": round(info["save_s"], 3),
            "peak_mb": round(peak, 1), "before_mb": round(info["before_mb"], 1),
            "artifact_mb": round(size / MB, 3), "bytes_per_synapse": round(size / max(info["synapses"], 1), 2),
            "build_s": round(info["build_s"], 3), "backend": info["backend"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} instead of a table')
    parser.add_argument("--quick", action="store_true",
                        help="leave out the 64-10000-10000-10 network; --timeout 120 unless given")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="hidden sizes H of 64-H-10")
    parser.add_argument("--precision", default="float,fixed", help="comma-separated: float, fixed")
    parser.add_argument("--no-deep", action="store_true", help="leave out 64-10000-10000-10")
    parser.add_argument("--no-conv", action="store_true", help="leave out the N-MNIST CNN")
    parser.add_argument("--timeout", type=float, help="seconds per compile before it is killed (default 300)")
    parser.add_argument("--max-mb", type=float, help="resident MB per compile before it is killed "
                                                      "(default 75%% of the memory available now)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        case, precision, chips, out = args.child
        _child(case, precision, int(chips), out)
        return 0
    timeout = args.timeout if args.timeout is not None else (120.0 if args.quick else 300.0)
    max_mb = args.max_mb if args.max_mb is not None else 0.75 * _available_mb()
    cases = [(f"ff 64-{h}-10", str(h), 1) for h in args.sizes]
    cases.append((f"ff 64-{max(args.sizes)}-10, f32", f"{max(args.sizes)}f32", 1))
    if not (args.quick or args.no_deep):
        cases.append((f"ff 64-{'-'.join(map(str, DEEP))}-10", "-".join(map(str, DEEP)), DEEP_CHIPS))
    if not args.no_conv:
        cases.append(("N-MNIST CNN", "conv", 1))
    rows = []
    for label, case, chips in cases:
        for precision in args.precision.split(","):
            row = measure(label, case, precision.strip(), chips, timeout, max_mb)
            rows.append(row)
            done = row.get("error") or f"{row['seconds']:.2f} s, {row['peak_mb']:.0f} MB peak"
            print(f"  {label} {precision}: {done}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"rows": rows, "timeout_s": timeout, "max_mb": round(max_mb),
                          "fixed_calibration": "none (binary input assumed)"}))
        return 0
    print(f"Loihi 2 compile (compile_graph + save_artifact) in a fresh process per row; "
          f"limits {timeout:.0f} s, {max_mb:.0f} MB")
    print(f"{'network':<24} {'prec':<5} {'neurons':>8} {'synapses':>11} {'seconds':>8} {'peak MB':>8} "
          f"{'before MB':>9} {'artifact MB':>11} {'B/syn':>6}")
    for r in rows:
        if "error" in r:
            print(f"{r['network']:<24} {r['precision']:<5} {'':>8} {'':>11} {'':>8} {r['peak_mb']:>8.0f}  "
                  f"error: {r['error']}")
            continue
        print(f"{r['network']:<24} {r['precision']:<5} {r['neurons']:>8} {r['synapses']:>11} {r['seconds']:>8.2f} "
              f"{r['peak_mb']:>8.0f} {r['before_mb']:>9.0f} {r['artifact_mb']:>11.2f} "
              f"{r['bytes_per_synapse']:>6.2f}")
    print(f"backend: {next((r['backend'] for r in rows if 'backend' in r), '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
