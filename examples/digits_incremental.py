"""On-chip learning: a deployed network learns five new classes in Lava.

A 64-512-10 spiking network is trained off chip (BPTT, PyTorch) on the digits 0-4 only;
its readout rows for 5-9 start at zero and its readout connection carries the delta rule,
with the error computed on the chip from a label input (neuromorph.build.delta_rule).
It is compiled for Loihi 2 (fixed point by default), and the deployment then plays the
labelled training stream once in Lava's simulator with learning on, one sample at a
time, the weights it learns kept from sample to sample. It is scored on all ten classes
before and after. `make demo` runs this script after the main job.

    .venv/bin/python examples/digits_incremental.py [--precision fixed|float] [--limit N] [--out DIR] [--quick]
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
from neuromorph.learning import learn_on_chip, task_inputs
from neuromorph.plots import learning_curve
from neuromorph.training import TrainConfig, train


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--precision", choices=("float", "fixed"), default="fixed")
    parser.add_argument("--limit", type=int, default=None,
                        help="learn from the first N samples of the stream (default: all 1437)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the models, artifact and figure")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 300 learning samples (for tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.limit = 2, args.limit or 300
    out = args.out or Path(tempfile.mkdtemp(prefix="neuromorph-incremental-"))
    out.mkdir(parents=True, exist_ok=True)

    # 1. Define and train off chip on the old classes (0-4).
    data = tasks.load("digits-incremental")
    t0 = time.perf_counter()
    result = train(nm.models.get("digits-incremental"), data, TrainConfig(epochs=args.epochs))
    train_s = time.perf_counter() - t0

    # 2. Make it learnable on chip (new rows at zero, delta rule, error from a label input) and compile.
    graph = tasks.prepare("digits-incremental", result.graph, {})
    nm.save(graph, out / "incremental.nm")
    # (calibrated on training samples and their labels: the error's range sets its fixed-point scale)
    artifact = compile_graph(graph, backend="lava", precision=args.precision,
                             calibration=task_inputs(graph, data.x_train[:256], data.y_train[:256]))
    save_artifact(artifact, out / "incremental.loihi")

    # 3. Score, learn 5-9 on chip from one pass over the labelled stream, score again.
    t0 = time.perf_counter()
    learned, chip = learn_on_chip(artifact, data, limit=args.limit,
                                  report=lambda line: print(f"  {line}", flush=True))
    lava_s = time.perf_counter() - t0
    nm.save(chip.graph, out / "incremental-learned.nm")
    learning_curve(learned, out / "learning.png")

    rows = [
        ("test accuracy before -> after (all ten)", f"{learned['accuracy_before']:.4f} -> {learned['accuracy_after']:.4f}"),
        ("new classes 5-9", f"{learned['new_classes_accuracy_before']:.4f} -> {learned['new_classes_accuracy']:.4f}"),
        ("old classes 0-4", f"{learned['old_classes_accuracy_before']:.4f} -> {learned['old_classes_accuracy']:.4f}"),
        ("labelled samples learned from (one pass)", str(learned["learning_samples"])),
        ("chip steps per second while learning", f"{learned['learning_steps_per_second']:.0f}"),
        ("time: train / Lava (score, learn, score)", f"{train_s:.1f} s / {lava_s:.1f} s"),
        ("files", f"{out / 'incremental.loihi'}, {out / 'incremental-learned.nm'}, {out / 'learning.png'}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return learned


if __name__ == "__main__":
    try:
        main()
    except nm.NeuromorphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
