"""Pieces the NIR exporter and importer share: our metadata record and the recurrence rule."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ...documents import parse_json, shown
from ...errors import NIRConversionError

META_KEY = "neuromorph"
"""The one metadata key we write on NIR nodes and graphs. nir.write stores metadata as an
HDF5 group and nir.read gives each entry back as ``v[()]``, so the value is kept flat: a
single JSON string (it may come back as bytes)."""

FORMAT = 1
"""Version of the JSON record under META_KEY; a newer one is refused, not misread."""


def encode_meta(record: Mapping[str, Any]) -> dict[str, str]:
    """NIR ``metadata`` holding ``record`` (JSON: Python floats round-trip exactly)."""
    return {META_KEY: json.dumps(dict(record), allow_nan=False, separators=(",", ":"))}


def decode_meta(metadata: Any, where: str) -> dict[str, Any] | None:
    """Our record from a NIR node's or graph's metadata; None when it has none. The JSON
    is parsed with documents.parse_json's bounds (no NaN/Infinity, bounded nesting) and
    every field we read is type-checked (check_record), so a malformed record is a
    one-line NIRConversionError, never a stray exception later."""
    if not isinstance(metadata, Mapping) or META_KEY not in metadata:
        return None
    raw = metadata[META_KEY]
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw.item()
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).decode("utf8", errors="replace")
    if not isinstance(raw, str):
        raise NIRConversionError(f"{where}: '{META_KEY}' metadata is not a JSON string")
    record = parse_json(raw, where, f"'{META_KEY}' metadata record", NIRConversionError)
    if not isinstance(record, dict):
        raise NIRConversionError(f"{where}: '{META_KEY}' metadata is not a JSON object")
    check_record(record, where)
    return record


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numeric_tree(value: Any) -> bool:
    """A number or (nested) lists of numbers: what np.array turns into a float array."""
    if isinstance(value, list):
        return all(_numeric_tree(v) for v in value)
    return _is_number(value)


def _int_list(value: Any, minimum: int) -> bool:
    return isinstance(value, list) and all(_is_int(v) and v >= minimum for v in value)


_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "format": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "dt": (lambda v: v is None or (_is_number(v) and v > 0), "null or a number > 0"),
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "nodes": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of node names"),
    "edges": (lambda v: isinstance(v, list) and all(
        isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and isinstance(e[1], str)
        and _is_int(e[2]) and e[2] >= 0 for e in v), "a list of [source, target, delay >= 0]"),
    "edge_delay": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    "shapes": (lambda v: isinstance(v, dict) and all(_int_list(s, 0) for s in v.values()),
               "an object of parameter shapes (lists of ints >= 0)"),
    "shape": (lambda v: v is None or _int_list(v, 1), "null or a list of ints >= 1"),
    "type": (lambda v: isinstance(v, str), "a node type name"),
    "tau_adapt": (_numeric_tree, "a number or an array of numbers"),
    "beta": (_numeric_tree, "a number or an array of numbers"),
    "groups": (lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "plasticity": (lambda v: isinstance(v, dict) and isinstance(v.get("rule"), str)
                   and isinstance(v.get("params", {}), dict), "an object with a 'rule' name and 'params'"),
}
"""Every field of our metadata records that the importer reads, and what it must be."""


def check_record(record: dict[str, Any], where: str) -> None:
    """Refuse a record whose known fields have the wrong type (unknown ones are ignored:
    they may come from a newer neuromorph, whose records are refused by 'format')."""
    for key, (ok, what) in _FIELDS.items():
        if key in record and not ok(record[key]):
            raise NIRConversionError(
                f"{where}: '{META_KEY}' metadata field '{key}' must be {what}, got {shown(record[key])}")
    if record.get("format", FORMAT) > FORMAT:
        raise NIRConversionError(
            f"{where}: written by a newer neuromorph (metadata format {record['format']}); upgrade"
        )


def recurrence_edges(edges: Sequence[tuple[str, str]], inputs: Iterable[str]) -> set[tuple[str, str]]:
    """The edges that carry each loop's one-step delay under NIR's recurrence convention.

    NIR has no edge delays; snnTorch writes recurrence (RLeaky, RSynaptic) as
    ``lif -> w_rec -> lif``, meaning that the loop reads the previous step's spikes and
    applies ``w_rec`` (bias included) in the current step. So the delayed edge is the
    one *leaving* the node where a depth-first search from the Inputs enters the loop
    (``lif -> w_rec``): a back edge ``u -> v`` closes the loop ``v -> w -> ... -> u``,
    and ``v -> w`` is the edge returned (``v -> v`` for a self-loop). The search is
    deterministic given the edge order: Inputs are started in the order they first
    appear as an edge source (so nir.read's alphabetical node order does not matter),
    successors in edge order.
    """
    succ: dict[str, list[str]] = {}
    for s, t in edges:
        succ.setdefault(s, []).append(t)
    wanted = set(inputs)
    starts = list(dict.fromkeys(s for s, _ in edges if s in wanted))
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: finished
    delayed: set[tuple[str, str]] = set()
    for start in starts:
        if start in state:
            continue
        state[start] = 1
        stack = [(start, iter(succ.get(start, [])))]
        while stack:
            node, successors = stack[-1]
            nxt = next(successors, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                path = [n for n, _ in stack]
                i = path.index(nxt)
                delayed.add((nxt, path[i + 1]) if i + 1 < len(path) else (node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ.get(nxt, []))))
    return delayed


def one_line(exc: BaseException) -> str:
    """An exception as one line (h5py and nir messages can span several)."""
    text = " ".join(str(exc).split()) or "no details"
    return f"{type(exc).__name__}: {text}"
