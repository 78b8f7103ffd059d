"""File size, save time and load time of model files and artifacts, per storage form.

    .venv/bin/python benchmarks/file_formats.py [--json] [--repeat 3] [--cases ff,digits,cnn]

Cases:

- ``ff``: the model file of ``nm.feedforward(64, [100000], 10)`` (7.4 M float64 weights);
- ``digits``: the fixed-point Loihi 2 artifact of the zoo's ``digits-mlp`` (64-256-10);
- ``cnn``: the fixed-point Loihi 2 artifact of the N-MNIST CNN of benchmarks/conv_memory.py.

Forms: ``text`` is the JSON document with base64 float64/int64 arrays (model file
version 1, artifact version 2: what neuromorph wrote before the binary container, and
still reads); ``binary`` is the container (model file version 2, artifact version 3:
arrays as raw little-endian bytes at their own dtype, see neuromorph/documents.py).
On a checkout without the binary container only the ``text`` rows are printed, so the
same script measures the state before and after.

Save and load seconds are the minimum of ``--repeat`` runs (save = encode + atomic write
with fsync, load = read + checks + decode, both through the public functions); the
load peak is the largest Python/numpy allocation during one more load, traced with
tracemalloc (so it excludes the interpreter and what was loaded before). Each row also
counts the array elements stored, and bytes per element (file size / elements).
``--json`` prints ``{"rows": [...]}``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MB = 1e6


def _elements(tree: Any) -> int:
    """Array elements anywhere in a payload (dicts, lists, dataclasses)."""
    from dataclasses import fields, is_dataclass

    stack, total = [tree], 0
    while stack:
        v = stack.pop()
        if isinstance(v, np.ndarray):
            total += v.size
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif is_dataclass(v) and not isinstance(v, type):
            stack.extend(getattr(v, f.name) for f in fields(v))
    return total


def _forms(kind: str) -> dict[str, tuple[Callable[[Any, Path], Any], Callable[[Path], Any]]]:
    """{form: (save, load)} for what this checkout has."""
    from neuromorph import artifact, documents, model_file

    if kind == "model":
        forms = {"text": (lambda g, p: documents.write_atomic(p, model_file.dumps(g).encode()), model_file.load)}
        if hasattr(model_file, "dump_bytes"):
            forms["binary"] = (model_file.save, model_file.load)
        return forms
    if hasattr(artifact, "dumps_text"):  # the binary container is there: text is a choice
        text_save = lambda a, p: documents.write_atomic(p, artifact.dumps_text(a).encode())  # noqa: E731
        return {"text": (text_save, artifact.load_artifact),
                "binary": (artifact.save_artifact, artifact.load_artifact)}
    return {"text": (artifact.save_artifact, artifact.load_artifact)}


def _case(name: str) -> tuple[str, str, Any, int]:
    """(label, kind, object to save, array elements)."""
    import neuromorph as nm

    if name == "ff":
        g = nm.feedforward(64, [100000], 10, seed=0)
        return "ff 64-100000-10 model file", "model", g, _elements([n.params() for n in g.nodes.values()])
    from neuromorph.compile import compile_graph

    if name == "digits":
        from neuromorph.models import get

        graph, label = get("digits-mlp", seed=0), "digits-mlp fixed artifact"
    elif name == "cnn":
        from conv_memory import nmnist_cnn

        graph, label = nmnist_cnn(), "N-MNIST CNN fixed artifact"
    else:
        raise SystemExit(f"unknown case {name!r} (ff, digits, cnn)")
    a = compile_graph(graph, backend="lava", precision="fixed")
    from neuromorph.registry import target

    count = _elements([n.params() for n in a.graph.nodes.values()]) + _elements(
        target(a.target).encode_payload(a.payload))
    return label, "artifact", a, count


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        out = None
        gc.collect()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def measure(name: str, repeat: int) -> list[dict[str, Any]]:
    label, kind, obj, count = _case(name)
    rows = []
    with tempfile.TemporaryDirectory(prefix="file-formats-") as tmp:
        for form, (save, load) in _forms(kind).items():
            path = Path(tmp) / f"{name}.{form}"
            save_s, _ = _timed(lambda: save(obj, path), repeat)
            load_s, _ = _timed(lambda: load(path), repeat)
            gc.collect()
            tracemalloc.start()
            loaded = load(path)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            del loaded
            size = os.path.getsize(path)
            rows.append({"case": label, "form": form, "bytes": size, "mb": round(size / MB, 3),
                         "elements": count, "bytes_per_element": round(size / max(count, 1), 2),
                         "save_s": round(save_s, 4), "load_s": round(load_s, 4),
                         "load_peak_mb": round(peak / MB, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]}')
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (the minimum is kept)")
    parser.add_argument("--cases", default="ff,digits,cnn", help="comma-separated: ff, digits, cnn")
    args = parser.parse_args()
    rows = [row for name in args.cases.split(",") for row in measure(name.strip(), max(1, args.repeat))]
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
        return
    print(f"{'case':<28} {'form':<7} {'MB':>9} {'elements':>9} {'B/elem':>7} {'save s':>7} {'load s':>7} "
          f"{'load peak MB':>12}")
    for r in rows:
        print(f"{r['case']:<28} {r['form']:<7} {r['mb']:>9.3f} {r['elements']:>9} {r['bytes_per_element']:>7.2f} "
              f"{r['save_s']:>7.3f} {r['load_s']:>7.3f} {r['load_peak_mb']:>12.1f}")


if __name__ == "__main__":
    main()
