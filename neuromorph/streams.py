"""The one contract for what goes into a run and what comes out of it.

Every simulator, target and command checks input streams, parses probe names, scores
predictions and writes result files through this module, so they cannot disagree.

- **Input streams**: ``{input node: [batch, T, *shape]}`` float64, finite, one batch size
  and one length for every input (:func:`check_streams`); a single array stands for the
  graph's only Input, and ``[T, *shape]`` (no batch axis) is accepted where a caller
  allows it. Files: ``.npy`` (:func:`load_stream`), results as ``.npz`` (:func:`save_streams`).
- **Probes**: ``"NODE"`` is a node's output (a neuron's spikes); ``"NODE.VAR"`` is a
  neuron's state after the step's reset (``v``; ``i`` for CubaLIF; ``a`` for ALIF), or
  ``"NODE.weight"`` a plastic connection's weights at the end of the step (after the
  step's learning update; [.., T, out, in]).
  Node names may contain dots (snnTorch writes ``lif1.lif``): a full node name wins, else
  the text is split at its *last* dot (:func:`parse_probe`).
- **Predictions**: a readout's output averaged over the decision steps, argmax over its
  units (:func:`class_scores`, :func:`predict`), the same for training and running.
- **Memory**: what a run, a lowering or an input file would allocate is estimated first
  and refused above :data:`MEMORY_BOUND` (:func:`check_memory`), naming what and how much.
- **Input files**: a path is a regular file, nothing, or a folder (``documents.file_kind``); a
  FIFO or a device is refused before anything opens it.
"""
from __future__ import annotations

import io
import os
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .documents import display_path, file_kind, write_atomic
from .errors import NeuromorphError
from .ir import ALIF, IF, LI, LIF, CubaLIF, Graph, Neuron, Node

STATE_VARIABLES: dict[type[Node], tuple[str, ...]] = {
    IF: ("v",), LIF: ("v",), LI: ("v",), CubaLIF: ("i", "v"), ALIF: ("v", "a"),
}
"""State a caller may probe as ``"NODE.VAR"``, per neuron type."""

WEIGHT_VARIABLE = "weight"
"""``"NODE.weight"``: the weights of a connection that carries plasticity (they are state)."""


def probe_variables(node: Node) -> tuple[str, ...]:
    """What ``"NODE.VAR"`` may name for ``node``: a neuron's state variables, or the
    weights of a plastic connection."""
    if getattr(node, "plasticity", None) is not None:
        return (WEIGHT_VARIABLE,)
    return STATE_VARIABLES.get(type(node), ())


# ------------------------------------------------------------------ memory

GiB = 2 ** 30


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


