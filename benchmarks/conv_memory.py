"""Artifact size, compile peak memory and compile time of the NIR paper's N-MNIST CNN.

    .venv/bin/python benchmarks/conv_memory.py [--json] [--precision float,fixed]

The network (the NIR paper's Sinabs CNN, ``paper/02_cnn``: 8,970 IF neurons, 39,584
weights): 2x34x34 events -> Conv 2->16 5x5 stride 2 pad 1 -> IF -> Conv 16->16 3x3 pad 1
-> IF -> SumPool 2 -> Conv 16->8 3x3 pad 1 -> IF -> SumPool 2 -> Flatten -> Linear
128->256 -> IF -> Linear 256->10 -> IF, built with the IR's Python API.

Each compile (``compile_graph`` for the Loihi 2 target, then ``save_artifact``) runs in
a fresh child process; its peak memory is that child's ``ru_maxrss`` (``os.wait4``), so
it includes the interpreter and its imports (the ``imports only`` row shows how much).
Prints one row per precision: artifact size (MB), compile peak memory (MB), compile
seconds; ``--json`` prints the same as JSON. The row also names the file the Loihi 2
backend was imported from, so a run against another checkout (PYTHONPATH) shows which
code it measured.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MB = 1e6


def nmnist_cnn(seed: int = 0) -> Any:
    """The N-MNIST CNN in the IR (IF neurons with r = 1, thresholds 1; random weights)."""
    import neuromorph as nm
    from neuromorph.ir import IF, Flatten, SumPool2d

    return nm.sequential(
        (2, 34, 34),
        ("conv1", nm.conv2d(2, 16, 5, stride=2, padding=1, scale=2.0, seed=seed)),
        ("if1", IF()),
        ("conv2", nm.conv2d(16, 16, 3, padding=1, scale=2.0, seed=seed + 1)),
        ("if2", IF()),
        ("pool2", SumPool2d(2)),
        ("conv3", nm.conv2d(16, 8, 3, padding=1, scale=2.0, seed=seed + 2)),
        ("if3", IF()),
        ("pool3", SumPool2d(2)),
        ("flatten", Flatten()),
        ("fc1", nm.dense(128, 256, bias=False, scale=2.0, seed=seed + 3)),
        ("if4", IF()),
        ("fc2", nm.dense(256, 10, bias=False, scale=2.0, seed=seed + 4)),
        ("if5", IF()),
        dt=1.0,
    )


def _child(precision: str, out: str) -> None:
    """Compile and write one artifact; print what the parent cannot see from outside."""
    import neuromorph.backends.loihi2 as loihi2
    from neuromorph.compile import compile_graph, save_artifact

    graph = nmnist_cnn()
    if precision != "none":
        start = time.perf_counter()
        save_artifact(compile_graph(graph, backend="lava", precision=precision), out)
        seconds = time.perf_counter() - start
    else:  # imports and the graph only: the floor under every other row
        seconds = 0.0
    print(json.dumps({"seconds": seconds, "backend": loihi2.__file__}))


def measure(precision: str) -> dict[str, Any]:
    """One compile in a child process: its size, peak RSS (``os.wait4``) and time."""
    with tempfile.TemporaryDirectory(prefix="conv-memory-") as tmp:
        out = os.path.join(tmp, "net.art")
        with open(os.path.join(tmp, "stdout"), "w+") as fout, open(os.path.join(tmp, "stderr"), "w+") as ferr:
            proc = subprocess.Popen([sys.executable, __file__, "--child", precision, out],
                                    stdout=fout, stderr=ferr)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            fout.seek(0)
            ferr.seek(0)
            stdout, stderr = fout.read(), ferr.read()
        if proc.returncode != 0:
            raise SystemExit(f"compile ({precision}) failed:\n{stderr}")
        info = json.loads(stdout.strip().splitlines()[-1])
        size = Path(out).stat().st_size if precision != "none" else 0
    return {"precision": precision if precision != "none" else "imports only",
            "artifact_mb": round(size / MB, 2), "peak_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "seconds": round(info["seconds"], 2), "backend": info["backend"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--precision", default="float,fixed", help="comma-separated: float, fixed")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    rows = [measure(p) for p in ["none", *args.precision.split(",")]]
    if args.json:
        print(json.dumps({"network": "N-MNIST CNN (8970 IF neurons, 39584 weights)", "rows": rows}, indent=2))
        return
    print("N-MNIST CNN (2x34x34 -> 3 conv, 2 sum pools, 2 dense; 8970 IF neurons), Loihi 2 compile")
    print(f"{'precision':<13} {'artifact MB':>11} {'peak MB':>8} {'seconds':>8}")
    for r in rows:
        print(f"{r['precision']:<13} {r['artifact_mb']:>11.2f} {r['peak_mb']:>8.1f} {r['seconds']:>8.2f}")
    print(f"backend: {rows[0]['backend']}")


if __name__ == "__main__":
    main()
