"""Model files: a versioned, checksummed JSON document that round-trips a Graph exactly.

Layout (UTF-8 JSON, see documents.py)::

    {"format": "neuromorph-model", "version": 1, "sha256": "<hex>", "model": {...}}

``sha256`` is taken over the canonical JSON text of ``model`` (sorted keys, no spaces),
so any change to the payload is detected. Arrays are stored as base64 of their
little-endian float64 bytes with shape and dtype: bit-exact, and compact enough for
trained weights. Files are written atomically (temporary file in the same folder, then
``os.replace``), so a crash never leaves a half-written model behind.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .documents import decode_array, dumps_document, encode_array, loads_document, read_file, write_atomic
from .errors import IRError, ModelFileError
from .ir import NODE_TYPES, Edge, Graph, Node, Plasticity

FORMAT = "neuromorph-model"
VERSION = 1


# ------------------------------------------------------------------ encode / decode


def _encode_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return encode_array(value.astype(np.float64))
    if isinstance(value, Plasticity):
        return {"__plasticity__": value.rule, "params": dict(value.params)}
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode_value(value: Any, where: str) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        return decode_array(value, where).astype(np.float64)
    if isinstance(value, dict) and "__plasticity__" in value:
        return Plasticity(value["__plasticity__"], value.get("params", {}))
    return value


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    return {
        "dt": graph.dt,
        "metadata": dict(graph.metadata),
        "nodes": [
            {
                "name": name,
                "type": node.type_name,
                "params": {k: _encode_value(v) for k, v in node.params().items()},
            }
            for name, node in graph.nodes.items()
        ],
        "edges": [[e.source, e.target, e.delay] for e in graph.edges],
    }


def graph_from_dict(data: dict[str, Any]) -> Graph:
    try:
        nodes: dict[str, Node] = {}
        for entry in data["nodes"]:
            name, type_name = entry["name"], entry["type"]
            cls = NODE_TYPES.get(type_name)
            if cls is None:
                raise IRError(f"unknown node type '{type_name}'", node=name)
            params = {k: _decode_value(v, f"node '{name}'") for k, v in entry["params"].items()}
            try:
                nodes[name] = cls(**params)
            except TypeError as exc:
                raise IRError(f"bad parameters for {type_name}: {exc}", node=name) from None
            except IRError as exc:
                raise IRError(str(exc), node=name) from None
        edges = [Edge(*e) for e in data["edges"]]
        return Graph(nodes, edges, dt=data.get("dt"), metadata=data.get("metadata") or {})
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"model data is malformed (missing or wrong field: {exc})") from None


# ------------------------------------------------------------------ files


def dumps(graph: Graph) -> str:
    return dumps_document(FORMAT, VERSION, "model", graph_to_dict(graph))


def loads(text: str | bytes, source: str = "<string>") -> Graph:
    payload = loads_document(text, FORMAT, VERSION, "model", source, "neuromorph model file")
    try:
        return graph_from_dict(payload)
    except IRError as exc:
        raise ModelFileError(f"{source}: invalid model: {exc}") from None


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` to ``path`` atomically; returns the path."""
    return write_atomic(path, dumps(graph).encode())


def load(path: str | os.PathLike[str]) -> Graph:
    return loads(read_file(path), str(Path(path)))
