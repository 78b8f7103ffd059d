"""The main job: define -> train -> compile (Loihi 2 fixed point) -> run in Lava.

A 64-256-10 spiking network learns scikit-learn's 8x8 digits with surrogate-gradient BPTT
in PyTorch; the trained model is compiled to Loihi 2's fixed-point formats and the
deployment runs over the test split in Lava's Loihi-compatible simulator, with the input
currents sent to the chip as graded spikes. `make demo` runs this script.

    .venv/bin/python examples/digits_to_loihi.py [--epochs 10] [--limit N] [--out DIR] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import neuromorph as nm
from neuromorph import tasks
from neuromorph.compile import compile_graph, save_artifact
from neuromorph.run import deployment, run_dataset
from neuromorph.training import TrainConfig, train


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=None, help="test samples to run in Lava (default: all 360)")
    parser.add_argument("--precision", choices=("float", "fixed"), default="fixed")
    parser.add_argument("--out", type=Path, default=None, help="folder for the model, artifact and figures")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 40 test samples (for tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.limit = 2, args.limit or 40
    out = args.out or Path(tempfile.mkdtemp(prefix="neuromorph-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    # 1. Define: a zoo model (the same as nm.feedforward(64, [256], 10)).
    graph = nm.models.get("digits-mlp")
    data = tasks.load("digits", input_shape=graph.shape("input"))

    # 2. Train with surrogate-gradient BPTT (PyTorch, CPU or CUDA).
    t0 = time.perf_counter()
    result = train(graph, data, TrainConfig(epochs=args.epochs),
                        progress=lambda r: print(f"  epoch {r['epoch']:>2}: loss {r['loss']:.3f}, "
                                                 f"test accuracy {r['test_accuracy']:.4f}", flush=True))
    times["train"] = time.perf_counter() - t0
    trained = nm.save(result.graph, out / "digits.json")

    # 3. Compile for Loihi 2, calibrating the input scale on the training data.
    t0 = time.perf_counter()
    artifact = compile_graph(result.graph, precision=args.precision,
                             calibration={"input": data.x_train})
    save_artifact(artifact, out / "digits.loihi")
    times["compile"] = time.perf_counter() - t0

    # 4. Run: reference (the torch simulator, float64) and deployment (Lava) on the same test samples.
    reference = run_dataset(deployment(result.graph), data, limit=args.limit)
    t0 = time.perf_counter()
    deployed = run_dataset(artifact, data, limit=args.limit)
    times["lava"] = time.perf_counter() - t0

    totals = artifact.report["resources"]["totals"]
    rows = [
        ("trained accuracy (torch, float64)", f"{reference['accuracy']:.4f}"),
        (f"deployed accuracy (Lava, {args.precision})", f"{deployed['accuracy']:.4f}"),
        ("drop (percentage points)", f"{100 * (reference['accuracy'] - deployed['accuracy']):+.2f}"),
        ("test samples", str(deployed["samples"])),
        ("Loihi 2 cores / neurons / synapses", f"{totals['cores']} / {totals['neurons']} / {totals['synapses']}"),
        ("spikes on chip", str(deployed["spikes"])),
        ("time: train / compile / Lava run", f"{times['train']:.1f} s / {times['compile']:.1f} s / {times['lava']:.1f} s"),
        ("files", f"{trained}, {out / 'digits.loihi'}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return {"reference": reference, "deployed": deployed, "artifact": artifact}


if __name__ == "__main__":
    try:
        main()
    except nm.NeuromorphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
