"""Fuzzing the loaders: mutated model files, artifacts (float and fixed; fixed with every
weight sign mode, and as written before the narrow stored form), NIR files and .npy
input arrays must load or be refused with one line (a NeuromorphError), never raise
anything else, never hang and never allocate beyond a stated bound.

The cases come from a seeded generator (no new dependencies): byte flips, truncation,
insertions; JSON-level mutations (values replaced by wrong types, huge or negative
numbers, NaN, deep nesting; keys removed or renamed; arrays with NaN, wrong shapes or
dtypes), most with the checksum recomputed, since anyone can; HDF5-level mutations of
NIR files (datasets replaced, removed, given odd types or huge declared shapes, the
metadata record mutated as JSON); .npy headers and data mutated. Model files and
artifacts come in both containers: JSON text (``model``, ``artifact``: the version 1/2
form) and binary (``model-bin``, ``artifact-bin``: header fields, the JSON head, array
references (offsets, sizes, dtypes, shapes, aliasing) and the data section mutated,
mostly with the checksum recomputed).

All cases run in one worker process (``python tests/test_fuzz.py``), in-process there,
under ``RLIMIT_AS``: the worker's address space after warm-up plus FUZZ_MEMORY_BOUND
(1 GiB) for the JSON and NIR loaders, plus streams.MEMORY_BOUND (the .npy loader's own
stated bound) for .npy files. Each case has CASE_SECONDS (SIGALRM). A failing case is
reported with its seed, so ``python tests/test_fuzz.py --case KIND:SEED`` replays it.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import math
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

SEED = 20240611
CASES = {"model": 450, "artifact": 550, "model-bin": 450, "artifact-bin": 550, "nir": 450, "npy": 450}
CASE_SECONDS = 10
FUZZ_MEMORY_BOUND = 2**30
"""What one case may allocate beyond the warmed-up worker (JSON and NIR loaders)."""
WORKER_SECONDS = 110  # below the pytest timeout (pyproject.toml: 120 s)


@pytest.mark.slow
def test_fuzzed_files_load_or_are_refused_with_one_line(record_property):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__], capture_output=True, text=True,
                          timeout=WORKER_SECONDS, env=env)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    record_property("fuzz_cases", summary["cases"])
    record_property("fuzz_seconds", round(seconds, 1))
    print(f"\nfuzz: {summary['cases']} cases in {seconds:.1f} s: {summary['outcomes']}; "
          f"peak RSS {summary['peak_rss_mib']} MiB; per kind {summary['per_kind']}")
    assert summary["failures"] == [], "\n".join(summary["failures"][:20])
    assert summary["cases"] == sum(CASES.values())
    # The fuzzer must reach past the checksum, the container and the JSON parser into the
    # content checks.
    for kind in ("model", "artifact", "model-bin", "artifact-bin"):
        assert summary["deep"][kind] > CASES[kind] // 5, summary["deep"]


# =========================================================================== the worker


def _encode_array(value: np.ndarray) -> dict[str, Any]:
    kind = "int64" if np.issubdtype(value.dtype, np.integer) else "float64"
    data = np.ascontiguousarray(value, dtype="<i8" if kind == "int64" else "<f8")
    return {"__array__": base64.b64encode(data.tobytes()).decode("ascii"), "dtype": kind,
            "shape": list(value.shape)}


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


WEIRD: list[Callable[[random.Random], Any]] = [
    lambda r: None, lambda r: True, lambda r: False, lambda r: "", lambda r: "x" * r.choice([1, 5000]),
    lambda r: "lif1", lambda r: "fc1\n", lambda r: [], lambda r: {}, lambda r: [1, 2], lambda r: {"a": 1},
    lambda r: ["x"], lambda r: 0, lambda r: -1, lambda r: 1.5, lambda r: -1e308, lambda r: 1e308,
    lambda r: 10**30, lambda r: -(10**30), lambda r: 2**63, lambda r: 2**31, lambda r: -(2**31),
    lambda r: float("nan"), lambda r: float("inf"), lambda r: _nest(r.choice([20, 150])),
    lambda r: {"__array__": "AAAA", "dtype": "float64", "shape": [10**9]},
    lambda r: _encode_array(np.full(r.choice([1, 3, 4]), r.choice([np.nan, np.inf, -1e300, 1e12, -5.0]))),
    lambda r: {"__plasticity__": r.choice(["stdp", "bogus", 5]), "params": r.choice([{}, [], {"a": "x"}])},
]


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    stack = [(tree, prefix)]
    while stack:
        node, where = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            if isinstance(v, str) and len(v) > 200:  # base64 data: mutated by the array mode
                out.append(where + (k,))
                continue
            out.append(where + (k,))
            stack.append((v, where + (k,)))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def mutate_tree(r: random.Random, tree: Any) -> str:
    """One JSON-level mutation of ``tree`` (in place); returns what it did."""
    paths = [p for p in _paths(tree) if p]
    path = r.choice(paths)
    parent, key = _get(tree, path[:-1]), path[-1]
    value = parent[key]
    op = r.random()
    if op < 0.45:
        parent[key] = r.choice(WEIRD)(r)
        return f"replace {path} with {str(parent[key])[:40]}"
    if op < 0.6:
        del parent[key]
        return f"remove {path}"
    if op < 0.7 and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = r.choice([-value, value * 2**r.randint(1, 80), value + r.choice([-1, 1]), -value - 1])
        return f"number {path} -> {str(parent[key])[:40]}"
    if op < 0.8 and isinstance(parent, dict):
        parent[r.choice(["x", key + "_", key.upper()])] = parent.pop(key)
        return f"rename {path}"
    if op < 0.9 and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(value))
        return f"duplicate {path}"
    other = r.choice(paths)
    if other[: len(path)] != path and path[: len(other)] != other:
        o_parent, o_key = _get(tree, other[:-1]), other[-1]
        parent[key], o_parent[o_key] = o_parent[o_key], copy.deepcopy(value)
        return f"swap {path} {other}"
    parent[key] = _nest(r.randint(1, 120))
    return f"nest {path}"


def mutate_array(r: random.Random, tree: Any) -> str:
    arrays = [p for p in _paths(tree) if p and isinstance(_get(tree, p), dict) and "__array__" in _get(tree, p)]
    if not arrays:
        return mutate_tree(r, tree)
    path = r.choice(arrays)
    enc = _get(tree, path)
    raw = base64.b64decode(enc["__array__"])
    arr = np.frombuffer(raw, "<i8" if enc["dtype"] == "int64" else "<f8").reshape(enc["shape"]).copy()
    op = r.randrange(6)
    if op == 0 and arr.size:
        flat = arr.reshape(-1)
        value = r.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, -1.0, 0.0, 2.0**40, 4096, -4097, 2**17, 255,
                          -257, 63, 64])
        if arr.dtype.kind == "i":
            value = int(value) if math.isfinite(value) and abs(value) < 2**62 else 2**62
        flat[r.randrange(flat.size)] = value
        new = _encode_array(arr)
    elif op == 1:
        new = _encode_array(arr.astype(np.float64 if arr.dtype.kind == "i" else np.int64)
                            if np.all(np.isfinite(arr)) else arr)
    elif op == 2:
        new = dict(enc, shape=r.choice([[], [0], [-1], [10**9], list(enc["shape"]) + [1],
                                        list(reversed(enc["shape"])), [arr.size + 1]]))
    elif op == 3:
        new = dict(enc, __array__=enc["__array__"][: r.randrange(len(enc["__array__"]) + 1)])
    elif op == 4:
        new = dict(enc, dtype=r.choice(["float32", "object", None, 5, "int64", "float64"]))
    else:
        new = _encode_array(np.resize(arr, max(0, arr.size + r.choice([-1, 1, 5]))).astype(arr.dtype))
    parent = _get(tree, path[:-1])
    parent[path[-1]] = new
    return f"array {path} op {op}"


def mutate_bytes(r: random.Random, data: bytes) -> tuple[bytes, str]:
    b = bytearray(data)
    op = r.randrange(4)
    if op == 0:
        for _ in range(r.randint(1, 16)):
            b[r.randrange(len(b))] = r.randrange(256)
        return bytes(b), "flip"
    if op == 1:
        return bytes(b[: r.randrange(len(b))]), "truncate"
    if op == 2:
        i = r.randrange(len(b))
        return bytes(b[:i] + bytes(r.randrange(256) for _ in range(r.randint(1, 64))) + b[i:]), "insert"
    i, j = sorted(r.randrange(len(b)) for _ in range(2))
    return bytes(b[:j] + b[i:j] + b[j:]), "duplicate a chunk"


def _canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def mutate_document(r: random.Random, data: bytes, key: str) -> tuple[bytes, str]:
    mode = r.random()
    if mode < 0.2:
        return mutate_bytes(r, data)
    doc = json.loads(data)
    what = mutate_array(r, doc[key]) if mode < 0.5 else mutate_tree(r, doc if mode > 0.95 else doc[key])
    if r.random() < 0.9 and key in doc:  # anyone can recompute the checksum
        try:
            doc["sha256"] = hashlib.sha256(_canonical(doc[key])).hexdigest()
        except (ValueError, TypeError):
            pass
    style = r.choice([{"indent": 1}, {"separators": (",", ":")}, {"sort_keys": True}])
    return json.dumps(doc, allow_nan=True, **style).encode(), what


MAGIC = b"\x89NMF\r\n\x1a\n"
FIXED = struct.Struct("<8sIIQQ")  # magic, layout, flags, JSON length, data length; then SHA-256


def _align(n: int) -> int:
    return -(-n // 64) * 64


def unpack_binary(data: bytes) -> tuple[dict, bytearray]:
    """(JSON head, data section) of a binary document, by its documented layout."""
    _, _, _, j, n = FIXED.unpack(data[:32])
    return json.loads(data[64:64 + j]), bytearray(data[_align(64 + j):])


def pack_binary(head: Any, body: bytes, r: random.Random, fields: dict[str, int] | None = None) -> bytes:
    """A binary document; its checksum recomputed most of the time (anyone can)."""
    text = json.dumps(head, allow_nan=True, separators=(",", ":")).encode()
    values = {"layout": 1, "flags": 0, "j": len(text), "n": len(body), **(fields or {})}
    fixed = FIXED.pack(MAGIC, values["layout"], values["flags"], values["j"], values["n"])
    rest = text + bytes(_align(64 + len(text)) - 64 - len(text)) + body
    digest = hashlib.sha256(fixed + rest).digest() if r.random() < 0.9 else bytes(r.randrange(256) for _ in range(32))
    return fixed + digest + rest


def _refs(tree: Any) -> list[dict]:
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__data__" in node:
                out.append(node)
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


REF_DTYPES = ["object", "|O", "<f8", ">f8", "V8", "complex128", "float128", "U5", "int8", "uint8", "bool", "int16",
              "float32", "int64", "float64", "uint64", "float16", None, 5, ["a", "<f8"]]
HUGE = [2**31, 2**32, 2**33, 2**62, 2**63, 2**64, 10**30]


def mutate_ref(r: random.Random, head: Any, body: bytearray) -> str:
    refs = _refs(head)
    if not refs:
        return mutate_tree(r, head)
    ref = r.choice(refs)
    offset, nbytes = ref["__data__"]
    op = r.randrange(10)
    if op == 0:
        ref["__data__"][0] = r.choice([offset + 64, offset - 64, offset + 8, offset + 1, -64, len(body),
                                       _align(len(body) + 1), *HUGE, r.choice(refs)["__data__"][0]])
    elif op == 1:
        ref["__data__"][1] = r.choice([nbytes + 8, nbytes - 8, 0, nbytes * 2, -1, *HUGE, len(body)])
    elif op == 2:
        other = r.choice(refs)
        ref["__data__"], other["__data__"] = list(other["__data__"]), list(ref["__data__"])
    elif op == 3:  # alias another array's bytes, with a shape that fits them
        other = r.choice(refs)
        ref.update(__data__=list(other["__data__"]), shape=list(other["shape"]), dtype=other["dtype"])
    elif op == 4:
        ref["dtype"] = r.choice(REF_DTYPES)
    elif op == 5:  # reinterpret the same bytes as another dtype, the shape made to fit
        ref["dtype"] = r.choice(["int8", "uint8", "bool", "int16", "int32", "float32", "int64", "float64"])
        size = {"int8": 1, "uint8": 1, "bool": 1, "int16": 2, "int32": 4, "float32": 4}.get(ref["dtype"], 8)
        ref["shape"] = [nbytes // size]
    elif op == 6:
        ref["shape"] = r.choice([[], [0], [-1], [10**9], [2**40, 0], list(ref["shape"]) + [1], [1] * 40,
                                 list(reversed(ref["shape"])), ["2"], "x", None])
    elif op == 7:
        key = r.choice(["__data__", "dtype", "shape"])
        if r.random() < 0.5:
            del ref[key]
        else:
            ref[key] = r.choice(WEIRD)(r)
    elif op == 8:
        ref[r.choice(["__array__", "extra", "offset"])] = r.choice(["AAAA", 0, None])
    else:
        ref["__data__"] = r.choice([[offset], [offset, nbytes, 0], [str(offset), nbytes], [True, nbytes],
                                    [float(offset), nbytes], {"offset": offset}, None])
    return f"ref op {op}"


def mutate_body(r: random.Random, head: Any, body: bytearray) -> str:
    op = r.randrange(5)
    refs = [ref for ref in _refs(head) if ref["__data__"][1]]
    if op <= 1 and refs:  # values: NaN, inf, huge, out-of-range integers, odd bools
        ref = r.choice(refs)
        offset, nbytes = ref["__data__"]
        i = offset + r.randrange(nbytes)
        if ref["dtype"] == "float64" and r.random() < 0.7:
            i = offset + 8 * r.randrange(nbytes // 8)
            value = r.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, -1.0, 2.0, 1e-310])
            body[i:i + 8] = np.array([value], "<f8").tobytes()
        else:
            body[i] = r.randrange(256)
        return f"value in {ref['dtype']} array"
    if op == 2:
        for _ in range(r.randint(1, 8)):
            if body:
                body[r.randrange(len(body))] = r.randrange(256)
        return "random data bytes"
    if op == 3:
        cut = r.randrange(len(body) + 1)
        del body[cut:]
        return "data section cut"
    body[:0] = bytes(r.choice([1, 8, 64, 128]))
    return "data section shifted"


def mutate_binary(r: random.Random, data: bytes, key: str) -> tuple[bytes, str]:
    mode = r.random()
    if mode < 0.15:
        return mutate_bytes(r, data)
    head, body = unpack_binary(data)
    if mode < 0.25:
        field = r.choice(["layout", "flags", "j", "n"])
        value = r.choice([0, 1, 2, 3, 64, 2**31, 2**32 - 1, 2**63, 2**64 - 1, len(body) + r.choice([-64, -1, 1, 64])])
        return pack_binary(head, body, r, {field: max(0, value) % 2**(32 if field in ("layout", "flags") else 64)}), \
            f"header {field} = {value}"
    if mode < 0.45:
        what = mutate_tree(r, head if r.random() < 0.1 else head[key])
    elif mode < 0.8:
        what = mutate_ref(r, head, body)
    else:
        what = mutate_body(r, head, body)
    return pack_binary(head, bytes(body), r), what


NIR_VALUES: list[Callable[[random.Random], Any]] = [
    lambda r: np.float64(np.nan), lambda r: np.array([np.inf, 1.0]), lambda r: np.array(-1.0),
    lambda r: np.zeros((0,)), lambda r: np.ones((2, 3, 4)), lambda r: np.array([10**9, 3]),
    lambda r: "LIF", lambda r: "Spiky", lambda r: b"\xff\xfe", lambda r: np.array([1e308, -1e308]),
    lambda r: np.array([[1, 2], [3, 4]], dtype=np.int64), lambda r: np.array(["a", "b"], dtype="S1"),
    lambda r: np.array([True, False]), lambda r: np.array(3),
]


def mutate_nir(r: random.Random, src: Path, dst: Path) -> str:
    import h5py

    if r.random() < 0.35:
        data, what = mutate_bytes(r, src.read_bytes())
        dst.write_bytes(data)
        return what
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        objects: list[str] = []
        f.visit(objects.append)
        name = r.choice(objects)
        parent, leaf = name.rsplit("/", 1) if "/" in name else ("", name)
        group = f[parent] if parent else f
        op = r.random()
        if name.endswith("metadata/neuromorph") and op < 0.6:
            raw = f[name][()]
            record = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            what = mutate_tree(r, {"r": record})
            del f[name]
            f[name] = json.dumps(record, allow_nan=True)
            return f"metadata {what}"
        if op < 0.45:
            del group[leaf]
            group[leaf] = r.choice(NIR_VALUES)(r)
            return f"replace {name}"
        if op < 0.6:
            del group[leaf]
            return f"remove {name}"
        if op < 0.7:
            del group[leaf]
            group.create_dataset(leaf, shape=r.choice([(10**5, 10**5), (3, 10**9), (2**40,)]), dtype="f8",
                                 chunks=True)
            return f"huge fill-value dataset {name}"
        if op < 0.8:
            group[leaf + r.choice(["_x", "2"])] = np.ones(3)
            return f"extra dataset next to {name}"
        if op < 0.9 and isinstance(f[name], h5py.Dataset) and f[name].shape:
            data = f[name][()]
            del group[leaf]
            group[leaf] = np.resize(data, max(0, data.size + r.choice([-1, 1]))) if data.dtype.kind != "O" else data
            return f"resize {name}"
        del group[leaf]
        group[leaf] = np.array([[b"input", b"nowhere"], [b"\n", b"x"]])
        return f"odd edges at {name}"


NPY_DESCR = ["'<f8'", "'<i8'", "'|b1'", "'<f4'", "'<U5'", "'|O'", "'<c16'", "'|V8'", "'>f8'",
             "[('a', '<f8')]", "'<f8'", "'<f8'"]


def mutate_npy(r: random.Random, data: bytes) -> tuple[bytes, str]:
    if r.random() < 0.5:
        return mutate_bytes(r, data)
    header_len = int.from_bytes(data[8:10], "little")
    body = data[10 + header_len:]
    dims = r.choice([(5, 4), (2, 5, 4), (0, 4), (5, 0, 4), (10**12, 4), (2**31, 4), (3,), (),
                     (5, 4, 1), (-1, 4), (5, 3), (10**8, 4), (1, 2, 5, 4)])
    header = (f"{{'descr': {r.choice(NPY_DESCR)}, 'fortran_order': {r.choice([False, False, True])}, "
              f"'shape': {dims!r}, }}").encode()
    header = header.ljust(118) + b"\n"
    return data[:8] + len(header).to_bytes(2, "little") + header + body, f"header {header.strip()!r}"


# --------------------------------------------------------------------------- corpus


def corpus(folder: Path) -> dict[str, Any]:
    import neuromorph as nm
    from neuromorph import artifact, model_file
    from neuromorph.backends.nir import write_nir
    from neuromorph.compile import compile_graph, save_artifact
    from neuromorph.ir import (
        ALIF, IF, LI, LIF, Conv2d, CubaLIF, Delay, Flatten, Graph, Input, Linear, Output, Plasticity, Scale,
        SumPool2d,
    )

    rng = np.random.default_rng(0)
    small = nm.feedforward(4, [3], 2, seed=1)
    rec = Graph({"x": Input((3,)), "w": Linear(rng.normal(0.5, 0.5, (5, 3)), plasticity=Plasticity("stdp", {"a_plus": 0.1})),
                 "h": ALIF(tau_mem=10e-3, tau_adapt=50e-3, beta=rng.uniform(0, 1, 5), r=10.0),
                 "r": Linear(rng.normal(0, 0.5, (5, 5))), "s": Scale(0.5), "d": Delay(0.002),
                 "c": CubaLIF(tau_syn=5e-3, tau_mem=8e-3), "w2": Linear(rng.normal(0, 1, (2, 5))),
                 "ro": LI(tau=20e-3), "y": Output()},
                [("x", "w"), ("w", "h"), ("h", "r"), ("r", "h", 1), ("h", "s"), ("s", "d"), ("d", "c"),
                 ("c", "w2"), ("w2", "ro", 2), ("ro", "y")], dt=1e-3, metadata={"who": "fuzz"})
    conv = Graph({"x": Input((1, 4, 4)), "k": Conv2d(rng.normal(0, 1, (2, 1, 3, 3)), np.zeros(2), padding=1),
                  "i": IF(), "p": SumPool2d(2), "f": Flatten(), "w": Linear(rng.normal(0, 1, (2, 8))),
                  "ro": LI(tau=1e-2), "y": Output()},
                 [("x", "k"), ("k", "i"), ("i", "p"), ("p", "f"), ("f", "w"), ("w", "ro"), ("ro", "y")], dt=1e-3)
    out: dict[str, Any] = {"graph": small, "model": [], "artifact": [], "model-bin": [], "artifact-bin": [],
                           "nir": [], "npy": []}
    for name, g in (("small", small), ("rec", rec), ("conv", conv)):
        out["model"].append(model_file.dumps(g).encode())  # JSON text, version 1
        out["model-bin"].append(nm.save(g, folder / f"{name}.nm").read_bytes())
    for g, precision in ((small, "float"), (small, "fixed"), (rec.replace_nodes(
            w=Linear(rec.nodes["w"].weight)), "fixed"), (conv, "fixed")):
        a = compile_graph(g, backend="lava", precision=precision)
        out["artifact"].append(artifact.dumps_text(a).encode())  # JSON text, version 2
        out["artifact-bin"].append(save_artifact(a, folder / f"a{len(out['artifact-bin'])}.loihi").read_bytes())
    # one connection of each sign mode (stored as uint8 w, uint8 -w, int8 w >> 1), and the
    # same artifact as written before that stored form (int32 mantissas, int64 parameters)
    signs = Graph({"x": Input((4,)), "e": Linear(rng.uniform(0.2, 1.5, (5, 4))), "h1": LIF(tau=1e-2, r=10.0),
                   "i": Linear(-rng.uniform(0.1, 0.8, (5, 5))), "e2": Linear(rng.uniform(0.3, 1.2, (5, 4))),
                   "h2": LIF(tau=1e-2, r=10.0), "m": Linear(rng.normal(0, 1, (3, 5))), "ro": LI(tau=2e-2, r=20.0),
                   "y": Output()},
                  [("x", "e"), ("e", "h1"), ("h1", "i"), ("i", "h2"), ("x", "e2"), ("e2", "h2"), ("h2", "m"),
                   ("m", "ro"), ("ro", "y")], dt=1e-3)
    a = compile_graph(signs, backend="lava", precision="fixed")
    out["artifact"].append(artifact.dumps_text(a).encode())
    out["artifact-bin"].append(save_artifact(a, folder / "signs.loihi").read_bytes())
    from dataclasses import fields

    from neuromorph.backends.loihi2 import payload

    stored_form = payload.encode_quantized
    payload.encode_quantized = lambda q: {f.name: getattr(q, f.name) for f in fields(q) if f.name != "net"}
    try:
        out["artifact-bin"].append(save_artifact(a, folder / "old.loihi").read_bytes())
    finally:
        payload.encode_quantized = stored_form
    for name, g in (("small", small), ("rec", rec.replace_nodes(w=Linear(rec.nodes["w"].weight)))):
        write_nir(g, folder / f"{name}.nir")
        out["nir"].append(folder / f"{name}.nir")
    for arr in (np.zeros((5, 4)), rng.random((2, 5, 4)), np.ones((5, 4), dtype=np.int64),
                rng.random((5, 4)) < 0.5):
        buf = io.BytesIO()
        np.save(buf, arr)
        out["npy"].append(buf.getvalue())
    return out


# --------------------------------------------------------------------------- running


SHALLOW = ("not a neuromorph", "checksum", "not valid JSON", "not a complete", "header declares", "binary layout",
           "header flags")
"""Refusals that stop at the container, its checksum or the JSON parser."""


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def run_case(kind: str, case_seed: str, data: dict[str, Any], folder: Path, limits: dict[str, int]) -> tuple[str, str]:
    """(outcome, detail): outcome is ok, refused, or a failure (crash, multi-line, timeout,
    memory)."""
    from neuromorph import artifact, model_file
    from neuromorph.backends.nir import read_nir
    from neuromorph.errors import NeuromorphError
    from neuromorph.streams import load_stream

    r = random.Random(case_seed)
    path = folder / f"case.{kind}"
    if kind in ("model", "model-bin"):
        mutate = mutate_binary if kind.endswith("-bin") else mutate_document
        blob, what = mutate(r, r.choice(data[kind]), "model")
        path.write_bytes(blob)
        load: Callable[[], Any] = lambda: model_file.load(path)  # noqa: E731
    elif kind in ("artifact", "artifact-bin"):
        mutate = mutate_binary if kind.endswith("-bin") else mutate_document
        blob, what = mutate(r, r.choice(data[kind]), "artifact")
        path.write_bytes(blob)
        load = lambda: artifact.load_artifact(path)  # noqa: E731
    elif kind == "nir":
        what = mutate_nir(r, r.choice(data["nir"]), path)
        load = lambda: read_nir(path)  # noqa: E731
    else:
        blob, what = mutate_npy(r, r.choice(data["npy"]))
        path.write_bytes(blob)
        load = lambda: load_stream(path, data["graph"])  # noqa: E731
    soft = limits["base"] + (limits["npy"] if kind == "npy" else FUZZ_MEMORY_BOUND)
    resource.setrlimit(resource.RLIMIT_AS, (soft, limits["hard"]))
    signal.alarm(CASE_SECONDS)
    try:
        load()
        outcome, detail = "ok", ""
    except NeuromorphError as exc:
        text = str(exc)
        if "\n" in text or "\r" in text:
            outcome, detail = "multi-line refusal", repr(text[:300])
        elif "MemoryError" in text:
            outcome, detail = "memory (caught and refused)", text[:300]
        else:
            outcome, detail = "refused", text
    except _Timeout:
        outcome, detail = "timeout", f"more than {CASE_SECONDS} s"
    except MemoryError:
        outcome, detail = "memory", "MemoryError"
    except BaseException as exc:  # noqa: BLE001: anything else is the bug we look for
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "site-packages" not in f.filename and "/lib/python3" not in f.filename]
        where = ", ".join(f"{f.filename}:{f.lineno}" for f in (ours[-1:] + frames[-1:]))
        outcome, detail = "crash", f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]} at {where}"
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (limits["hard"], limits["hard"]))
    return outcome, f"{what} -> {detail}" if detail else what


def worker(only: str | None = None) -> dict[str, Any]:
    import warnings

    from neuromorph import streams

    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    folder = Path(tempfile.mkdtemp(prefix="neuromorph-fuzz-"))
    data = corpus(folder)
    cases = [(kind, f"{SEED}-{kind}-{i}") for kind, n in CASES.items() for i in range(n)]
    if only is not None:
        kind, _, seed = only.partition(":")
        cases = [(kind, seed)]
    for kind, seed in cases[:: max(1, len(cases) // 40)]:  # warm up every code path's imports
        run_case(kind, seed, data, folder, {"base": 2**62, "npy": 0, "hard": resource.RLIM_INFINITY})
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    npy_bound = getattr(streams, "MEMORY_BOUND", 8 * 2**30)  # the .npy loader's own stated bound
    limits = {"base": address_space(), "npy": npy_bound + 2**28, "hard": hard}
    outcomes: dict[str, int] = {}
    per_kind: dict[str, dict[str, int]] = {}
    deep = {k: 0 for k in CASES}
    failures = []
    start = time.perf_counter()
    for kind, seed in cases:
        outcome, detail = run_case(kind, seed, data, folder, limits)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        per_kind.setdefault(kind, {}).setdefault(outcome, 0)
        per_kind[kind][outcome] += 1
        if outcome not in ("ok", "refused"):
            failures.append(f"{kind}:{seed}: {outcome}: {detail}")
        elif outcome == "ok" or not any(w in detail for w in SHALLOW):
            deep[kind] += 1
        if only is not None:
            print(outcome, detail)
    return {"cases": len(cases), "outcomes": outcomes, "per_kind": per_kind, "failures": failures,
            "deep": deep, "seconds": round(time.perf_counter() - start, 1),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


if __name__ == "__main__":
    only = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--case" else None
    print(json.dumps(worker(only)))
