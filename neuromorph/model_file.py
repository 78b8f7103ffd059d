"""Model files: a versioned, checksummed JSON document that round-trips a Graph exactly.

Layout (UTF-8 JSON, see documents.py)::

    {"format": "neuromorph-model", "version": 1, "sha256": "<hex>", "model": {...}}

``sha256`` is taken over the canonical JSON text of ``model`` (sorted keys, no spaces),
so any change to the payload is detected. Arrays are stored as base64 of their
little-endian float64 bytes with shape and dtype: bit-exact, and compact enough for
trained weights. Files are written atomically (temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written model behind.

A connection's plasticity is stored as ``{"__plasticity__": rule, "params": {field: value}}``
(numbers, null bounds, the third-factor node's name, arrays encoded like weights): the
fields of the rule's record (neuromorph.ir.plasticity). Files written before the rules
were typed have the same form with free parameter names; they load when the names are
the record's fields, else they are refused naming the parameter (no version change:
the layout is the same, and a file without plasticity reads as before).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .documents import (
    decode_array, display_path, dumps_document, encode_array, loads_document, read_file, shown, write_atomic,
)
from .errors import IRError, ModelFileError
from .ir import NODE_TYPES, Edge, Graph, Node, Plasticity
from .ir.graph import check_name

FORMAT = "neuromorph-model"
VERSION = 1


# ------------------------------------------------------------------ encode / decode


def _encode_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return encode_array(value.astype(np.float64))
    if isinstance(value, Plasticity):
        return {"__plasticity__": value.rule, "params": {k: _encode_value(v) for k, v in value.params.items()}}
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode_value(value: Any, where: str) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        return decode_array(value, where).astype(np.float64)
    if isinstance(value, dict) and "__plasticity__" in value:
        params = value.get("params", {})
        if not isinstance(params, dict):
            raise ModelFileError(f"{where}: plasticity params must be an object, got {shown(params)}")
        return Plasticity(value["__plasticity__"], {k: _decode_value(v, where) for k, v in params.items()})
    return value


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    return {
        "dt": graph.dt,
        "metadata": dict(graph.metadata),
        "nodes": [
            {
                "name": name,
                "type": node.type_name,
                # reset "value" is the default: left out, so files of such models are unchanged
                "params": {k: _encode_value(v) for k, v in node.params().items()
                           if not (k == "reset" and v == "value")},
            }
            for name, node in graph.nodes.items()
        ],
        "edges": [[e.source, e.target, e.delay] for e in graph.edges],
    }


def _malformed(what: str) -> ModelFileError:
    return ModelFileError(f"model data is malformed ({what})")


def _edge(item: Any, i: int) -> Edge:
    ok = (isinstance(item, list) and len(item) in (2, 3) and isinstance(item[0], str)
          and isinstance(item[1], str)
          and (len(item) == 2 or (isinstance(item[2], int) and not isinstance(item[2], bool))))
    if not ok:
        raise _malformed(f"edge {i} must be [source, target] or [source, target, delay] with an "
                         f"int delay, got {shown(item)}")
    return Edge(*item)


def graph_from_dict(data: Any) -> Graph:
    """The graph of a model payload; every field's type is checked before it is used
    (ModelFileError), the values by the IR (IRError, naming the node)."""
    if not isinstance(data, dict):
        raise _malformed("not an object")
    for key, kind in (("nodes", list), ("edges", list)):
        if not isinstance(data.get(key), kind):
            raise _malformed(f"'{key}' must be a list, got {shown(data.get(key))}")
    metadata = data.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _malformed(f"'metadata' must be an object, got {shown(metadata)}")
    dt = data.get("dt")
    nodes: dict[str, Node] = {}
    for i, entry in enumerate(data["nodes"]):
        if not isinstance(entry, dict):
            raise _malformed(f"node {i} is not an object")
        name, type_name, params = entry.get("name"), entry.get("type"), entry.get("params")
        try:
            check_name(name)
        except IRError as exc:
            raise _malformed(f"node {i}: {exc}") from None
        if name in nodes:
            raise IRError("two nodes have this name (names must be unique)", node=name)
        if not isinstance(type_name, str) or not isinstance(params, dict):
            raise _malformed(f"node '{name}' needs a 'type' name and a 'params' object")
        cls = NODE_TYPES.get(type_name)
        if cls is None:
            raise IRError(f"unknown node type {shown(type_name)}", node=name)
        try:
            values = {k: _decode_value(v, f"node '{name}'") for k, v in params.items()}
            nodes[name] = cls(**values)
        except TypeError as exc:
            raise IRError(f"bad parameters for {type_name}: {' '.join(str(exc).split())[:120]}",
                          node=name) from None
        except IRError as exc:
            raise IRError(str(exc), node=name) from None
    edges = [_edge(item, i) for i, item in enumerate(data["edges"])]
    return Graph(nodes, edges, dt=dt, metadata=metadata or {})


# ------------------------------------------------------------------ files


def dumps(graph: Graph) -> str:
    return dumps_document(FORMAT, VERSION, "model", graph_to_dict(graph))


def loads(text: str | bytes, source: str = "<string>") -> Graph:
    payload = loads_document(text, FORMAT, VERSION, "model", source, "neuromorph model file")
    try:
        return graph_from_dict(payload)
    except IRError as exc:
        raise ModelFileError(f"{source}: invalid model: {exc}") from None
    except ModelFileError as exc:
        raise ModelFileError(f"{source}: {exc}") from None


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` to ``path`` atomically; returns the path."""
    return write_atomic(path, dumps(graph).encode())


def load(path: str | os.PathLike[str]) -> Graph:
    """The graph of a model file; anything else (not a regular file, too large, malformed,
    invalid) is a one-line ModelFileError."""
    return loads(read_file(path), display_path(path))
