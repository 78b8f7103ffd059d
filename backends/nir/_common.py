"""Pieces the NIR exporter and importer share: our metadata record and the recurrence rule."""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

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
    """Our record from a NIR node's or graph's metadata; None when it has none."""
    if not isinstance(metadata, Mapping) or META_KEY not in metadata:
        return None
    raw = metadata[META_KEY]
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw.item()
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).decode("utf8", errors="replace")
    try:
        record = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise NIRConversionError(f"{where}: '{META_KEY}' metadata is not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise NIRConversionError(f"{where}: '{META_KEY}' metadata is not a JSON object")
    if int(record.get("format", FORMAT)) > FORMAT:
        raise NIRConversionError(
            f"{where}: written by a newer neuromorph (metadata format {record['format']}); upgrade"
        )
    return record


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
