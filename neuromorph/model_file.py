"""Model files: a versioned, checksummed document that round-trips a Graph exactly.

The document (see documents.py for both containers)::

    {"format": "neuromorph-model", "version": 2, "model": {...}}

Version 2 (written by :func:`save`) is the binary container: a 64-byte header with a
SHA-256 over the whole file, the document as JSON with every array a reference
``{"dtype": "float64", "shape": [...], "__data__": [offset, nbytes]}``, then the arrays'
raw little-endian bytes. The IR's arrays are float64, stored bit-exactly: as float64,
or as float32 where float32 holds every value (weights trained in torch: half the
bytes; documents.py, layout 3).
Version 1 is JSON text, ``{"format", "version": 1, "sha256", "model"}`` with arrays as
base64 of their float64 bytes (:func:`dumps` still writes it); it still loads, and so
does JSON text stamped version 2. Files are written atomically (temporary file in the
same folder, then ``os.replace``), so a crash never leaves a half-written model behind.

A connection's plasticity is stored as ``{"__plasticity__": rule, "params": {field: value}}``
(numbers, null bounds, the third-factor node's name, arrays encoded like weights): the
fields of the rule's record (neuromorph.ir.plasticity). Files written before the rules
were typed have the same form with free parameter names; they load when the names are
the record's fields, else they are refused naming the parameter (no version change:
the layout is the same, and a file without plasticity reads as before).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .documents import (
    ArrayWriter, TextArrays, display_path, dumps_document, encode_array, loads_any, read_document, shown,
    write_atomic, write_binary,
)
from .errors import IRError, ModelFileError
from .ir import NODE_TYPES, Edge, Graph, Node, Plasticity
from .ir.graph import check_name

FORMAT = "neuromorph-model"
VERSION = 2
"""The version :func:`save` writes: the binary container (documents.py)."""
TEXT_VERSION = 1
"""The JSON text form with base64 float64 arrays (:func:`dumps`), as neuromorph wrote
model files before version 2; still read."""
VERSIONS = (TEXT_VERSION, VERSION)
WHAT = "neuromorph model file"


# ------------------------------------------------------------------ encode / decode


Encode = Callable[[np.ndarray], Any]


def _encode_value(value: Any, encode: Encode = encode_array) -> Any:
    if isinstance(value, np.ndarray):
        return encode(np.asarray(value, dtype=np.float64))
    if isinstance(value, Plasticity):
        return {"__plasticity__": value.rule,
                "params": {k: _encode_value(v, encode) for k, v in value.params.items()}}
    if isinstance(value, tuple):
        return list(value)
    return value


def _decode_value(value: Any, where: str, arrays: Any) -> Any:
    arr = arrays.decode(value, where)
    if arr is not None:
        return np.asarray(arr, dtype=np.float64)  # no copy when float64: the IR copies it
    if isinstance(value, dict) and "__plasticity__" in value:
        params = value.get("params", {})
        if not isinstance(params, dict):
            raise ModelFileError(f"{where}: plasticity params must be an object, got {shown(params)}")
        return Plasticity(value["__plasticity__"], {k: _decode_value(v, where, arrays) for k, v in params.items()})
    return value


def graph_to_dict(graph: Graph, encode: Encode = encode_array) -> dict[str, Any]:
    """The model payload: JSON data, its arrays made by ``encode`` (JSON text records by
    default; an ArrayWriter's references for the binary container)."""
    return {
        "dt": graph.dt,
        "metadata": dict(graph.metadata),
        "nodes": [
            {
                "name": name,
                "type": node.type_name,
                # reset "value" is the default: left out, so files of such models are unchanged
                "params": {k: _encode_value(v, encode) for k, v in node.params().items()
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


def graph_from_dict(data: Any, arrays: Any = None) -> Graph:
    """The graph of a model payload; every field's type is checked before it is used
    (ModelFileError), the values by the IR (IRError, naming the node). ``arrays``: what
    decodes its array records (documents.TextArrays() by default: JSON text of version
    1; a binary document's documents.BinaryArrays, whose ``finish`` the caller calls)."""
    arrays = arrays if arrays is not None else TextArrays()
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
            values = {k: _decode_value(v, f"node '{name}'", arrays) for k, v in params.items()}
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
    """The model as JSON text, version 1 (base64 float64 arrays): the form neuromorph
    wrote before version 2, which every version reads. :func:`save` writes version 2."""
    return dumps_document(FORMAT, TEXT_VERSION, "model", graph_to_dict(graph))


def _write(graph: Graph, f: Any) -> int:
    arrays = ArrayWriter()
    payload = graph_to_dict(graph, arrays.encode)
    return write_binary(f, FORMAT, VERSION, "model", payload, arrays)


def dump_bytes(graph: Graph) -> bytes:
    """The model file's bytes (version 2, the binary container), as :func:`save` writes them."""
    buf = io.BytesIO()
    _write(graph, buf)
    return buf.getvalue()


def _graph(doc: Any, source: str) -> Graph:
    try:
        graph = graph_from_dict(doc.payload, doc.arrays)
        doc.arrays.finish()
    except IRError as exc:
        raise ModelFileError(f"{source}: invalid model: {exc}") from None
    except ModelFileError as exc:
        text = str(exc)
        raise ModelFileError(text if text.startswith(f"{source}: ") else f"{source}: {text}") from None
    return graph


def loads(data: str | bytes, source: str = "<string>") -> Graph:
    """The graph in a model file's content: the binary container (version 2) or JSON
    text (version 1, or 2); a one-line ModelFileError for anything else."""
    return _graph(loads_any(data, FORMAT, "model", source, WHAT, versions=VERSIONS, binary_version=VERSION),
                  source)


TEXT_SUFFIX = ".json"
"""A model file whose name ends so is written as JSON text (version 1): what its name
promises, readable and diffable. Any other name gets the binary container (version 2):
about 25% smaller and several times faster to load for large models."""


def save(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` to ``path`` atomically; returns the path. ``*.json``: JSON text
    (version 1); any other name: the binary container (version 2)."""
    text = Path(path).suffix.lower() == TEXT_SUFFIX

    def write(tmp: str) -> None:
        if text:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(dumps(graph))
            return
        with open(tmp, "wb") as f:
            _write(graph, f)

    return write_atomic(path, write)


def load(path: str | os.PathLike[str]) -> Graph:
    """The graph of a model file; anything else (not a regular file, too large, malformed,
    invalid) is a one-line ModelFileError."""
    source = display_path(path)
    return _graph(read_document(path, FORMAT, "model", WHAT, versions=VERSIONS, binary_version=VERSION), source)