MEMORY_BOUND: int = min(8 * GiB, (_physical_memory() or 16 * GiB) // 2)
"""Bytes that one step of work (a lowering, a run's arrays, an input file) may allocate:
half the physical memory, at most 8 GiB. Estimates above it are refused before anything
is allocated (:func:`check_memory`)."""


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"):
        if abs(n) < 1024 or unit == "YiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


def check_memory(nbytes: int, what: str, *, node: str | None = None) -> None:
    """Refuse (one line) work estimated to need more than :data:`MEMORY_BOUND` bytes.
    ``what``: what would be allocated; ``node``: the IR node responsible, if any."""
    nbytes = int(nbytes)
    if nbytes <= MEMORY_BOUND:
        return
    prefix = f"node '{node}': " if node is not None else ""
    raise NeuromorphError(
        f"{prefix}{what} would need about {format_bytes(nbytes)} ({nbytes} bytes), more than "
        f"the bound of {format_bytes(MEMORY_BOUND)} ({MEMORY_BOUND} bytes; "
        "neuromorph.streams.MEMORY_BOUND: half the physical memory, at most 8 GiB)")


# ------------------------------------------------------------------ input files

# ------------------------------------------------------------------ input streams


def _fmt(shape: Sequence[int]) -> str:
    return ", ".join(str(int(s)) for s in shape)


def match_streams(
    shapes: Mapping[str, tuple[int, ...]],
    x: Any,
    *,
    batch_axis: str = "required",
    where: str = "",
) -> tuple[dict[str, Any], bool]:
    """Check the layout of inputs against ``{input name: shape}``, without touching values
    (works for numpy arrays and torch tensors; a GPU tensor is not copied).

    ``x``: one array (only when there is a single input) or ``{name: array}``.
    ``batch_axis``: "required" ([B, T, *shape]) or "optional" ([T, *shape] accepted too:
    a batch axis of 1 is added). Returns ``({name: [B, T, *shape]}, batch axis given)``.
    """
    names = list(shapes)
    prefix = f"{where}: " if where else ""
    if isinstance(x, Mapping):
        given = dict(x)
    elif len(names) == 1:
        given = {names[0]: x}
    else:
        raise NeuromorphError(f"{prefix}the model has {len(names)} inputs ({', '.join(names)}): "
                              "pass a dict input name -> array")
    missing = [n for n in names if n not in given]
    extra = [str(n) for n in given if n not in shapes]
    if missing or extra:
        raise NeuromorphError(
            f"{prefix}inputs must be exactly the model's Input nodes ({', '.join(names)}); "
            + (f"missing: {', '.join(missing)}" if missing else f"unknown: {', '.join(extra)}"))
    streams: dict[str, Any] = {}
    layout: tuple[bool, int, int] | None = None
    for name in names:
        shape, arr = tuple(shapes[name]), given[name]
        if not hasattr(arr, "shape"):
            arr = np.asarray(arr)
        got = tuple(arr.shape)
        if len(got) == len(shape) + 2 and got[2:] == shape:
            batched = True
        elif batch_axis == "optional" and len(got) == len(shape) + 1 and got[1:] == shape:
            arr, batched = arr[None], False
        else:
            want = (f"[batch, T, {_fmt(shape)}]" if batch_axis == "required"
                    else f"[T, {_fmt(shape)}] or [batch, T, {_fmt(shape)}]")
            raise NeuromorphError(f"{prefix}input '{name}' has shape [{_fmt(got)}], expected {want}")
        this = (batched, int(arr.shape[0]), int(arr.shape[1]))
        if layout is not None and this[1:] != layout[1:]:
            raise NeuromorphError(f"{prefix}input '{name}' has batch/steps [{_fmt(arr.shape[:2])}], "
                                  "unlike the other inputs")
        layout = this
        streams[name] = arr
    assert layout is not None
    return streams, layout[0]


def check_streams(
    shapes: Mapping[str, tuple[int, ...]],
    x: Any,
    *,
    batch_axis: str = "required",
    where: str = "",
) -> tuple[dict[str, np.ndarray], bool]:
    """:func:`match_streams`, and the values as float64 numbers that are all finite, real,
    with at least one sample and one time step."""
    prefix = f"{where}: " if where else ""
    if not isinstance(x, Mapping) and not hasattr(x, "shape"):
        x = _numeric(x, "", prefix)
    streams, batched = match_streams(shapes, x, batch_axis=batch_axis, where=where)
    n, t = next(iter(streams.values())).shape[:2]
    if n == 0 or t == 0:
        what = "no samples (batch of 0)" if n == 0 else "no time steps (T = 0)"
        raise NeuromorphError(f"{prefix}nothing to run: the input has {what}")
    out = {}
    for name, arr in streams.items():
        arr = _numeric(arr, name, prefix)
        if not np.all(np.isfinite(arr)):
            raise NeuromorphError(f"{prefix}input '{name}' contains NaN or inf")
        out[name] = arr
    return out, batched


def _numeric(arr: Any, name: str, prefix: str) -> np.ndarray:
    try:
        a = np.asarray(arr)
    except (TypeError, ValueError):
        a = np.asarray(arr, dtype=object)
    label = f"input '{name}'" if name else "the input"
    if a.dtype != bool and not np.issubdtype(a.dtype, np.number):
        raise NeuromorphError(f"{prefix}{label} is not a numeric array (dtype {a.dtype})")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise NeuromorphError(f"{prefix}{label} is complex (dtype {a.dtype}): inputs are real numbers")
    return a.astype(np.float64, copy=False)  # checked again downstream: no copy then


def input_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    return {n: tuple(graph.shape(n)) for n in graph.inputs}


_ZIP_MAGIC = b"PK\x03\x04"


def read_npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header, without reading the data.
    Refuses (one line) .npz archives, other files, and non-numeric, complex or Python-object
    data."""
    shown = display_path(path)
    kind = file_kind(path)
    if kind == "missing":
        raise NeuromorphError(f"{shown}: no such file")
    if kind == "directory":
        raise NeuromorphError(f"{shown}: is a directory, not a .npy file")
    try:
        with open(path, "rb") as f:
            if f.read(4) == _ZIP_MAGIC:
                raise NeuromorphError(f"{shown}: is a .npz archive (np.savez); --input takes one "
                                      "array as a .npy file (np.save)")
            f.seek(0)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except NeuromorphError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, tokenize.TokenError) as exc:
        text = str(exc).strip()
        reason = getattr(exc, "strerror", None) or (text.splitlines()[0] if text else type(exc).__name__)
        raise NeuromorphError(f"{shown}: not a .npy array file ({reason})") from None
    if dtype.hasobject or dtype.fields is not None or (
            dtype != bool and not np.issubdtype(dtype, np.number)):
        raise NeuromorphError(f"{shown}: is not a numeric array (dtype {dtype})")
    if np.issubdtype(dtype, np.complexfloating):
        raise NeuromorphError(f"{shown}: is complex (dtype {dtype}): inputs are real numbers")
    return tuple(int(d) for d in shape), dtype


def load_stream(path: str | Path, graph: Graph) -> tuple[dict[str, np.ndarray], bool]:
    """Read ``X.npy`` for a model with one Input: ``({input: [B, T, ...]}, batched)``.
    The header is read first: a file whose data would not fit :data:`MEMORY_BOUND` (read
    and converted to float64) is refused before it is loaded."""
    if len(graph.inputs) != 1:
        raise NeuromorphError("--input needs a model with exactly one Input node")
    shown = display_path(path)
    shape, dtype = read_npy_header(path)
    count = int(np.prod(shape, dtype=object))
    check_memory(count * (dtype.itemsize + 8), f"{shown}: reading its {list(shape)} array "
                 f"({dtype}) as float64")
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise NeuromorphError(f"{shown}: not a .npy array file ({exc})") from None
    return check_streams(input_shapes(graph), x, batch_axis="optional", where=shown)


def save_streams(path: str | Path, arrays: Mapping[str, np.ndarray], batched: bool) -> dict[str, Any]:
    """Write ``{name: [B, T, ...]}`` as .npz atomically (without the batch axis when the
    input had none); returns the part of a report that describes the file."""
    arrays = {k: (v if batched else v[0]) for k, v in arrays.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())
    first = next(iter(arrays.values()))
    return {
        "steps": int(first.shape[1] if batched else first.shape[0]),
        "batch": int(first.shape[0]) if batched else None,
        "arrays": {k: list(v.shape) for k, v in arrays.items()}, "output": str(path),
    }


# ------------------------------------------------------------------ probes


@dataclass(frozen=True)
class Probe:
    """A recording: ``var == ""`` is the node's output, else a neuron state variable."""

    node: str
    var: str = ""

    @property
    def text(self) -> str:
        return f"{self.node}.{self.var}" if self.var else self.node


def parse_probe(graph: Graph, text: str) -> Probe:
    """``"NODE"`` or ``"NODE.VAR"``; a full node name wins over a split at the last dot."""
    if text in graph.nodes:
        return Probe(text)
    node_name, _, var = text.rpartition(".")
    node = graph.nodes.get(node_name)
    allowed = probe_variables(node) if node is not None else ()
    if var not in allowed:
        if node is None:
            hint = "not a node of this model"
        else:
            hint = f"'{node_name}' ({node.type_name}) records " + (
                ", ".join(f"'{node_name}.{v}'" for v in allowed) or "its output only")
        raise NeuromorphError(f"cannot record '{text}': {hint}")
    return Probe(node_name, var)


def parse_probes(graph: Graph, texts: Sequence[str] | str) -> list[Probe]:
    if isinstance(texts, str):
        texts = [texts]
    out: list[Probe] = []
    for text in texts:
        probe = parse_probe(graph, text)
        if probe not in out:
            out.append(probe)
    return out


def spiking_nodes(graph: Graph) -> list[str]:
    """Neuron nodes that emit spikes (every neuron but LI), in graph order."""
    return [n for n, node in graph.nodes.items() if isinstance(node, Neuron) and node.spiking]


def readout_membranes(graph: Graph) -> list[str]:
    """``"NODE.v"`` of each neuron node that feeds an Output (``run --membrane``)."""
    names = []
    for out in graph.outputs:
        for e in graph.incoming(out):
            if isinstance(graph.nodes[e.source], Neuron):
                names.append(f"{e.source}.v")
    return names


# ------------------------------------------------------------------ results


@dataclass
class Recording:
    """What a run returns: ``outputs`` ({Output node: [N, T, *shape]}), ``probes``
    ({probe text: [N, T, *shape]}), ``spikes`` (spike count per spiking neuron node, inside
    the samples' time steps) and ``info`` (target-specific figures, JSON-able)."""

    outputs: dict[str, np.ndarray]
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    spikes: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def class_scores(y: Any, decision: slice) -> Any:
    """``[N, T, *units]`` -> ``[N, units]``: the output averaged over the decision steps.
    Works on numpy arrays and torch tensors alike (training and running share it)."""
    scores = y[:, decision].mean(1)
    return scores.reshape(scores.shape[0], -1)


def predict(y: Any, decision: slice) -> Any:
    """Predicted class per sample: argmax of :func:`class_scores`."""
    return class_scores(y, decision).argmax(1)
